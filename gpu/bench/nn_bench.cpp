// The network benchmark of the GPU backend (docs/performance.md §Networks (ResNet-20) against PyTorch): training
// throughput of lgm::gpu::nn::ResNet, one step = forward + backward + SGD update of all M replicas in one call, in
// float, on synthetic images and labels already on the device. Built twice like gpu_bench: by nvcc as CUDA (timed
// with CUDA events) and by the host compiler with Thrust's OpenMP system (the "device" is the host; the figures
// bench/peers/compare_resnet.sh compares with PyTorch). Cases:
//   a  ResNet-20, 28×28×1, 10 classes, M = 1, b = 128       (both builds)
//   b  the same net, M = 8 replicas × b = 32 in one call      (both builds)
//   c–f ResNet-20 and ResNet-18 at 32×32×3, M = 1 and M = 8, b = 128 each replica (CUDA build)
// Beside img/s it reports the convolutions' FLOP rate (≈ 3 × forward multiply-adds × 2 per image: the forward GEMM
// and the two backward ones) against a large square GEMM measured with the same BLAS in the same run, and the
// arena bytes the plan asks for beside the measured peak (CUDA: cudaMemGetInfo; host: peak RSS).
// Usage: lgm_nn_bench [--quick] [--cases a,b,...] [--json FILE] [--help]. Exit status: 0, 1 when a loss is not
// finite or a case fails, 2 for a bad argument, 77 when no device is usable.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_timer.hpp"
#include "lgm/gpu/backend.hpp"
#include "lgm/gpu/blas.hpp"
#include "lgm/gpu/kernels.hpp"
#include "lgm/gpu/memory_pool.hpp"
#include "lgm/gpu/nn/resnet.hpp"
#include "lgm/gpu/storage.hpp"

#if !LGM_GPU_CUDA
#include <malloc.h>
#include <sys/resource.h>

#include <fstream>
#endif

namespace {

using lgm::Index;
using lgm::gpu::DeviceBuffer;
using lgm::gpu::StreamHandle;
namespace nn = lgm::gpu::nn;
using lgm::gpu::bench::Clock;
using lgm::gpu::bench::seconds_since;
using lgm::gpu::bench::Timer;

// ==================================================================== configuration

struct Case {
  std::string id;
  std::string net;  ///< "resnet20" or "resnet18"
  nn::ResNetSpec spec;
  Index replicas = 1;
  Index batch = 128;  ///< samples of one replica
};

struct Config {
  bool quick = false;
  std::vector<Case> cases;
  int warmup = 2;            ///< untimed steps first (the pool's first allocations, cuBLAS's heuristics, caches)
  double rep_seconds = 2.0;  ///< each timed repetition runs as many steps as fill about this long
  int reps = 5;              ///< repetitions; the median is the figure, the best is shown beside it
  Index gemm_n = 4096;       ///< the reference GEMM is gemm_n³
  double lr = 0.01;          ///< SGD step (no momentum, no weight decay: as the PyTorch peer)
  std::uint64_t seed = 42;

