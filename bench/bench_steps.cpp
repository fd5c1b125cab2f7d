// Per-step costs of lgm (issue 5): the gradient with per-sample statistics, each local optimizer's step, the
// average over M workers, and each batch-size test's overhead over a plain step. Every benchmark reports its
// rate (bytes/s, flop/s) and the fraction of the machine's measured limit (machine.hpp): `bw_frac` against the
// one-thread STREAM triad, `flop_frac` against the one-thread in-cache GEMV peak (the kernel shape of a
// linear-model gradient: a dot product and an axpy per sample).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lgm/lgm.hpp"
#include "machine.hpp"

namespace {

using namespace lgm;
using bench::machine_limits;

constexpr Index kSoftmaxClasses = 10;
constexpr Index kDataDoubles = Index{1} << 24;  // 128 MiB of features: 4× the 32 MiB L3, so batches come from DRAM

/// The problems are built once per (kind, d) and shared by every benchmark of that shape.
template <class P>
const P& problem(Index d) {
  static std::map<Index, std::unique_ptr<P>> cache;
  auto& p = cache[d];
  if (!p) {
    const Index n = kDataDoubles / d;
    if constexpr (std::is_same_v<P, Logistic>)
      p = std::make_unique<P>(Logistic::synthetic({.N = n, .d = d, .lambda = 1e-3, .compute_optimum = false}));
    else
      p = std::make_unique<P>(Softmax::synthetic({.N = n, .d = d, .classes = kSoftmaxClasses, .lambda = 1e-3}));
  }
  return *p;
}

/// Classes per sample: 1 for the binary model, C for softmax (the gradient's work scales with it).
template <class P>
constexpr double classes() {
  return std::is_same_v<P, Logistic> ? 1.0 : static_cast<double>(kSoftmaxClasses);
}

/// Rate counters: bytes and flops per iteration, and their fractions of the measured limits over `seconds`,
/// the wall time of the timing loop.
void set_rates(benchmark::State& state, double bytes, double flops, double seconds) {
  const auto& lim = machine_limits();
  const double it = static_cast<double>(state.iterations());
  using C = benchmark::Counter;
  if (bytes > 0) {
    state.counters["B/s"] = C(bytes * it, C::kIsRate);
    state.counters["bw_frac"] = bytes * it / seconds / lim.triad_bytes_per_s_1t;
  }
  if (flops > 0) {
    state.counters["flop/s"] = C(flops * it, C::kIsRate);
    state.counters["flop_frac"] = flops * it / seconds / lim.gemv_flops_per_s;
  }
}

// ---------------------------------------------------------------- gradients with per-sample statistics
enum class Stats { none, norm, moments };

/// Every iteration draws a new batch (IidSampler) and computes, on it:
/// none: the minibatch gradient (a plain step's main cost); norm: + Σ‖g_i‖² as the local norm test asks for it
/// (lgm::sample_sq_norm_sum, kept from the gradient pass); moments: + Σ‖g_i‖², Σ⟨g_i,g⟩, Σ⟨g_i,g⟩² in closed form
/// (lgm::sample_moments, what the inner-product tests need: a second pass over the batch).
template <class P, Stats S>
void BM_Gradient(benchmark::State& state) {
  const Index d = state.range(0), b = state.range(1);
  const P& p = problem<P>(d);
  machine_limits();
  IidSampler sampler(7);
  sampler.reset(1, p.num_samples());
  std::vector<Index> indices(static_cast<size_t>(b));
  const IndexSpan batch(indices);
  Vector x = Vector::Random(p.dim()) * (0.5 / std::sqrt(static_cast<double>(d)));
  Vector g(p.dim()), scratch(p.dim());
  auto ws = p.make_workspace();
  Index step = 0;
  const auto t0 = bench::detail::Clock::now();
  for (auto _ : state) {
    sampler.draw(0, step++, indices);  // a new batch every step, as in a run: random columns of 128 MiB
    double out = p.gradient(x, batch, g, ws);
    if constexpr (S == Stats::norm) out += sample_sq_norm_sum(p, x, batch, g, ws, scratch);
    if constexpr (S == Stats::moments) out += sample_moments(p, x, batch, g, ws, scratch).sum_sq_norm;
    benchmark::DoNotOptimize(out);
    benchmark::DoNotOptimize(g.data());
  }
  // Compulsory traffic: the batch's feature columns once per pass over them, x read and g written.
  // Flops: per sample and class a dot product and an axpy (4d); the moments pass adds ⟨a_i,x⟩, ⟨a_i,v⟩ (4d).
  const double C = classes<P>();
  const double passes = S == Stats::moments ? 2.0 : 1.0;
  const double bytes = 8.0 * (passes * static_cast<double>(b * d) + 2.0 * static_cast<double>(p.dim()));
  const double flops = passes * 4.0 * C * static_cast<double>(b * d);
  set_rates(state, bytes, flops, bench::detail::seconds_since(t0));
}

void gradient_args(benchmark::internal::Benchmark* bm) {
  for (Index d : {100, 1000, 10000})
    for (Index b : {16, 128, 1024}) bm->Args({d, b});
  bm->ArgNames({"d", "b"});
}

BENCHMARK_TEMPLATE(BM_Gradient, Logistic, Stats::none)->Apply(gradient_args);
BENCHMARK_TEMPLATE(BM_Gradient, Logistic, Stats::norm)->Apply(gradient_args);
BENCHMARK_TEMPLATE(BM_Gradient, Logistic, Stats::moments)->Apply(gradient_args);
BENCHMARK_TEMPLATE(BM_Gradient, Softmax, Stats::none)->Apply(gradient_args);
BENCHMARK_TEMPLATE(BM_Gradient, Softmax, Stats::norm)->Apply(gradient_args);
BENCHMARK_TEMPLATE(BM_Gradient, Softmax, Stats::moments)->Apply(gradient_args);

// ---------------------------------------------------------------- local optimizers
/// Bytes per coordinate of one step: SGD reads x, g and writes x (3); heavy ball and Nesterov also read and write
/// u (5); AdamW reads and writes s1, s2, x and reads g (7).
template <class Opt>
constexpr double doubles_moved() {
  if constexpr (std::is_same_v<Opt, SGD>) return 3.0;
  if constexpr (std::is_same_v<Opt, AdamW>) return 7.0;
  return 5.0;
}
template <class Opt>
constexpr double flops_per_coordinate() {
  if constexpr (std::is_same_v<Opt, SGD>) return 2.0;        // x − lr·g
  if constexpr (std::is_same_v<Opt, HeavyBall>) return 4.0;  // βu + g, x − lr·u
  if constexpr (std::is_same_v<Opt, Nesterov>) return 6.0;   // βu + g, x − lr·(g + βu)
  return 12.0;  // AdamW: two moment updates, decay, sqrt, division, scaled update (counting sqrt and ÷ as 1)
}

/// One step of every worker (M = 16 columns of d), as the driver's optimizer loop does.
template <class Opt>
void BM_OptimizerStep(benchmark::State& state) {
  const Index d = state.range(0), M = 16;
  machine_limits();
  Opt opt{};
  auto s = opt.init(d, M);
  Matrix X = Matrix::Random(d, M), G = Matrix::Random(d, M) * 1e-3;
  const auto t0 = bench::detail::Clock::now();
  for (auto _ : state) {
    for (Index m = 0; m < M; ++m) opt.step(s, m, X.col(m), G.col(m), 1e-3);
    benchmark::DoNotOptimize(X.data());
    benchmark::ClobberMemory();
  }
  const double coords = static_cast<double>(d * M);
  set_rates(state, 8.0 * doubles_moved<Opt>() * coords, flops_per_coordinate<Opt>() * coords,
            bench::detail::seconds_since(t0));
  state.counters["coord/s"] =
      benchmark::Counter(coords * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void optimizer_args(benchmark::internal::Benchmark* bm) {
  for (Index d : {1000, 10000, 1000000}) bm->Arg(d);  // 16 columns of 10^6: 128 MiB a matrix, from DRAM
  bm->ArgNames({"d"});
}
BENCHMARK_TEMPLATE(BM_OptimizerStep, SGD)->Apply(optimizer_args);
BENCHMARK_TEMPLATE(BM_OptimizerStep, HeavyBall)->Apply(optimizer_args);
BENCHMARK_TEMPLATE(BM_OptimizerStep, Nesterov)->Apply(optimizer_args);
BENCHMARK_TEMPLATE(BM_OptimizerStep, AdamW)->Apply(optimizer_args);

// ---------------------------------------------------------------- averaging M workers
/// InProcessCommunicator::mean of a d × M matrix (one thread): reads d·M, writes d.
void BM_Average(benchmark::State& state) {
  const Index d = state.range(0), M = state.range(1);
  machine_limits();
  const InProcessCommunicator comm(M, 1);
  const Matrix X = Matrix::Random(d, M);
  Vector mean(d);
  const auto t0 = bench::detail::Clock::now();
  for (auto _ : state) {
    comm.mean(X, mean);
    benchmark::DoNotOptimize(mean.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, 8.0 * static_cast<double>(d * (M + 1)), static_cast<double>(d * M),
            bench::detail::seconds_since(t0));
}
BENCHMARK(BM_Average)->ArgsProduct({{10000}, {8, 64, 256}})->ArgNames({"d", "M"});

// ---------------------------------------------------------------- batch-size tests over a plain step
/// The steps of a round as the driver runs them (draw, gradient, rule.after_gradients, SGD step; every H steps
/// the average, the broadcast and rule.at_sync), on M workers with one thread. The rule's η, θ, ν are so large
/// that the batch never grows: every step runs the test at the same b as the plain run.
template <class Rule>
class StepLoop {
 public:
  StepLoop(const Logistic& p, Index M, Index b, Rule rule, std::uint64_t seed)
      : m_p(p),
        m_M(M),
        m_comm(M, 1),
        m_rule(std::move(rule)),
        m_X(Matrix::Zero(p.dim(), M)),
        m_G(p.dim(), M),
        m_scratch(p.dim(), 2 * M + 2),
        m_mean(p.dim()),
        m_all(static_cast<size_t>(p.num_samples())),
        m_buffers(static_cast<size_t>(M), std::vector<Index>(static_cast<size_t>(b))),
        m_batches(static_cast<size_t>(M)),
        m_sampler(seed) {
    for (Index m = 0; m < M; ++m) m_ws.push_back(p.make_workspace());
    for (size_t i = 0; i < m_all.size(); ++i) m_all[i] = static_cast<Index>(i);
    m_rule.reset(M, M);
    m_sampler.reset(M, p.num_samples());
  }

  /// `steps` steps, a global sync after every `H`-th.
  void run(Index steps, Index H) {
    using Ctx = StepContext<Logistic, InProcessCommunicator>;
    for (Index s = 0; s < steps; ++s, ++m_step) {
      const bool sync = (m_step + 1) % H == 0;
      for (Index m = 0; m < m_M; ++m) {
        auto& buf = m_buffers[static_cast<size_t>(m)];
        m_sampler.draw(m, m_step, buf);
        m_batches[static_cast<size_t>(m)] = IndexSpan(buf);
        m_p.gradient(m_X.col(m), m_batches[static_cast<size_t>(m)], m_G.col(m), m_ws[static_cast<size_t>(m)]);
      }
      m_rule.after_gradients(
          Ctx{m_p, m_comm, m_X, m_G, m_batches, m_ws, m_scratch, m_all, m_step, sync, SyncScope::global, 1});
      for (Index m = 0; m < m_M; ++m) m_opt.step(m_state, m, m_X.col(m), m_G.col(m), 0.1);
      if (sync) {
        m_comm.mean(m_X, m_mean);
        m_comm.broadcast(m_mean, m_X);
        m_rule.at_sync(
            Ctx{m_p, m_comm, m_X, m_G, m_batches, m_ws, m_scratch, m_all, m_step, true, SyncScope::global, 1});
      }
    }
  }
  const Rule& rule() const { return m_rule; }

 private:
  const Logistic& m_p;
  Index m_M;
  InProcessCommunicator m_comm;
  Rule m_rule;
  SGD m_opt{};
  SGD::State m_state{};
  Matrix m_X, m_G, m_scratch;
  Vector m_mean;
  std::vector<Index> m_all;
  std::vector<std::vector<Index>> m_buffers;
  std::vector<IndexSpan> m_batches;
  IidSampler m_sampler;
  std::vector<Logistic::Workspace> m_ws;
  Index m_step = 0;
};

template <class Test>
AdaptiveBatch<Test> never_growing(Index b, TestScope scope, Estimator estimator) {
  AdaptiveBatchOptions o;
  o.b0 = o.b_min = b;
  o.scope = scope;
  o.estimator = estimator;
  if constexpr (std::is_same_v<Test, NormTest>)
    return AdaptiveBatch<Test>(o, NormTest{.eta = 1e6});
  else if constexpr (std::is_same_v<Test, InnerProductTest>)
    return AdaptiveBatch<Test>(o, InnerProductTest{.theta = 1e6});
  else
    return AdaptiveBatch<Test>(o, AugmentedInnerProductTest{.theta = 1e6, .nu = 1e6});
}

/// Plain rounds and rounds with the test, timed alternately in the same loop (the machine is shared, so the
/// ratio of neighbours is steadier than that of two benchmarks). Reports the test's time and `overhead` =
/// t_test / t_plain − 1.
template <class Test, TestScope Scope, Estimator E>
void BM_TestOverhead(benchmark::State& state) {
  const Index d = state.range(0), b = state.range(1), M = 4, H = 8;
  const Logistic& p = problem<Logistic>(d);
  machine_limits();
  // different seeds: the second loop must not find the first one's batches in the cache
  StepLoop<ConstantBatch> plain(p, M, b, ConstantBatch{.b = b}, 3);
  StepLoop<AdaptiveBatch<Test>> tested(p, M, b, never_growing<Test>(b, Scope, E), 5);
  plain.run(H, H);  // warm-up: first touch of every buffer
  tested.run(H, H);
  double t_plain = 0.0, t_test = 0.0;
  for (auto _ : state) {
    auto t0 = bench::detail::Clock::now();
    plain.run(H, H);
    t_plain += bench::detail::seconds_since(t0);
    t0 = bench::detail::Clock::now();
    tested.run(H, H);
    const double t = bench::detail::seconds_since(t0);
    t_test += t;
    state.SetIterationTime(t);
  }
  if (tested.rule().tests_run() == 0) state.SkipWithError("the rule ran no test");
  const double worker_steps = static_cast<double>(M * H) * static_cast<double>(state.iterations());
  state.counters["overhead"] = t_test / t_plain - 1.0;
  state.counters["plain_us/step"] = 1e6 * t_plain / worker_steps;
  state.counters["test_us/step"] = 1e6 * t_test / worker_steps;
}

void overhead_args(benchmark::internal::Benchmark* bm) {
  for (Index d : {100, 1000, 10000})
    for (Index b : {16, 128}) bm->Args({d, b});
  bm->ArgNames({"d", "b"})->UseManualTime();
}
using enum TestScope;
using enum Estimator;
BENCHMARK_TEMPLATE(BM_TestOverhead, NormTest, local, per_sample)->Apply(overhead_args);
BENCHMARK_TEMPLATE(BM_TestOverhead, InnerProductTest, local, per_sample)->Apply(overhead_args);
BENCHMARK_TEMPLATE(BM_TestOverhead, AugmentedInnerProductTest, local, per_sample)->Apply(overhead_args);
BENCHMARK_TEMPLATE(BM_TestOverhead, NormTest, local, micro_batch_means)->Apply(overhead_args);
BENCHMARK_TEMPLATE(BM_TestOverhead, NormTest, global, per_sample)->Apply(overhead_args);
BENCHMARK_TEMPLATE(BM_TestOverhead, InnerProductTest, global, per_sample)->Apply(overhead_args);
BENCHMARK_TEMPLATE(BM_TestOverhead, NormTest, local, cross_worker)->Apply(overhead_args);

// ---------------------------------------------------------------- the machine's limits (for the record)
void BM_StreamTriad(benchmark::State& state) {
  const auto threads = static_cast<int>(state.range(0));
  const size_t n = size_t{1} << 24;
  std::vector<double> a(n, 1.0), b(n, 2.0), c(n, 0.5);
  for (auto _ : state) {
    const double t = 1.0 / bench::detail::triad_rate(a, b, c, threads, 1);  // seconds per byte
    state.SetIterationTime(t * 24.0 * static_cast<double>(n));
  }
  state.counters["B/s"] = benchmark::Counter(24.0 * static_cast<double>(n) * static_cast<double>(state.iterations()),
                                             benchmark::Counter::kIsRate);
}
BENCHMARK(BM_StreamTriad)->Arg(1)->Arg(2)->ArgNames({"threads"})->UseManualTime();

void BM_Limits(benchmark::State& state) {
  const auto& lim = machine_limits();
  for (auto _ : state) benchmark::DoNotOptimize(lim.gemv_flops_per_s);
  state.counters["triad_GB/s_1t"] = lim.triad_bytes_per_s_1t / 1e9;
  state.counters["triad_GB/s_2t"] = lim.triad_bytes_per_s_2t / 1e9;
  state.counters["gemv_GFlop/s"] = lim.gemv_flops_per_s / 1e9;
  state.counters["gemm_GFlop/s"] = lim.gemm_flops_per_s / 1e9;
}
BENCHMARK(BM_Limits)->Iterations(1);

}  // namespace
