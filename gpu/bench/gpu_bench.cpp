// The GPU backend's benchmark (docs/gpu.md, docs/performance.md): one plain program, built twice like the tests —
// by nvcc as CUDA (the real benchmark, timed with CUDA events) and by the host compiler with Thrust's OpenMP system
// (the "device" is the host: a smoke run that checks the code works). In one run it measures
//   1. the device's memory bandwidth (STREAM triad a = b + s·c and a plain copy, arrays far larger than the cache),
//   2. every fused kernel's rate as a fraction of that triad (bytes counted from the arithmetic),
//   3. the objectives' batched step (DeviceLogistic / DeviceSoftmax gradients() of all M workers),
//   4. whole runs of the unchanged driver on the host (double) and on the device (float): worker-steps per second,
//      their ratio, and the parity of the two trajectories (shared point at every sync, final minibatch loss).
// Usage: lgm_gpu_bench [--quick] [--json FILE] [--help]. Exit status: 0, 1 when the parity exceeds float32
// tolerance, 2 for a bad argument, 77 when no device is usable (as the GPU tests).
#include <omp.h>
#include <thrust/copy.h>
#include <thrust/fill.h>
#include <thrust/transform.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_timer.hpp"
#include "lgm/gpu/backend.hpp"
#include "lgm/gpu/communicator.hpp"
#include "lgm/gpu/kernels.hpp"
#include "lgm/gpu/memory_pool.hpp"
#include "lgm/gpu/objectives.hpp"
#include "lgm/gpu/optimizers.hpp"
#include "lgm/gpu/storage.hpp"
#include "lgm/lgm.hpp"

#if !LGM_GPU_CUDA
#include <unistd.h>
#endif

namespace {

using lgm::Index;
using lgm::gpu::DeviceMatrix;
using lgm::gpu::DeviceMatrixView;
using lgm::gpu::StreamHandle;
using lgm::gpu::bench::Clock;
using lgm::gpu::bench::seconds_since;
using lgm::gpu::bench::Timer;

// ==================================================================== configuration

/// Every size of the benchmark. The full sizes keep the kernels' working sets far above the last-level cache (the
/// GPU's L2: 50–60 MiB); --quick shrinks everything so the OpenMP smoke run takes seconds on 2 cores.
struct Config {
  bool quick = false;
  // 1. bandwidth
  Index stream_n = Index{1} << 27;  ///< floats per triad array (CUDA: 3 × 512 MiB)
  int stream_reps = 20;
  // 2. kernels
  std::vector<Index> kernel_dims{100'000, 1'000'000, 10'000'000};
  std::vector<Index> kernel_workers{8, 64};
  double rep_seconds = 0.002;  ///< each timed repetition lasts about this long (calls are batched to reach it)
  int reps = 10;               ///< best of
  // 3. objectives
  Index obj_d = 1000;
  Index obj_workers = 16;
  std::vector<Index> obj_batches{32, 1024};
  Index softmax_classes = 10;
  Index softmax_n = 16384;
  // 4. whole runs
  Index run_n = 50000;
  Index run_b = 32;
  Index run_workers = 16;
  Index run_h = 8;
  double run_lr = 0.5;
  double run_target_seconds = 2.0;  ///< the slower backend's run takes about this long (0: K = 4·H, no calibration)
  int run_reps = 3;                 ///< best of, per backend (0: time the observed parity runs instead)
  std::uint64_t seed = 42;

  static Config make(bool quick) {
    Config c;
    c.quick = quick;
#if !LGM_GPU_CUDA
    // the host moves 10–25 GB/s: smaller arrays (still several times a server's L3) keep the run under a minute
    c.stream_n = Index{1} << 26;
    c.stream_reps = 6;
    c.kernel_dims = {100'000, 1'000'000};
    c.rep_seconds = 0.05;
    c.reps = 5;
#endif
    if (quick) {
      c.stream_n = Index{1} << 23;
      c.stream_reps = 4;
      c.kernel_dims = {10'000, 100'000};
      c.rep_seconds = std::min(c.rep_seconds, 0.01);
      c.reps = 3;
      c.obj_batches = {32, 128};
      c.softmax_n = 4096;
      c.run_n = 8192;
      c.run_target_seconds = 0.0;
      c.run_reps = 0;
    }
    return c;
  }
};

// ==================================================================== the device and its timer

struct DeviceInfo {
  std::string name;
  std::string build;
  double peak_bytes_per_s = 0.0;  ///< theoretical, 0 when unknown
  double cache_bytes = 0.0;       ///< the last-level cache (GPU: L2), 0 when unknown
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
  // cudaDeviceProp's memoryClockRate is gone in CUDA 13; the attributes remain. DDR: two transfers a clock.
  int clock_khz = 0, bus_bits = 0, l2 = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev) == cudaSuccess && clock_khz > 0 &&
      bus_bits > 0)
    info.peak_bytes_per_s = 2.0 * clock_khz * 1e3 * bus_bits / 8.0;
  if (cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) == cudaSuccess) info.cache_bytes = l2;
  (void)cudaGetLastError();  // an unsupported attribute must not poison later calls
#else
  info.name = "host (OpenMP system)";
  info.build = "OpenMP";
  long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (llc <= 0) llc = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (llc > 0) info.cache_bytes = static_cast<double>(llc);
#endif
  return info;
}

