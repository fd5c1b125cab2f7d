// The machine's limits, measured in the benchmark binary itself so that every per-step figure can be given
// as a fraction of them (issue 5): memory bandwidth by a STREAM-style triad on arrays far larger than the
// last-level cache, and the peak of the dense kernels a step is made of (Eigen GEMV in cache: the
// dot/axpy-shaped level-2 kernel of a linear-model gradient; Eigen GEMM in cache: the core's flop peak).
#pragma once

#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "lgm/core/types.hpp"

namespace lgm::bench {

/// Best-of-several rates: the limit is what the machine can do, so the fastest repetition is the estimate.
struct MachineLimits {
  double triad_bytes_per_s_1t = 0.0;  ///< STREAM triad, one thread (3 × 8 bytes per element)
  double triad_bytes_per_s_2t = 0.0;  ///< the same with two OpenMP threads
  double gemv_flops_per_s = 0.0;      ///< y += Aᵀx, A 256 × 256 (in L2), one thread
  double gemm_flops_per_s = 0.0;      ///< C += A B, 256 × 256, one thread
};

namespace detail {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// a = b + s·c over n doubles with `threads` threads, static schedule; returns the best bytes/s of `reps`.
inline double triad_rate(std::vector<double>& a, const std::vector<double>& b, const std::vector<double>& c,
                         int threads, int reps) {
  const auto n = static_cast<lgm::Index>(a.size());
  const double s = 3.0;
  double best = 0.0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (lgm::Index i = 0; i < n; ++i)
      a[static_cast<size_t>(i)] = b[static_cast<size_t>(i)] + s * c[static_cast<size_t>(i)];
    const double t = seconds_since(t0);
    best = std::max(best, 3.0 * 8.0 * static_cast<double>(n) / t);
  }
  return best;
}

inline MachineLimits measure_limits() {
  MachineLimits lim;
  {
    // 3 arrays of 2^24 doubles (128 MiB each): 12× a 32 MiB L3
    const size_t n = size_t{1} << 24;
    std::vector<double> a(n, 1.0), b(n, 2.0), c(n, 0.5);
    triad_rate(a, b, c, 1, 1);  // first touch / page faults outside the timing
    lim.triad_bytes_per_s_1t = triad_rate(a, b, c, 1, 6);
    lim.triad_bytes_per_s_2t = triad_rate(a, b, c, 2, 6);
  }
  {
    const lgm::Index n = 256;
    const lgm::Matrix A = lgm::Matrix::Random(n, n), B = lgm::Matrix::Random(n, n);
    lgm::Matrix C = lgm::Matrix::Zero(n, n);
    lgm::Vector x = lgm::Vector::Random(n), y = lgm::Vector::Zero(n);
    double best_gemv = 0.0, best_gemm = 0.0;
    for (int r = 0; r < 5; ++r) {
      const int reps = 2000;
      auto t0 = Clock::now();
      for (int k = 0; k < reps; ++k) {
        y.noalias() += A.transpose() * x;
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
      }
      best_gemv = std::max(best_gemv, 2.0 * n * n * reps / seconds_since(t0));
      t0 = Clock::now();
      for (int k = 0; k < 20; ++k) {
        C.noalias() += A * B;
        benchmark::DoNotOptimize(C.data());
        benchmark::ClobberMemory();
      }
      best_gemm = std::max(best_gemm, 2.0 * n * n * n * 20 / seconds_since(t0));
    }
    lim.gemv_flops_per_s = best_gemv;
    lim.gemm_flops_per_s = best_gemm;
  }
  return lim;
}

}  // namespace detail

/// Measured once per process (about a second), on first use.
inline const MachineLimits& machine_limits() {
  static const MachineLimits lim = [] {
    const MachineLimits l = detail::measure_limits();
    std::fprintf(stderr,
                 "machine limits: triad %.2f GB/s (1 thread), %.2f GB/s (2 threads); GEMV %.2f GFlop/s, GEMM %.2f "
                 "GFlop/s (1 thread, in cache)\n",
                 l.triad_bytes_per_s_1t / 1e9, l.triad_bytes_per_s_2t / 1e9, l.gemv_flops_per_s / 1e9,
                 l.gemm_flops_per_s / 1e9);
    return l;
  }();
  return lim;
}

}  // namespace lgm::bench
