// The transformer benchmark of the GPU backend (docs/performance.md §Transformer against PyTorch): training
// throughput of lgm::gpu::nn::Gpt, one step = forward + backward + AdamW update of all M replicas in one call, in
// float, on random tokens already on the device. Built twice like nn_bench: by nvcc as CUDA and by the host
// compiler with Thrust's OpenMP system (the figures bench/peers/compare_gpt.sh compares with PyTorch). Cases:
//   a  the CI model (2 layers, width 64, context 64), M = 1, b = 16 windows of 64 tokens     (both builds)
//   b  the char model (6 layers, 6 heads, width 384, context 256), M = 1, b = 4 × 256         (both builds)
//   c  the CI model, M = 8 replicas × b = 16 in one call                                      (both builds)
//   d  the char model, M = 1, b = 64 × 256 (nanoGPT's batch)                                  (CUDA build)
//   e  GPT-2 124M, M = 1, b = 8 × 1024                                                        (CUDA build)
// Beside tokens/s it reports the model FLOP rate (3 passes × 2 FLOPs × forward multiply-adds a token) and, on
// CUDA, the MFU against the device's fp32 peak given by --peak-tflops (default 67: an H100/H200's FP32 rate).
// Usage: lgm_gpt_bench [--quick] [--cases a,b,...] [--seconds S] [--peak-tflops P]. Exit status: 0, 1 when a loss
// is not finite, 2 for a bad argument, 77 when no device is usable.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "bench_timer.hpp"
#include "lgm/gpu/nn/gpt.hpp"
#include "lgm/gpu/optimizers.hpp"
#include "lgm/gpu/storage.hpp"

namespace {

using lgm::Index;
namespace nn = lgm::gpu::nn;
using lgm::gpu::bench::Timer;

struct Case {
  std::string id, model;
  nn::GptSpec spec;
  Index replicas, batch, seq;
};

std::vector<Case> cases(bool quick) {
  const nn::GptSpec tiny{1, 2, 16, 16, 64};
  std::vector<Case> all = {
      {"a", "ci", quick ? tiny : nn::GptSpec::ci(), 1, quick ? 2 : 16, quick ? 16 : 64},
      {"b", "char", quick ? tiny : nn::GptSpec::char_model(), 1, quick ? 2 : 4, quick ? 16 : 256},
      {"c", "ci", quick ? tiny : nn::GptSpec::ci(), quick ? 2 : 8, quick ? 2 : 16, quick ? 16 : 64},
  };
  if (LGM_GPU_CUDA) {
    all.push_back({"d", "char", nn::GptSpec::char_model(), 1, 64, 256});
    all.push_back({"e", "gpt2-124m", nn::GptSpec::gpt2_124m(), 1, 8, 1024});
  }
  return all;
}

/// Median tokens/s of one case; the loss after the timed steps must be finite.
int run_case(const Case& c, double seconds, double peak_tflops) {
  lgm::gpu::DeviceStorage<float> st;
  lgm::gpu::Blas blas(st.stream());
  const nn::Exec exec{st.stream(), &blas};
  const nn::Gpt g(c.spec);
  const nn::GptPlan p = g.plan(c.replicas, c.batch, c.seq);
  const Index d = g.dim(), M = c.replicas;
  auto X = st.matrix(d, M), G = st.matrix(d, M);
  const lgm::Vector x0 = g.initial_point(1);
  for (Index m = 0; m < M; ++m) st.upload(x0, X.col(m));
  lgm::gpu::DeviceBuffer<float> arena(p.t_values, st.stream());
  lgm::gpu::DeviceBuffer<double> darena(p.d_values, st.stream());
  lgm::gpu::DeviceBuffer<Index> iarena(p.i_values, st.stream());
  std::vector<Index> ids(static_cast<std::size_t>(M * c.batch * c.seq));
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<Index> id(0, c.spec.vocab - 1);
  for (Index& t : ids) t = id(rng);
  lgm::gpu::copy_to_device(iarena.data() + p.tokens, ids.data(), ids.size() * sizeof(Index), st.stream());
  lgm::gpu::copy_to_device(iarena.data() + p.targets, ids.data(), ids.size() * sizeof(Index), st.stream());
  const lgm::gpu::DeviceOptimizer<lgm::AdamW, float> opt(
      lgm::AdamW{.weight_decay = 0.1, .decay_mask = nn::decay_mask(g.table()), .max_grad_norm = 1.0});
  auto state = opt.init(d, M, st);
  const typename nn::Gpt::Buffers<float> b{arena.data(), darena.data(), iarena.data()};
  const auto step = [&] {
    g.forward_backward<float>(exec, p, nn::Params<const float>{X.data(), d}, nn::Params<float>{G.data(), d}, b);
    opt.step_all(state, X.view(), G.view(), 1e-4, st.stream());
  };
  step();  // warm-up: the pool's first allocations, caches
  Timer timer(st.stream());
  std::vector<double> rates;
  for (int rep = 0; rep < 3; ++rep) {
    Index n = 0;
    timer.start();
    double elapsed = 0.0;
    while (elapsed < seconds) {
      step();
      ++n;
      elapsed = timer.stop();
    }
    rates.push_back(static_cast<double>(n * M * c.batch * c.seq) / elapsed);
  }
  std::sort(rates.begin(), rates.end());
  double loss = 0.0;
  lgm::gpu::copy_to_host(&loss, darena.data() + p.losses, sizeof(double), st.stream());
  const double tokens_per_s = rates[1];
  const double flops = tokens_per_s * 6.0 * g.forward_macs(c.seq);  // 3 passes × 2 FLOPs a multiply-add
  std::printf(
      "lgm_gpt case=%s model=%s replicas=%lld batch=%lld seq=%lld params=%lld tokens_per_s=%.1f "
      "model_gflops=%.2f",
      c.id.c_str(), c.model.c_str(), static_cast<long long>(M), static_cast<long long>(c.batch),
      static_cast<long long>(c.seq), static_cast<long long>(g.table().parameters()), tokens_per_s, flops / 1e9);
  if (LGM_GPU_CUDA) std::printf(" mfu=%.3f", flops / (peak_tflops * 1e12));
  std::printf(" loss=%.4f\n", loss);
  return std::isfinite(loss) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  double seconds = 2.0, peak = 67.0;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if ((a == "--cases" || a == "--seconds" || a == "--peak-tflops") && i + 1 < argc) {
      const std::string v = argv[++i];
      if (a == "--cases") only = v;
      if (a == "--seconds") seconds = std::stod(v);
      if (a == "--peak-tflops") peak = std::stod(v);
    } else {
      std::printf("usage: %s [--quick] [--cases a,b,...] [--seconds S] [--peak-tflops P]\n", argv[0]);
      return a == "--help" ? 0 : 2;
    }
  }
  if (quick) seconds = std::min(seconds, 0.05);
  try {
    const std::string reason = lgm::gpu::device_unavailable_reason();
    if (!reason.empty()) {
      std::printf("skipped: %s\n", reason.c_str());
      return 77;
    }
    int status = 0;
    for (const Case& c : cases(quick))
      if (only.empty() || ("," + only + ",").find("," + c.id + ",") != std::string::npos)
        status = std::max(status, run_case(c, seconds, peak));
    return status;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lgm_gpt_bench: %s\n", e.what());
    return 1;
  }
}