  static Config make(bool quick) {
    Config c;
    c.quick = quick;
    const auto r20 = [&](Index ch, Index side) {
      // --quick: a depth-8 network of width 4 on 8×8 images, the same code paths in a fraction of a second
      return quick ? nn::ResNetSpec::cifar(8, 4, ch, 8, 10) : nn::ResNetSpec::cifar(20, 16, ch, side, 10);
    };
    const Index b = quick ? 8 : 128;
    const std::string n20 = quick ? "resnet8w4" : "resnet20", n18 = quick ? "resnet18w4" : "resnet18";
    c.cases.push_back({"a", n20, r20(1, 28), 1, b});
    c.cases.push_back({"b", n20, r20(1, 28), quick ? 2 : 8, quick ? 4 : 32});
#if LGM_GPU_CUDA
    const nn::ResNetSpec r18 = quick ? nn::ResNetSpec::resnet18(4, 3, 8, 10) : nn::ResNetSpec::resnet18(64, 3, 32, 10);
    c.cases.push_back({"c", n20, r20(3, 32), 1, b});
    c.cases.push_back({"d", n20, r20(3, 32), quick ? 2 : 8, b});
    c.cases.push_back({"e", n18, r18, 1, b});
    c.cases.push_back({"f", n18, r18, quick ? 2 : 8, b});
    c.rep_seconds = 0.5;
    c.reps = 7;
#else
    c.gemm_n = 1024;  // 2.1 GFlop: tens of milliseconds on a few cores
#endif
    if (quick) {
      c.warmup = 1;
      c.rep_seconds = 0.0;  // one step a repetition
      c.reps = 2;
      c.gemm_n = 256;
    }
    return c;
  }
};

// ==================================================================== the device, its timer and its memory

struct DeviceInfo {
  std::string name;
  std::string build;
  double peak_flops = 0.0;  ///< theoretical fp32 FMA peak (CUDA, from the SM count and clock), 0 when unknown
  int host_threads = 1;
};

DeviceInfo describe_device() {
  DeviceInfo info;
  info.host_threads = omp_get_max_threads();
#if LGM_GPU_CUDA
  int dev = 0;
  lgm::gpu::check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp prop{};
  lgm::gpu::check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  info.name = prop.name;
  info.build = "CUDA";
  // fp32 lanes per SM by compute capability (CUDA programming guide, "Arithmetic Instructions"); other: unknown
  int lanes = 0;
  if (prop.major == 7 || (prop.major == 8 && prop.minor == 0)) lanes = 64;
  if ((prop.major == 8 && prop.minor != 0) || prop.major == 9 || prop.major == 10) lanes = 128;
  int clock_khz = 0;
  if (lanes > 0 && cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev) == cudaSuccess && clock_khz > 0)
    info.peak_flops = 2.0 * lanes * prop.multiProcessorCount * clock_khz * 1e3;
  (void)cudaGetLastError();  // an unsupported attribute must not poison later calls
#else
  info.name = "host (OpenMP system)";
  info.build = "OpenMP";
#endif
  return info;
}

/// What the memory probe sees: CUDA, device bytes in use (total − free, every process and cuBLAS's workspace
/// included); host, the process's resident set, whose high-water mark is reset per case (Linux clear_refs).
struct MemoryProbe {
  static const char* method() {
#if LGM_GPU_CUDA
    return "cudaMemGetInfo: device bytes in use after the timed steps minus before the case";
#else
    return "VmHWM (peak RSS, reset per case through /proc/self/clear_refs) minus VmRSS before the case (getrusage's "
           "max RSS where /proc is missing)";
#endif
  }
#if LGM_GPU_CUDA
  static double used() {
    std::size_t free = 0, total = 0;
    lgm::gpu::check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
    return static_cast<double>(total - free);
  }
#else
  static double status_kib(const char* key) {
    std::ifstream f("/proc/self/status");
    std::string k;
    double v = -1.0;
    while (f >> k) {
      if (k == key) {
        f >> v;
        return v * 1024.0;
      }
      f.ignore(1 << 12, '\n');
    }
    return -1.0;
  }
  /// Resets the peak RSS to the current RSS; false where the kernel does not allow it (getrusage then).
  static bool reset_peak() {
    std::ofstream f("/proc/self/clear_refs");
    f << "5";
    f.close();
    return static_cast<bool>(f);
  }
  static double peak() {
    const double hwm = status_kib("VmHWM:");
    if (hwm >= 0.0) return hwm;
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) * 1024.0;
  }
  static double used() {
    const double rss = status_kib("VmRSS:");
    return rss >= 0.0 ? rss : peak();
  }
#endif
};

// ==================================================================== the reference GEMM

struct GemmFigure {
  Index n = 0;
  double flops = 0.0;  ///< per second, best of the repetitions
};

/// C = A·B, all n × n, with the benchmark's own BLAS (cuBLAS / the host GEMM of blas.hpp): what the machine's GEMM
/// reaches on a large, well-shaped product, the yardstick of the convolutions' rate.
GemmFigure measure_gemm(const Config& cfg, const lgm::gpu::Blas& blas, StreamHandle s, Timer& timer) {
  const Index n = cfg.gemm_n;
  DeviceBuffer<float> a(n * n, s), b(n * n, s), c(n * n, s);
  std::vector<float> host(static_cast<std::size_t>(n * n));
  std::mt19937_64 gen(cfg.seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& v : host) v = u(gen);
  lgm::gpu::copy_to_device(a.data(), host.data(), host.size() * sizeof(float), s);
  lgm::gpu::copy_to_device(b.data(), host.data(), host.size() * sizeof(float), s);
  const auto call = [&] {
    blas.gemm_strided_batched<float>(lgm::gpu::Op::none, lgm::gpu::Op::none, n, n, n, 1.0f, a.data(), n, 0, b.data(), n,
                                     0, 0.0f, c.data(), n, 0, 1);
  };
  call();
  GemmFigure g;
  g.n = n;
  const int reps = cfg.quick ? 2 : 5;
  for (int r = 0; r < reps; ++r) {
    timer.start();
    call();
    g.flops = std::max(g.flops, 2.0 * static_cast<double>(n) * n * n / timer.stop());
  }
  return g;
}

