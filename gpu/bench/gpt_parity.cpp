// One fp32 forward and backward pass of lgm::gpu::nn::Gpt (Thrust's OpenMP system), written out so that
// bench/peers/torch_gpt.py can run the same model with the same weights and tokens in PyTorch and compare the loss
// and every gradient (docs/nn.md §PyTorch parity). Writes into DIR:
//   meta.json   the spec, batch, seq, the loss, and the tensor table (name, shape, offset)
//   params.f32  the d parameters (the GPT-2 initialization of seed 1, shifted so biases and shifts are not 0)
//   grad.f32    the gradient of the mean next-token loss
//   tokens.i32, targets.i32   batch × seq ids
// Usage: lgm_gpt_parity_omp DIR [--layers L --heads H --width C --context T --vocab V --batch B --seq S]
// (defaults: 2, 2, 64, 64, 256, 4, 64). Exit status 0, 2 for a bad argument or an unwritable DIR.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "lgm/gpu/nn/gpt.hpp"
#include "lgm/gpu/storage.hpp"

namespace {

using lgm::Index;
namespace nn = lgm::gpu::nn;
namespace fs = std::filesystem;

/// Writes `bytes` to dir/name through a temporary file and a rename: the file is whole or absent.
void write_file(const fs::path& dir, const std::string& name, const void* data, std::size_t bytes) {
  const fs::path tmp = dir / (name + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
    if (!out) throw std::runtime_error("cannot write " + tmp.string());
  }
  fs::rename(tmp, dir / name);
}

Index arg(int argc, char** argv, const std::string& key, Index fallback) {
  for (int i = 2; i + 1 < argc; ++i)
    if (argv[i] == key) return std::stoll(argv[i + 1]);
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::printf("usage: %s DIR [--layers L --heads H --width C --context T --vocab V --batch B --seq S]\n", argv[0]);
    return argc < 2 ? 2 : 0;
  }
  try {
    const fs::path dir = argv[1];
    fs::create_directories(dir);
    const nn::GptSpec spec{arg(argc, argv, "--layers", 2), arg(argc, argv, "--heads", 2),
                           arg(argc, argv, "--width", 64), arg(argc, argv, "--context", 64),
                           arg(argc, argv, "--vocab", 256)};
    const Index B = arg(argc, argv, "--batch", 4), S = arg(argc, argv, "--seq", spec.context);
    const nn::Gpt g(spec);
    const nn::GptPlan p = g.plan(1, B, S);
    lgm::Vector x0 = g.initial_point(1);
    std::mt19937_64 rng(7);
    std::normal_distribution<double> shift(0.0, 0.1);
    for (const nn::TensorInfo& t : g.table().tensors())
      if (t.kind != nn::TensorKind::weight && t.kind != nn::TensorKind::embedding)
        for (Index k = 0; k < t.size; ++k) x0[t.offset + k] += shift(rng);  // biases, scales and shifts ≠ defaults
    std::vector<float> params(x0.data(), x0.data() + x0.size());
    std::vector<Index> ids(static_cast<std::size_t>(B * S)), next(ids.size());
    std::uniform_int_distribution<Index> id(0, spec.vocab - 1);
    for (std::size_t n = 0; n < ids.size(); ++n) {
      ids[n] = id(rng);
      next[n] = id(rng);
    }
    lgm::gpu::DeviceStorage<float> st;
    lgm::gpu::Blas blas(st.stream());
    const nn::Exec exec{st.stream(), &blas};
    lgm::gpu::DeviceBuffer<float> arena(p.t_values, st.stream()), dx(g.dim(), st.stream()), dg(g.dim(), st.stream());
    lgm::gpu::DeviceBuffer<double> darena(p.d_values, st.stream());
    lgm::gpu::DeviceBuffer<Index> iarena(p.i_values, st.stream());
    lgm::gpu::copy_to_device(dx.data(), params.data(), params.size() * sizeof(float), st.stream());
    lgm::gpu::copy_to_device(iarena.data() + p.tokens, ids.data(), ids.size() * sizeof(Index), st.stream());
    lgm::gpu::copy_to_device(iarena.data() + p.targets, next.data(), next.size() * sizeof(Index), st.stream());
    g.forward_backward<float>(exec, p, nn::Params<const float>{dx.data(), g.dim()},
                              nn::Params<float>{dg.data(), g.dim()}, {arena.data(), darena.data(), iarena.data()});
    std::vector<float> grad(static_cast<std::size_t>(g.dim()));
    double loss = 0.0;
    lgm::gpu::copy_to_host(grad.data(), dg.data(), grad.size() * sizeof(float), st.stream());
    lgm::gpu::copy_to_host(&loss, darena.data() + p.losses, sizeof(double), st.stream());

    std::vector<std::int32_t> ids32(ids.begin(), ids.end()), next32(next.begin(), next.end());
    write_file(dir, "params.f32", params.data(), params.size() * sizeof(float));
    write_file(dir, "grad.f32", grad.data(), grad.size() * sizeof(float));
    write_file(dir, "tokens.i32", ids32.data(), ids32.size() * sizeof(std::int32_t));
    write_file(dir, "targets.i32", next32.data(), next32.size() * sizeof(std::int32_t));
    std::string meta = "{\"layers\": " + std::to_string(spec.layers) + ", \"heads\": " + std::to_string(spec.heads) +
                       ", \"width\": " + std::to_string(spec.width) + ", \"context\": " + std::to_string(spec.context) +
                       ", \"vocab\": " + std::to_string(spec.vocab) + ", \"ln_eps\": " + std::to_string(spec.ln_eps) +
                       ", \"batch\": " + std::to_string(B) + ", \"seq\": " + std::to_string(S) +
                       ", \"dim\": " + std::to_string(g.dim());
    char text[64];
    std::snprintf(text, sizeof text, "%.17g", loss);
    meta += ", \"loss\": " + std::string(text) + ", \"tensors\": [";
    bool first = true;
    for (const nn::TensorInfo& t : g.table().tensors()) {
      meta += std::string(first ? "" : ", ") + "{\"name\": \"" + t.name +
              "\", \"offset\": " + std::to_string(t.offset) + ", \"shape\": [";
      for (std::size_t k = 0; k < t.shape.size(); ++k) meta += (k ? ", " : "") + std::to_string(t.shape[k]);
      meta += "]}";
      first = false;
    }
    meta += "]}\n";
    write_file(dir, "meta.json", meta.data(), meta.size());
    std::printf("gpt_parity: d = %lld, loss = %.9f, written to %s\n", static_cast<long long>(g.dim()), loss,
                dir.string().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpt_parity: %s\n", e.what());
    return 2;
  }
}
