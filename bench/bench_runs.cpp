// Whole runs (issue 5): Local SGD through lgm's driver, in worker-steps per second, for M ∈ {16, 256} workers
// with 1 and 2 threads, and the speed-up of 2 threads over 1 timed alternately in one benchmark.
// The configuration is the peer comparison's (bench/peers/): logistic regression, d = 1000, b = 32, H = 16.
#include <benchmark/benchmark.h>

#include <memory>

#include "lgm/lgm.hpp"
#include "machine.hpp"

namespace {

using namespace lgm;

constexpr Index kD = 1000, kN = 8192, kB = 32, kH = 16;

const Logistic& run_problem() {
  static const Logistic p = Logistic::synthetic({.N = kN, .d = kD, .lambda = 1e-3, .compute_optimum = false});
  return p;
}

/// Steps per run: enough worker-steps (≥ 4096) that the run's setup is amortized.
Index steps_for(Index M) { return std::max<Index>(4 * kH, 4096 / M / kH * kH); }

double timed_run(Index M, int threads, Index steps) {
  const Logistic& p = run_problem();
  LocalSGD method({.workers = M, .max_steps = steps, .threads = threads}, SGD{}, ConstantSync{kH},
                  ConstantBatch{.b = kB}, ConstantLr{.lr = 0.5}, IidSampler(42));
  const auto t0 = bench::detail::Clock::now();
  const RunResult r = method.run(p, Vector::Zero(kD));
  const double t = bench::detail::seconds_since(t0);
  benchmark::DoNotOptimize(r.last_batch_loss);
  return t;
}

/// Worker-steps per second of whole runs (setup included, as a user sees it).
void BM_Run(benchmark::State& state) {
  const Index M = state.range(0);
  const auto threads = static_cast<int>(state.range(1));
  const Index steps = steps_for(M);
  run_problem();
  double total = 0.0;
  for (auto _ : state) {
    const double t = timed_run(M, threads, steps);
    total += t;
    state.SetIterationTime(t);
  }
  const double ws = static_cast<double>(M * steps) * static_cast<double>(state.iterations());
  state.counters["worker_steps/s"] = ws / total;
  // features of b samples per worker-step: the run's compulsory traffic, against the triad of as many threads
  const auto& lim = bench::machine_limits();
  const double bw = threads == 1 ? lim.triad_bytes_per_s_1t : lim.triad_bytes_per_s_2t;
  state.counters["bw_frac"] = ws * 8.0 * kB * kD / total / bw;
}
BENCHMARK(BM_Run)->ArgsProduct({{16, 256}, {1, 2}})->ArgNames({"M", "threads"})->UseManualTime()->MinTime(1.0);

/// 1 and 2 threads timed alternately on the same run; `speedup` = t(1 thread) / t(2 threads).
void BM_RunThreadScaling(benchmark::State& state) {
  const Index M = state.range(0);
  const Index steps = steps_for(M);
  run_problem();
  double t1 = 0.0, t2 = 0.0;
  for (auto _ : state) {
    t1 += timed_run(M, 1, steps);
    const double t = timed_run(M, 2, steps);
    t2 += t;
    state.SetIterationTime(t);
  }
  state.counters["speedup"] = t1 / t2;
  const double ws = static_cast<double>(M * steps) * static_cast<double>(state.iterations());
  state.counters["ws/s_1t"] = ws / t1;
  state.counters["ws/s_2t"] = ws / t2;
}
BENCHMARK(BM_RunThreadScaling)->Arg(16)->Arg(256)->ArgNames({"M"})->UseManualTime()->MinTime(2.0);

}  // namespace