// ==================================================================== one case

struct CaseResult {
  Case c;
  Index dim = 0;
  double macs_per_image = 0.0;  ///< forward multiply-adds of one image (ResNet::forward_macs)
  Index steps_per_rep = 0;
  std::vector<double> step_seconds;  ///< one a repetition
  double median_seconds = 0.0, best_seconds = 0.0;
  double first_loss = 0.0, last_loss = 0.0;  ///< mean over replicas, after the first and the last step
  double arena_bytes = 0.0;                  ///< plan: t_values·sizeof(float) + d_values·8 + i_values·sizeof(Index)
  double param_bytes = 0.0;                  ///< X and G: 2·d·M floats, and the running statistics
  double measured_bytes = 0.0;               ///< MemoryProbe's peak minus its baseline
  double pool_bytes = 0.0;                   ///< the pool's bytes in use (size classes) at the end of the case

  Index images() const { return c.replicas * c.batch; }
  double img_per_s() const { return static_cast<double>(images()) / median_seconds; }
  double best_img_per_s() const { return static_cast<double>(images()) / best_seconds; }
  /// FLOPs of the convolutions and the classifier per step: forward, and the backward's weight and input GEMMs
  double gemm_flops() const { return 2.0 * 3.0 * macs_per_image * static_cast<double>(images()); }
};

double mean_loss(const DeviceBuffer<double>& d, const nn::ResNetPlan& plan, StreamHandle s) {
  std::vector<double> losses(static_cast<std::size_t>(plan.replicas));
  lgm::gpu::copy_to_host(losses.data(), d.data() + plan.losses, losses.size() * sizeof(double), s);
  double sum = 0.0;
  for (double l : losses) sum += l;
  return sum / static_cast<double>(losses.size());
}