/// The best time of one call of f: two warm-up calls (the second estimates the cost), then `reps` repetitions of
/// as many calls as fill `rep_seconds`. The fastest repetition is the estimate: the limit is what the device can do.
template <class F>
double best_seconds_per_call(Timer& timer, const Config& cfg, F&& f) {
  f();
  timer.start();
  f();
  const double estimate = std::max(timer.stop(), 1e-7);
  const Index calls = std::clamp<Index>(static_cast<Index>(std::ceil(cfg.rep_seconds / estimate)), 1, 100'000);
  double best = estimate;
  for (int r = 0; r < cfg.reps; ++r) {
    timer.start();
    for (Index k = 0; k < calls; ++k) f();
    best = std::min(best, timer.stop() / static_cast<double>(calls));
  }
  return best;
}

/// The same with the host's clock: for calls that synchronize by themselves and whose host work (sampling, index
/// uploads) is part of the cost.
template <class F>
double best_wall_seconds_per_call(const Config& cfg, F&& f) {
  f();
  auto t0 = Clock::now();
  f();
  const double estimate = std::max(seconds_since(t0), 1e-7);
  const Index calls = std::clamp<Index>(static_cast<Index>(std::ceil(cfg.rep_seconds / estimate)), 1, 100'000);
  double best = estimate;
  for (int r = 0; r < std::max(3, cfg.reps / 2); ++r) {
    t0 = Clock::now();
    for (Index k = 0; k < calls; ++k) f();
    best = std::min(best, seconds_since(t0) / static_cast<double>(calls));
  }
  return best;
}

// ==================================================================== 1. memory bandwidth

struct TriadFn {
  float s;
  LGM_HD float operator()(float b, float c) const { return b + s * c; }
};

struct Bandwidth {
  Index n = 0;
  double triad_bytes_per_s = 0.0;
  double copy_bytes_per_s = 0.0;
};

Bandwidth measure_bandwidth(const Config& cfg, StreamHandle s, Timer& timer) {
  Bandwidth bw;
  bw.n = cfg.stream_n;
  const Index n = cfg.stream_n;
  lgm::gpu::DeviceBuffer<float> a(n, s), b(n, s), c(n, s);
  // fill in parallel: in the OpenMP build this is also the first touch, so pages land near their threads
  thrust::fill(lgm::gpu::policy(s), a.data(), a.data() + n, 0.0f);
  thrust::fill(lgm::gpu::policy(s), b.data(), b.data() + n, 1.0f);
  thrust::fill(lgm::gpu::policy(s), c.data(), c.data() + n, 0.5f);
  const double bytes = static_cast<double>(n) * sizeof(float);
  for (int r = 0; r < cfg.stream_reps + 1; ++r) {  // repetition 0 is a warm-up
    timer.start();
    thrust::transform(lgm::gpu::policy(s), b.data(), b.data() + n, c.data(), a.data(), TriadFn{3.0f});
    const double t_triad = timer.stop();
    timer.start();
    thrust::copy(lgm::gpu::policy(s), b.data(), b.data() + n, a.data());
    const double t_copy = timer.stop();
    if (r == 0) continue;
    bw.triad_bytes_per_s = std::max(bw.triad_bytes_per_s, 3.0 * bytes / t_triad);
    bw.copy_bytes_per_s = std::max(bw.copy_bytes_per_s, 2.0 * bytes / t_copy);
  }
  return bw;
}

// ==================================================================== 2. fused kernels

struct KernelFigure {
  std::string name;
  Index d = 0;
  Index workers = 0;
  double bytes = 0.0;      ///< compulsory traffic of one call
  double footprint = 0.0;  ///< distinct bytes one call touches (to tell a cache-resident case)
  double seconds = 0.0;    ///< per call
};

std::vector<KernelFigure> measure_kernels(const Config& cfg, const lgm::gpu::DeviceStorage<float>& storage,
                                          Timer& timer) {
  using namespace lgm::gpu;
  const StreamHandle s = storage.stream();
  const Index m_max = *std::max_element(cfg.kernel_workers.begin(), cfg.kernel_workers.end());
  std::vector<KernelFigure> out;
  for (const Index d : cfg.kernel_dims) {
    // one allocation per d at the largest M; smaller M use the leading columns
    const DeviceMatrix<float> X = storage.matrix(d, m_max), G = storage.matrix(d, m_max);
    const DeviceMatrix<float> A = storage.matrix(d, m_max), B = storage.matrix(d, m_max);
    const lgm::gpu::DeviceVector<float> mean = storage.vector(d);
    const Index all = d * m_max;
    // values that stay finite and unremarkable over thousands of repeated steps
    thrust::fill(policy(s), X.data(), X.data() + all, 1.0f);
    thrust::fill(policy(s), G.data(), G.data() + all, 1e-3f);
    thrust::fill(policy(s), A.data(), A.data() + all, 0.0f);
    thrust::fill(policy(s), B.data(), B.data() + all, 0.0f);
    for (const Index M : cfg.kernel_workers) {
      const DeviceMatrixView<float> x = X.view().middle_cols(0, M), g = G.view().middle_cols(0, M);
      const DeviceMatrixView<float> u = A.view().middle_cols(0, M), v = B.view().middle_cols(0, M);
      const double mat = static_cast<double>(d * M) * sizeof(float), vec = static_cast<double>(d) * sizeof(float);
      const AdamWCoefficients coeff = AdamWCoefficients::at(1e-6, 0.9, 0.999, 1e-8, 0.01, 10);
      std::vector<double> norms(static_cast<std::size_t>(M));
      auto add = [&](const char* name, double bytes, double footprint, auto&& call) {
        out.push_back({name, d, M, bytes, footprint, best_seconds_per_call(timer, cfg, call)});
      };
      // SGD: read X, G, write X; momentum: + read and write U; AdamW: + read and write S1, S2
      add("sgd_step", 3 * mat, 2 * mat, [&] { sgd_step<float>(x, g, 1e-6, 0.0, s); });
      add("heavy_ball_step", 5 * mat, 3 * mat, [&] { heavy_ball_step<float>(x, g, u, 1e-6, 0.9, 0.0, s); });
      add("nesterov_step", 5 * mat, 3 * mat, [&] { nesterov_step<float>(x, g, u, 1e-6, 0.9, 0.0, s); });
      add("adamw_step", 7 * mat, 4 * mat, [&] { adamw_step<float>(x, g, u, v, coeff, s); });
      // the replica average of a sync: mean reads X, writes d; broadcast reads d, writes X
      add("average (mean+broadcast)", 2 * mat + 2 * vec, mat + vec, [&] {
        column_mean<float>(x, 0, M, mean.view(), s);
        broadcast<float>(mean.view(), x, s);
      });
      // reads X (the partial sums, d·M/32 doubles, are not counted)
      add("column_squared_norms", mat, mat, [&] { column_squared_norms(x, std::span<double>(norms), s); });
    }
    storage.synchronize();
  }
  return out;
}

// ==================================================================== 3. objectives' batched step

struct ObjectiveFigure {
  std::string name;
  Index d = 0;    ///< features
  Index dim = 0;  ///< parameters per worker (C·d)
  Index outputs = 1;
  Index workers = 0;
  Index b = 0;
  double seconds = 0.0;  ///< per gradients() call (host wall time: sampling upload and result download included)
};

/// M batches of b indices in [0, n), uniform with replacement (as IidSampler draws them).
std::vector<std::vector<Index>> random_batches(Index workers, Index b, Index n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<Index> pick(0, n - 1);
  std::vector<std::vector<Index>> out(static_cast<std::size_t>(workers));
  for (auto& batch : out) {
    batch.resize(static_cast<std::size_t>(b));
    for (auto& i : batch) i = pick(gen);
  }
  return out;
}

template <class DeviceObj>
void measure_objective(const char* name, const DeviceObj& obj, const Config& cfg,
                       const lgm::gpu::DeviceStorage<float>& storage, std::vector<ObjectiveFigure>& out) {
  const Index M = cfg.obj_workers;
  const DeviceMatrix<float> X = storage.matrix(obj.dim(), M), G = storage.matrix(obj.dim(), M);
  // a non-trivial point: every worker at its own small random x
  std::mt19937_64 gen(cfg.seed);
  std::normal_distribution<double> normal(0.0, 0.01);
  lgm::Vector col(obj.dim());
  for (Index m = 0; m < M; ++m) {
    for (Index j = 0; j < obj.dim(); ++j) col[j] = normal(gen);
    storage.upload(col, X.col(m));
  }
  std::vector<double> losses(static_cast<std::size_t>(M));
  auto ws = obj.make_workspace();
  for (const Index b : cfg.obj_batches) {
    const auto batches = random_batches(M, b, obj.num_samples(), cfg.seed + static_cast<std::uint64_t>(b));
    std::vector<lgm::IndexSpan> spans(batches.begin(), batches.end());
    const double t = best_wall_seconds_per_call(
        cfg, [&] { obj.gradients(X.view(), std::span<const lgm::IndexSpan>(spans), G.view(), losses, ws); });
    out.push_back({name, obj.num_features(), obj.dim(), obj.outputs(), M, b, t});
  }
}

// ==================================================================== 4. whole runs, host against device

/// The shared point and the minibatch loss at every sync: the trajectory the parity compares.
struct SyncRecorder {
  std::vector<lgm::Vector> points;
  std::vector<double> losses;
  void on_sync(const lgm::RunState& s) {
    points.emplace_back(s.shared_point);
    losses.push_back(s.batch_loss);
  }
};

struct RunFigures {
  Index d = 0, n = 0, b = 0, workers = 0, h = 0, steps = 0;
  int host_threads = 1;
  double host_seconds = 0.0;          ///< best run, no observer
  double device_seconds = 0.0;        ///< best run, no observer
  double device_setup_seconds = 0.0;  ///< DeviceLogistic construction (data upload), outside the runs
  std::size_t syncs = 0;
  double point_rel_diff = 0.0;                ///< max over syncs of max|x_dev − x_host| / max|x_host|
  double sync_loss_rel_diff = 0.0;            ///< max over syncs of the minibatch losses' relative difference
  double final_loss_rel_diff = 0.0;           ///< of RunResult::last_batch_loss
  double final_x_rel_diff = 0.0;              ///< of RunResult::x
  std::size_t pool_upstream_allocations = 0;  ///< cudaMalloc calls during the timed device runs (steady state: 0)
  bool observed = false;                      ///< the times are of the parity runs (with the observer), as --quick does

  double host_rate() const { return static_cast<double>(steps * workers) / host_seconds; }
  double device_rate() const { return static_cast<double>(steps * workers) / device_seconds; }
};

/// float32 tolerance of a trajectory of thousands of steps (the driver's parity test allows 2e-4 over 60 steps).
constexpr double kParityTolerance = 1e-3;

double rel_diff(const lgm::Vector& a, const lgm::Vector& b) {
  return (a - b).cwiseAbs().maxCoeff() / std::max(1e-300, b.cwiseAbs().maxCoeff());
}
double rel_diff(double a, double b) { return std::abs(a - b) / std::max(1e-300, std::abs(b)); }

RunFigures measure_runs(const Config& cfg, const lgm::Logistic& problem, const lgm::gpu::DeviceLogistic<float>& dobj,
                        double setup_seconds, lgm::gpu::DeviceStorage<float>& storage) {
  RunFigures f;
  f.d = problem.dim();
  f.n = problem.num_samples();
  f.b = cfg.run_b;
  f.workers = cfg.run_workers;
  f.h = cfg.run_h;
  f.host_threads = omp_get_max_threads();
  f.device_setup_seconds = setup_seconds;
  const lgm::Vector x0 = lgm::Vector::Zero(problem.dim());
  lgm::gpu::DeviceCommunicator<float> comm(cfg.run_workers, storage);

  // the same configuration on both sides: same sync rule, batch, schedule and sampler seed
  auto host_run = [&](Index steps, auto&... observers) {
    lgm::LocalMethod<lgm::SGD> method({.workers = cfg.run_workers, .max_steps = steps, .threads = f.host_threads},
                                      lgm::SGD{}, lgm::ConstantSync{cfg.run_h}, lgm::ConstantBatch{.b = cfg.run_b},
                                      lgm::ConstantLr{.lr = cfg.run_lr}, lgm::IidSampler(cfg.seed));
    return method.run(problem, x0, observers...);
  };
  auto device_run = [&](Index steps, auto&... observers) {
    lgm::LocalMethod<lgm::gpu::SGD<float>> method({.workers = cfg.run_workers, .max_steps = steps},
                                                  lgm::gpu::SGD<float>(lgm::SGD{}), lgm::ConstantSync{cfg.run_h},
                                                  lgm::ConstantBatch{.b = cfg.run_b}, lgm::ConstantLr{.lr = cfg.run_lr},
                                                  lgm::IidSampler(cfg.seed));
    return method.run_with(comm, dobj, x0, observers...);
  };
  auto timed = [](auto&& run) {
    const auto t0 = Clock::now();
    const lgm::RunResult r = run();
    const double t = seconds_since(t0);
    if (r.reason == lgm::StopReason::diverged) throw std::runtime_error("a benchmark run diverged: " + r.message);
    return t;
  };

  // calibration: K so that the slower backend's run takes about the target, a multiple of H
  const Index k0 = 4 * cfg.run_h;
  f.steps = k0;
  if (cfg.run_target_seconds > 0.0) {
    const double per_step =
        std::max(timed([&] { return host_run(k0); }), timed([&] { return device_run(k0); })) / static_cast<double>(k0);
    f.steps = std::max<Index>(k0, static_cast<Index>(cfg.run_target_seconds / per_step) / cfg.run_h * cfg.run_h);
  }

  // parity: the trajectories at every sync. The observer downloads X at every sync, so these runs are timed only
  // under --quick (run_reps = 0); otherwise they are the warm-up of the timed runs.
  SyncRecorder host_traj, dev_traj;
  auto t0 = Clock::now();
  const lgm::RunResult hr = host_run(f.steps, host_traj);
  const double host_observed = seconds_since(t0);
  t0 = Clock::now();
  const lgm::RunResult dr = device_run(f.steps, dev_traj);
  const double device_observed = seconds_since(t0);
  if (hr.reason != dr.reason || host_traj.points.size() != dev_traj.points.size())
    throw std::runtime_error("the host and device runs stopped differently: " + hr.message + " / " + dr.message);
  f.syncs = host_traj.points.size();
  for (std::size_t j = 0; j < f.syncs; ++j) {
    f.point_rel_diff = std::max(f.point_rel_diff, rel_diff(dev_traj.points[j], host_traj.points[j]));
    f.sync_loss_rel_diff = std::max(f.sync_loss_rel_diff, rel_diff(dev_traj.losses[j], host_traj.losses[j]));
  }
  f.final_loss_rel_diff = rel_diff(dr.last_batch_loss, hr.last_batch_loss);
  f.final_x_rel_diff = rel_diff(dr.x, hr.x);

  // speed: unobserved runs, best of run_reps each
  f.observed = cfg.run_reps == 0;
  f.host_seconds = f.observed ? host_observed : 1e300;
  f.device_seconds = f.observed ? device_observed : 1e300;
  const std::size_t before = lgm::gpu::default_pool().stats().upstream_allocations;
  for (int r = 0; r < cfg.run_reps; ++r) {
    f.host_seconds = std::min(f.host_seconds, timed([&] { return host_run(f.steps); }));
    f.device_seconds = std::min(f.device_seconds, timed([&] { return device_run(f.steps); }));
  }
  f.pool_upstream_allocations = lgm::gpu::default_pool().stats().upstream_allocations - before;
  return f;
}

// ==================================================================== report

struct Report {
  DeviceInfo device;
  Config cfg;
  Bandwidth bw;
  std::vector<KernelFigure> kernels;
  std::vector<ObjectiveFigure> objectives;
  RunFigures runs;
  double total_seconds = 0.0;

  bool parity_ok() const {
    return runs.point_rel_diff <= kParityTolerance && runs.sync_loss_rel_diff <= kParityTolerance &&
           runs.final_loss_rel_diff <= kParityTolerance;
  }
};

void print_header(const DeviceInfo& dev, const Config& cfg) {
  std::printf("lgm GPU backend benchmark — %s build%s\n", dev.build.c_str(), cfg.quick ? " (--quick sizes)" : "");
  std::printf("device: %s", dev.name.c_str());
  if (dev.peak_bytes_per_s > 0.0) std::printf(", theoretical peak bandwidth %.0f GB/s", dev.peak_bytes_per_s / 1e9);
  if (dev.cache_bytes > 0.0)
    std::printf(", %s %.0f MiB", LGM_GPU_CUDA ? "L2" : "last-level cache", dev.cache_bytes / (1024.0 * 1024.0));
  std::printf("; host threads %d\n\n", dev.host_threads);
  std::fflush(stdout);
}

void print_bandwidth(const Report& r) {
  const double arr_mib = static_cast<double>(r.bw.n) * sizeof(float) / (1024.0 * 1024.0);
  std::printf("1. Memory bandwidth (float arrays of %.0f MiB, best of %d)\n", arr_mib, r.cfg.stream_reps);
  std::printf("   triad a = b + s*c (3 arrays)  %9.1f GB/s", r.bw.triad_bytes_per_s / 1e9);
  if (r.device.peak_bytes_per_s > 0.0)
    std::printf("   %.2f of peak", r.bw.triad_bytes_per_s / r.device.peak_bytes_per_s);
  std::printf("\n   copy  a = b       (2 arrays)  %9.1f GB/s", r.bw.copy_bytes_per_s / 1e9);
  if (r.device.peak_bytes_per_s > 0.0)
    std::printf("   %.2f of peak", r.bw.copy_bytes_per_s / r.device.peak_bytes_per_s);
  std::printf("\n\n");
  std::fflush(stdout);
}

void print_kernels(const Report& r) {
  std::printf("2. Fused kernels, fp32, d x M (fraction = GB/s / triad; 'cache': working set fits the %s)\n",
              LGM_GPU_CUDA ? "L2" : "last-level cache");
  std::printf("   %-26s %10s %4s %10s %12s %9s %8s\n", "kernel", "d", "M", "MB/call", "us/call", "GB/s", "fraction");
  for (const KernelFigure& k : r.kernels) {
    const double rate = k.bytes / k.seconds;
    const bool cached = r.device.cache_bytes > 0.0 && k.footprint <= r.device.cache_bytes;
    std::printf("   %-26s %10lld %4lld %10.1f %12.2f %9.1f %8.2f%s\n", k.name.c_str(), static_cast<long long>(k.d),
                static_cast<long long>(k.workers), k.bytes / 1e6, k.seconds * 1e6, rate / 1e9,
                rate / r.bw.triad_bytes_per_s, cached ? "  cache" : "");
  }
  std::printf("\n");
  std::fflush(stdout);
}

double objective_flops(const ObjectiveFigure& o) {
  // logits Z = W A (2·C·d·b per worker) and the gradient GEMM A Δᵀ (the same again)
  return 4.0 * static_cast<double>(o.outputs * o.d * o.b * o.workers);
}

void print_objectives(const Report& r) {
  std::printf("3. Objectives: gradients() of all M workers in one call (fp32, host wall time per call)\n");
  std::printf("   %-16s %6s %4s %4s %6s %12s %14s %10s\n", "objective", "d", "C", "M", "b", "us/call", "samples/s",
              "GFlop/s");
  for (const ObjectiveFigure& o : r.objectives)
    std::printf("   %-16s %6lld %4lld %4lld %6lld %12.1f %14.3g %10.2f\n", o.name.c_str(), static_cast<long long>(o.d),
                static_cast<long long>(o.outputs), static_cast<long long>(o.workers), static_cast<long long>(o.b),
                o.seconds * 1e6, static_cast<double>(o.workers * o.b) / o.seconds,
                objective_flops(o) / o.seconds / 1e9);
  std::printf("\n");
  std::fflush(stdout);
}

void print_runs(const Report& r) {
  const RunFigures& f = r.runs;
  std::printf(
      "4. Whole runs: Local SGD, logistic regression d = %lld, N = %lld, b = %lld, M = %lld, H = %lld, lr = %g, "
      "K = %lld steps, IidSampler(%llu)\n",
      static_cast<long long>(f.d), static_cast<long long>(f.n), static_cast<long long>(f.b),
      static_cast<long long>(f.workers), static_cast<long long>(f.h), r.cfg.run_lr, static_cast<long long>(f.steps),
      static_cast<unsigned long long>(r.cfg.seed));
  std::printf("   host   (LocalMethod::run, double, %2d threads)  %8.3f s  %12.0f worker-steps/s\n", f.host_threads,
              f.host_seconds, f.host_rate());
  std::printf("   device (run_with on device storage, float)     %8.3f s  %12.0f worker-steps/s\n", f.device_seconds,
              f.device_rate());
  std::printf("   ratio device / host: %.2fx   (device setup, data upload: %.3f s", f.device_rate() / f.host_rate(),
              f.device_setup_seconds);
  if (f.observed)
    std::printf("; times of the observed parity runs)\n");
  else
    std::printf("; pool cudaMalloc calls in the timed runs: %zu)\n", f.pool_upstream_allocations);
  std::printf(
      "   parity over %zu syncs: shared point %.2e, sync losses %.2e, final minibatch loss %.2e, final x %.2e "
      "(max relative difference) -> %s (tolerance %.0e)\n",
      f.syncs, f.point_rel_diff, f.sync_loss_rel_diff, f.final_loss_rel_diff, f.final_x_rel_diff,
      r.parity_ok() ? "OK" : "FAILED", kParityTolerance);
  std::fflush(stdout);
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
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
  std::fprintf(f, "{\n  \"build\": %s,\n  \"device\": %s,\n  \"quick\": %s,\n  \"host_threads\": %d,\n",
               json_string(r.device.build).c_str(), json_string(r.device.name).c_str(), r.cfg.quick ? "true" : "false",
               r.device.host_threads);
  std::fprintf(f, "  \"peak_bandwidth_GBps\": %s,\n  \"cache_bytes\": %s,\n",
               r.device.peak_bytes_per_s > 0.0 ? num(r.device.peak_bytes_per_s / 1e9).c_str() : "null",
               num(r.device.cache_bytes).c_str());
  std::fprintf(f, "  \"bandwidth\": {\"array_floats\": %lld, \"triad_GBps\": %s, \"copy_GBps\": %s},\n",
               static_cast<long long>(r.bw.n), num(r.bw.triad_bytes_per_s / 1e9).c_str(),
               num(r.bw.copy_bytes_per_s / 1e9).c_str());
  std::fprintf(f, "  \"kernels\": [\n");
  for (std::size_t i = 0; i < r.kernels.size(); ++i) {
    const KernelFigure& k = r.kernels[i];
    const double rate = k.bytes / k.seconds;
    std::fprintf(f,
                 "    {\"kernel\": %s, \"d\": %lld, \"M\": %lld, \"bytes_per_call\": %s, \"us_per_call\": %s, "
                 "\"GBps\": %s, \"fraction_of_triad\": %s, \"in_cache\": %s}%s\n",
                 json_string(k.name).c_str(), static_cast<long long>(k.d), static_cast<long long>(k.workers),
                 num(k.bytes).c_str(), num(k.seconds * 1e6).c_str(), num(rate / 1e9).c_str(),
                 num(rate / r.bw.triad_bytes_per_s).c_str(),
                 r.device.cache_bytes > 0.0 && k.footprint <= r.device.cache_bytes ? "true" : "false",
                 i + 1 < r.kernels.size() ? "," : "");
  }
  std::fprintf(f, "  ],\n  \"objectives\": [\n");
  for (std::size_t i = 0; i < r.objectives.size(); ++i) {
    const ObjectiveFigure& o = r.objectives[i];
    std::fprintf(f,
                 "    {\"objective\": %s, \"d\": %lld, \"classes\": %lld, \"M\": %lld, \"b\": %lld, \"us_per_call\": "
                 "%s, \"samples_per_s\": %s, \"GFlops\": %s}%s\n",
                 json_string(o.name).c_str(), static_cast<long long>(o.d), static_cast<long long>(o.outputs),
                 static_cast<long long>(o.workers), static_cast<long long>(o.b), num(o.seconds * 1e6).c_str(),
                 num(static_cast<double>(o.workers * o.b) / o.seconds).c_str(),
                 num(objective_flops(o) / o.seconds / 1e9).c_str(), i + 1 < r.objectives.size() ? "," : "");
  }
  const RunFigures& u = r.runs;
  std::fprintf(f,
               "  ],\n  \"runs\": {\"d\": %lld, \"N\": %lld, \"b\": %lld, \"M\": %lld, \"H\": %lld, \"lr\": %s, "
               "\"K\": %lld, \"seed\": %llu, \"host_threads\": %d,\n",
               static_cast<long long>(u.d), static_cast<long long>(u.n), static_cast<long long>(u.b),
               static_cast<long long>(u.workers), static_cast<long long>(u.h), num(r.cfg.run_lr).c_str(),
               static_cast<long long>(u.steps), static_cast<unsigned long long>(r.cfg.seed), u.host_threads);
  std::fprintf(f,
               "    \"host_seconds\": %s, \"device_seconds\": %s, \"host_worker_steps_per_s\": %s, "
               "\"device_worker_steps_per_s\": %s, \"ratio_device_over_host\": %s, \"device_setup_seconds\": %s, "
               "\"timed_with_observer\": %s, \"pool_upstream_allocations\": %s,\n",
               num(u.host_seconds).c_str(), num(u.device_seconds).c_str(), num(u.host_rate()).c_str(),
               num(u.device_rate()).c_str(), num(u.device_rate() / u.host_rate()).c_str(),
               num(u.device_setup_seconds).c_str(), u.observed ? "true" : "false",
               u.observed ? "null" : std::to_string(u.pool_upstream_allocations).c_str());
  std::fprintf(f,
               "    \"parity\": {\"syncs\": %zu, \"shared_point_rel_diff\": %s, \"sync_loss_rel_diff\": %s, "
               "\"final_loss_rel_diff\": %s, \"final_x_rel_diff\": %s, \"tolerance\": %s, \"ok\": %s}},\n",
               u.syncs, num(u.point_rel_diff).c_str(), num(u.sync_loss_rel_diff).c_str(),
               num(u.final_loss_rel_diff).c_str(), num(u.final_x_rel_diff).c_str(), num(kParityTolerance).c_str(),
               r.parity_ok() ? "true" : "false");
  std::fprintf(f, "  \"total_seconds\": %s\n}\n", num(r.total_seconds).c_str());
  return std::fclose(f) == 0;
}

void print_help(const char* argv0) {
  std::printf(
      "usage: %s [--quick] [--json FILE] [--help]\n"
      "Benchmarks lgm's GPU backend on this build's device (CUDA, or the host through Thrust's OpenMP system):\n"
      "  1. memory bandwidth (STREAM triad and copy), 2. the fused kernels as a fraction of it,\n"
      "  3. the objectives' batched gradient step, 4. whole Local SGD runs on the host and on the device, with\n"
      "     their worker-steps per second and the parity of their trajectories.\n"
      "  --quick      shrink every size (a smoke run of a few seconds)\n"
      "  --json FILE  also write the figures to FILE as JSON\n"
      "Exit status: 0; 1 when the CPU-GPU parity exceeds float32 tolerance or a run fails; 2 for a bad argument;\n"
      "77 when no CUDA device is usable.\n",
      argv0);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      print_help(argv[0]);
      return 0;
    } else if (arg == "--quick") {
      quick = true;
    } else if (arg == "--json" && i + 1 < argc) {
      json_path = argv[++i];
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

  try {
    const auto t_start = Clock::now();
    Report report;
    report.cfg = Config::make(quick);
    const Config& cfg = report.cfg;
    report.device = describe_device();
    print_header(report.device, cfg);

    lgm::gpu::DeviceStorage<float> storage;
    Timer timer(storage.stream());

    report.bw = measure_bandwidth(cfg, storage.stream(), timer);
    print_bandwidth(report);
    lgm::gpu::default_pool().release_cached();  // the big arrays are not needed again

    report.kernels = measure_kernels(cfg, storage, timer);
    print_kernels(report);
    lgm::gpu::default_pool().release_cached();

    // the problems: one logistic regression shared by sections 3 and 4, and a 10-class softmax regression
    const lgm::Logistic logistic = lgm::Logistic::synthetic(
        {.N = cfg.run_n, .d = cfg.obj_d, .lambda = 1e-3, .compute_optimum = false, .seed = cfg.seed});
    const auto t_setup = Clock::now();
    const lgm::gpu::DeviceLogistic<float> dlogistic(logistic, storage);
    const double setup_seconds = seconds_since(t_setup);
    measure_objective("DeviceLogistic", dlogistic, cfg, storage, report.objectives);
    {
      const lgm::Softmax softmax = lgm::Softmax::synthetic(
          {.N = cfg.softmax_n, .d = cfg.obj_d, .classes = cfg.softmax_classes, .lambda = 1e-3, .seed = cfg.seed});
      const lgm::gpu::DeviceSoftmax<float> dsoftmax(softmax, storage);
      measure_objective("DeviceSoftmax", dsoftmax, cfg, storage, report.objectives);
    }
    print_objectives(report);

    report.runs = measure_runs(cfg, logistic, dlogistic, setup_seconds, storage);
    report.total_seconds = seconds_since(t_start);
    print_runs(report);
    std::printf("\ntotal %.1f s\n", report.total_seconds);

    if (!json_path.empty() && !write_json(report, json_path)) {
      std::fprintf(stderr, "could not write %s\n", json_path.c_str());
      return 1;
    }
    return report.parity_ok() ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