CaseResult run_case(const Case& c, const Config& cfg) {
  CaseResult r;
  r.c = c;
  lgm::gpu::default_pool().release_cached();  // the previous case's blocks must not hide this one's footprint
#if !LGM_GPU_CUDA
  MemoryProbe::reset_peak();
#endif
  const double before = MemoryProbe::used();

  lgm::gpu::DeviceStorage<float> storage;
  const StreamHandle s = storage.stream();
  const lgm::gpu::Blas blas(s);
  const nn::Exec exec{s, &blas};
  const nn::ResNet net(c.spec);
  const Index d = net.dim(), M = c.replicas;
  const nn::ResNetPlan plan = net.plan(M, c.batch, 1);
  r.dim = d;
  r.macs_per_image = net.forward_macs();
  r.arena_bytes = static_cast<double>(plan.t_values) * sizeof(float) + static_cast<double>(plan.d_values) * 8.0 +
                  static_cast<double>(plan.i_values) * sizeof(Index);
  r.param_bytes = (2.0 * static_cast<double>(d * M) + 2.0 * static_cast<double>(net.norm_channels() * M)) * 4.0;

  DeviceBuffer<float> t(plan.t_values, s), x(d * M, s), g(d * M, s);
  DeviceBuffer<float> running_mean(net.norm_channels() * M, s), running_var(net.norm_channels() * M, s);
  DeviceBuffer<double> dd(plan.d_values, s);
  DeviceBuffer<Index> ii(plan.i_values, s);
  {
    std::vector<float> host(static_cast<std::size_t>(d * M));
    for (Index m = 0; m < M; ++m) {
      const lgm::Vector x0 = net.initial_point(cfg.seed + static_cast<std::uint64_t>(m));
      for (Index i = 0; i < d; ++i) host[static_cast<std::size_t>(m * d + i)] = static_cast<float>(x0[i]);
    }
    lgm::gpu::copy_to_device(x.data(), host.data(), host.size() * sizeof(float), s);
    std::vector<float> zeros(static_cast<std::size_t>(net.norm_channels() * M), 0.0f), ones(zeros.size(), 1.0f);
    lgm::gpu::copy_to_device(running_mean.data(), zeros.data(), zeros.size() * sizeof(float), s);
    lgm::gpu::copy_to_device(running_var.data(), ones.data(), ones.size() * sizeof(float), s);
    // synthetic data: standard normal pixels, uniform labels (the cost does not depend on the values)
    std::mt19937_64 gen(cfg.seed);
    std::normal_distribution<float> pixel(0.0f, 1.0f);
    std::vector<float> images(static_cast<std::size_t>(net.input_shape(M, c.batch).size()));
    for (float& v : images) v = pixel(gen);
    lgm::gpu::copy_to_device(t.data() + plan.input, images.data(), images.size() * sizeof(float), s);
    std::uniform_int_distribution<Index> label(0, c.spec.classes - 1);
    std::vector<Index> labels(static_cast<std::size_t>(M * c.batch));
    for (Index& l : labels) l = label(gen);
    lgm::gpu::copy_to_device(ii.data() + plan.labels, labels.data(), labels.size() * sizeof(Index), s);
    storage.synchronize();  // the host vectors go out of scope
  }
  const nn::ResNet::Buffers<float> bufs{t.data(), dd.data(), ii.data(), running_mean.data(), running_var.data()};
  const lgm::gpu::DeviceMatrixView<float> xv(x.data(), d, M);
  const lgm::gpu::DeviceMatrixView<const float> gv(g.data(), d, M);
  const auto step = [&] {
    net.forward_backward<float>(exec, plan, nn::Params<const float>{x.data(), d}, nn::Params<float>{g.data(), d}, bufs);
    lgm::gpu::sgd_step<float>(xv, gv, cfg.lr, 0.0, s);
  };

  Timer timer(s);
  step();
  r.first_loss = mean_loss(dd, plan, s);
  for (int w = 1; w < cfg.warmup; ++w) step();
  timer.start();
  step();
  const double estimate = std::max(timer.stop(), 1e-7);
  r.steps_per_rep = std::clamp<Index>(static_cast<Index>(std::ceil(cfg.rep_seconds / estimate)), 1, 10'000);
  for (int rep = 0; rep < cfg.reps; ++rep) {
    timer.start();
    for (Index k = 0; k < r.steps_per_rep; ++k) step();
    r.step_seconds.push_back(timer.stop() / static_cast<double>(r.steps_per_rep));
  }
  r.last_loss = mean_loss(dd, plan, s);
  storage.synchronize();
  std::vector<double> sorted = r.step_seconds;
  std::sort(sorted.begin(), sorted.end());
  r.median_seconds = sorted[sorted.size() / 2];
  r.best_seconds = sorted.front();
#if LGM_GPU_CUDA
  r.measured_bytes = MemoryProbe::used() - before;
#else
  r.measured_bytes = MemoryProbe::peak() - before;
#endif
  r.pool_bytes = static_cast<double>(lgm::gpu::default_pool().stats().bytes_in_use);
  return r;
}

// ==================================================================== report

struct Report {
  DeviceInfo device;
  Config cfg;
  GemmFigure gemm;
  std::vector<CaseResult> cases;
  double total_seconds = 0.0;
};

std::string shape_text(const Case& c) {
  return std::to_string(c.spec.height) + "x" + std::to_string(c.spec.width) + "x" + std::to_string(c.spec.in_channels);
}

void print_header(const Report& r) {
  std::printf("lgm network benchmark (nn::ResNet training step, fp32) — %s build%s\n", r.device.build.c_str(),
              r.cfg.quick ? " (--quick sizes)" : "");
  std::printf("device: %s", r.device.name.c_str());
  if (r.device.peak_flops > 0.0) std::printf(", theoretical fp32 peak %.1f TFlop/s", r.device.peak_flops / 1e12);
  std::printf("; host threads %d (OMP_NUM_THREADS)\n", r.device.host_threads);
  std::printf("reference GEMM %lld^3 (fp32, same BLAS): %.1f GFlop/s", static_cast<long long>(r.gemm.n),
              r.gemm.flops / 1e9);
  if (r.device.peak_flops > 0.0) std::printf(" = %.2f of the theoretical peak", r.gemm.flops / r.device.peak_flops);
  std::printf(
      "\none step = forward + backward + SGD update of all M replicas in one call; median of %d repetitions\n\n",
      r.cfg.reps);
  std::printf("  %-4s %-9s %-8s %3s %5s %10s %10s %10s %9s %7s %10s %10s %8s\n", "case", "net", "input", "M", "b",
              "ms/step", "img/s", "best img/s", "GFlop/s", "of GEMM", "plan MiB", "peak MiB", "loss");
  std::fflush(stdout);
}

void print_case(const Report& r, const CaseResult& c) {
  const double rate = c.gemm_flops() / c.median_seconds;
  std::printf("  %-4s %-9s %-8s %3lld %5lld %10.2f %10.1f %10.1f %9.1f %7.2f %10.1f %10.1f %8.4f\n", c.c.id.c_str(),
              c.c.net.c_str(), shape_text(c.c).c_str(), static_cast<long long>(c.c.replicas),
              static_cast<long long>(c.c.batch), c.median_seconds * 1e3, c.img_per_s(), c.best_img_per_s(), rate / 1e9,
              rate / r.gemm.flops, (c.arena_bytes + c.param_bytes) / 1048576.0, c.measured_bytes / 1048576.0,
              c.last_loss);
  std::fflush(stdout);
}

/// One `key=value` line a case (grep-able: bench/peers/compare_resnet.sh reads img_per_s from them).
void print_machine_lines(const Report& r) {
  std::printf("\n");
  for (const CaseResult& c : r.cases)
    std::printf(
        "nn_bench case=%s net=%s input=%s replicas=%lld batch=%lld threads=%d img_per_s=%.6g best_img_per_s=%.6g "
        "ms_per_step=%.6g gemm_gflops=%.6g gemm_fraction=%.4f plan_arena_bytes=%.0f plan_param_bytes=%.0f "
        "measured_peak_bytes=%.0f pool_bytes_in_use=%.0f first_loss=%.6g last_loss=%.6g\n",
        c.c.id.c_str(), c.c.net.c_str(), shape_text(c.c).c_str(), static_cast<long long>(c.c.replicas),
        static_cast<long long>(c.c.batch), r.device.host_threads, c.img_per_s(), c.best_img_per_s(),
        c.median_seconds * 1e3, c.gemm_flops() / c.median_seconds / 1e9,
        c.gemm_flops() / c.median_seconds / r.gemm.flops, c.arena_bytes, c.param_bytes, c.measured_bytes, c.pool_bytes,
        c.first_loss, c.last_loss);
  std::printf("nn_bench reference_gemm_n=%lld reference_gemm_gflops=%.6g theoretical_peak_gflops=%.6g\n",
              static_cast<long long>(r.gemm.n), r.gemm.flops / 1e9, r.device.peak_flops / 1e9);
}

void print_notes() {
  std::printf(
      "\nGFlop/s: 2 x 3 x forward multiply-adds x images / step time (the whole step's time, so im2col, batch norm,\n"
      "  pointwise layers and the update count against it); 'of GEMM': that rate / the reference GEMM's.\n"
      "plan MiB: the plan's arenas (t_values x 4 + d_values x 8 + i_values x 8 bytes) + parameters, gradients and\n"
      "  running statistics (2 d M + 2 norm_channels M floats).\npeak MiB: %s.\n"
      "  The pool rounds each buffer up to a power of two (pool_bytes_in_use in the key=value lines).\n",
      MemoryProbe::method());
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

bool write_json(const Report& r, const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  const auto num = json_number;
  std::fprintf(f,
               "{\n  \"build\": \"%s\",\n  \"device\": \"%s\",\n  \"quick\": %s,\n  \"host_threads\": %d,\n  "
               "\"theoretical_peak_GFlops\": %s,\n  \"reference_gemm\": {\"n\": %lld, \"GFlops\": %s},\n  "
               "\"memory_probe\": \"%s\",\n  \"cases\": [\n",
               r.device.build.c_str(), r.device.name.c_str(), r.cfg.quick ? "true" : "false", r.device.host_threads,
               r.device.peak_flops > 0.0 ? num(r.device.peak_flops / 1e9).c_str() : "null",
               static_cast<long long>(r.gemm.n), num(r.gemm.flops / 1e9).c_str(), MemoryProbe::method());
  for (std::size_t i = 0; i < r.cases.size(); ++i) {
    const CaseResult& c = r.cases[i];
    std::fprintf(f,
                 "    {\"case\": \"%s\", \"net\": \"%s\", \"input\": \"%s\", \"M\": %lld, \"b\": %lld, \"dim\": %lld, "
                 "\"steps_per_rep\": %lld, \"ms_per_step\": %s, \"img_per_s\": %s, \"best_img_per_s\": %s, "
                 "\"gemm_GFlops\": %s, \"gemm_fraction\": %s, \"plan_arena_bytes\": %s, \"plan_param_bytes\": %s, "
                 "\"measured_peak_bytes\": %s, \"pool_bytes_in_use\": %s, \"first_loss\": %s, \"last_loss\": %s}%s\n",
                 c.c.id.c_str(), c.c.net.c_str(), shape_text(c.c).c_str(), static_cast<long long>(c.c.replicas),
                 static_cast<long long>(c.c.batch), static_cast<long long>(c.dim),
                 static_cast<long long>(c.steps_per_rep), num(c.median_seconds * 1e3).c_str(),
                 num(c.img_per_s()).c_str(), num(c.best_img_per_s()).c_str(),
                 num(c.gemm_flops() / c.median_seconds / 1e9).c_str(),
                 num(c.gemm_flops() / c.median_seconds / r.gemm.flops).c_str(), num(c.arena_bytes).c_str(),
                 num(c.param_bytes).c_str(), num(c.measured_bytes).c_str(), num(c.pool_bytes).c_str(),
                 num(c.first_loss).c_str(), num(c.last_loss).c_str(), i + 1 < r.cases.size() ? "," : "");
  }
  std::fprintf(f, "  ],\n  \"total_seconds\": %s\n}\n", num(r.total_seconds).c_str());
  return std::fclose(f) == 0;
}

void print_help(const char* argv0) {
  std::printf(
      "usage: %s [--quick] [--cases a,b,...] [--json FILE] [--help]\n"
      "Training throughput (img/s) of lgm's ResNet on this build's device: one step = forward + backward + SGD\n"
      "update of all M replicas in one call, fp32, synthetic data on the device.\n"
      "  a  ResNet-20, 28x28x1, M = 1, b = 128     b  the same, M = 8 x b = 32\n"
      "  c, d  ResNet-20, 32x32x3, M = 1 / 8, b = 128 each   e, f  ResNet-18, the same (CUDA build only)\n"
      "  --quick       a depth-8, width-4 network on 8x8 images (a smoke run of seconds)\n"
      "  --cases LIST  only these cases (comma-separated ids)\n"
      "  --json FILE   also write the figures to FILE as JSON\n"
      "Threads of the OpenMP build: OMP_NUM_THREADS. Exit status: 0; 1 when a loss is not finite or a case fails;\n"
      "2 for a bad argument; 77 when no CUDA device is usable.\n",
      argv0);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string json_path, only;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      print_help(argv[0]);
      return 0;
    } else if (arg == "--quick") {
      quick = true;
    } else if (arg == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (arg == "--cases" && i + 1 < argc) {
      only = "," + std::string(argv[++i]) + ",";
    } else {
      std::fprintf(stderr, "%s: unknown or incomplete argument '%s' (see --help)\n", argv[0], arg.c_str());
      return 2;
    }
  }
  const std::string reason = lgm::gpu::device_unavailable_reason();
  if (!reason.empty()) {
    std::printf("skipped: %s\n", reason.c_str());
    return 77;
  }
#if !LGM_GPU_CUDA
  // large blocks always from mmap, so that a freed arena leaves the resident set and the next case's peak is its own
  // (a fixed threshold also stops glibc from raising it after the first large free)
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
#endif

  try {
    const auto t_start = Clock::now();
    Report report;
    report.cfg = Config::make(quick);
    if (!only.empty()) {
      std::vector<Case> kept;
      for (const Case& c : report.cfg.cases)
        if (only.find("," + c.id + ",") != std::string::npos) kept.push_back(c);
      if (kept.empty()) {
        std::fprintf(stderr, "%s: --cases %s selects no case of this build (see --help)\n", argv[0],
                     only.substr(1, only.size() - 2).c_str());
        return 2;
      }
      report.cfg.cases = kept;
    }
    report.device = describe_device();
    {
      lgm::gpu::DeviceStorage<float> storage;
      const lgm::gpu::Blas blas(storage.stream());
      Timer timer(storage.stream());
      report.gemm = measure_gemm(report.cfg, blas, storage.stream(), timer);
    }
    print_header(report);
    bool finite = true;
    for (const Case& c : report.cfg.cases) {
      report.cases.push_back(run_case(c, report.cfg));
      print_case(report, report.cases.back());
      finite = finite && std::isfinite(report.cases.back().last_loss);
    }
    report.total_seconds = seconds_since(t_start);
    print_notes();
    print_machine_lines(report);
    std::printf("\ntotal %.1f s\n", report.total_seconds);
    if (!json_path.empty() && !write_json(report, json_path)) {
      std::fprintf(stderr, "could not write %s\n", json_path.c_str());
      return 1;
    }
    if (!finite) std::fprintf(stderr, "error: a loss is not finite\n");
    return finite ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
