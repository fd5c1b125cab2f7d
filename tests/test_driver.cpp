// The driver's equivalences, determinism, metrics and input checks (issue 2, "What must hold").
#include <doctest/doctest.h>

#include <cmath>
#include <lgm/lgm.hpp>
#include <limits>
#include <vector>

namespace {

using namespace lgm;

// A noisy least-squares problem: d = 6, N = 300, with λ > 0 so x* is unique.
LeastSquares make_problem(std::uint64_t seed = 7) {
  return LeastSquares::synthetic({.N = 300, .d = 6, .condition = 10.0, .noise = 0.5, .lambda = 0.01, .seed = seed});
}

double max_rel_diff(const Vector& a, const Vector& b) {
  return (a - b).cwiseAbs().maxCoeff() / std::max(1e-300, b.cwiseAbs().maxCoeff());
}

// Plain SGD, written without the driver: x ← x − lr·g on worker 0's batches.
Vector plain_sgd(const LeastSquares& obj, Vector x, Index steps, Index b, double lr, std::uint64_t seed) {
  IidSampler sampler(seed);
  sampler.reset(1, obj.num_samples());
  auto ws = obj.make_workspace();
  std::vector<Index> idx(static_cast<size_t>(b));
  Vector g(obj.dim());
  for (Index k = 0; k < steps; ++k) {
    sampler.draw(0, k, idx);
    obj.gradient(x, idx, g, ws);
    x -= lr * g;
  }
  return x;
}

// Minibatch SGD with the union of all M workers' batches as one batch of M·b samples.
Vector minibatch_sgd(const LeastSquares& obj, Vector x, Index M, Index steps, Index b, double lr, std::uint64_t seed) {
  IidSampler sampler(seed);
  sampler.reset(M, obj.num_samples());
  auto ws = obj.make_workspace();
  std::vector<Index> all(static_cast<size_t>(M * b));
  Vector g(obj.dim());
  for (Index k = 0; k < steps; ++k) {
    for (Index m = 0; m < M; ++m) sampler.draw(m, k, std::span<Index>(all.data() + m * b, static_cast<size_t>(b)));
    obj.gradient(x, all, g, ws);
    x -= lr * g;
  }
  return x;
}

}  // namespace

TEST_CASE("driver: M = 1 Local SGD is plain SGD, bitwise") {
  const auto obj = make_problem();
  const Vector x0 = Vector::Ones(obj.dim());
  for (Index H : {1, 3, 8}) {
    LocalSGD method({.workers = 1, .max_steps = 40}, SGD{}, ConstantSync{H}, ConstantBatch{5}, ConstantLr{.lr = 0.05},
                    IidSampler(11));
    const RunResult r = method.run(obj, x0);
    const Vector ref = plain_sgd(obj, x0, 40, 5, 0.05, 11);
    CHECK(r.x == ref);  // bitwise
    CHECK(r.metrics.steps == 40);
    CHECK(r.metrics.samples == 200);
    CHECK(r.metrics.comm_rounds == (40 + H - 1) / H);
    CHECK(r.metrics.bytes == 0.0);  // one worker sends nothing
  }
}

TEST_CASE("driver: H = 1 Local SGD is minibatch SGD with batch M*b") {
  const auto obj = make_problem();
  const Vector x0 = Vector::Ones(obj.dim());
  const Vector ref = minibatch_sgd(obj, x0, 4, 25, 3, 0.05, 5);
  // parameter averaging after every step, and gradient all-reduce (docs/decisions.md §A9): equal up to rounding,
  // since (1/M)Σ_m (x − lr·g_m) and x − lr·(1/(Mb))Σ_i g_i round differently.
  LocalSGD by_params({.workers = 4, .max_steps = 25}, SGD{}, ConstantSync{1}, ConstantBatch{3}, ConstantLr{.lr = 0.05},
                     IidSampler(5));
  LocalMethod<SGD, EveryStepSync> by_grads({.workers = 4, .max_steps = 25}, SGD{}, EveryStepSync{}, ConstantBatch{3},
                                           ConstantLr{.lr = 0.05}, IidSampler(5));
  CHECK(max_rel_diff(by_params.run(obj, x0).x, ref) < 1e-13);
  CHECK(max_rel_diff(by_grads.run(obj, x0).x, ref) < 1e-13);
}

TEST_CASE("driver: outer SGD with lr 1 is plain averaging; DiLoCo with M = 1 is Lookahead") {
  const auto obj = make_problem();
  const Vector x0 = Vector::Zero(obj.dim());
  RunOptions opts{.workers = 4, .max_steps = 30};
  LocalSGD plain(opts, SGD{}, ConstantSync{5}, ConstantBatch{4}, ConstantLr{.lr = 0.05}, IidSampler(3));
  LocalMethod<SGD, ConstantSync, ConstantBatch, ConstantLr, IidSampler, OuterSGD> outer1(
      opts, SGD{}, ConstantSync{5}, ConstantBatch{4}, ConstantLr{.lr = 0.05}, IidSampler(3),
      OuterSGD(OuterSGDOptions{.lr = 1.0, .momentum = 0.0}));
  CHECK(max_rel_diff(outer1.run(obj, x0).x, plain.run(obj, x0).x) < 1e-15);

  // Lookahead (Zhang et al. 2019): fast weights take k SGD steps, then φ ← φ + α(θ − φ), θ ← φ.
  const double alpha = 0.5;
  const Index k = 5, rounds = 6, b = 4;
  const double lr = 0.05;
  IidSampler sampler(9);
  sampler.reset(1, obj.num_samples());
  auto ws = obj.make_workspace();
  std::vector<Index> idx(b);
  Vector g(obj.dim()), phi = x0, theta = x0;
  for (Index r = 0, step = 0; r < rounds; ++r) {
    for (Index j = 0; j < k; ++j, ++step) {
      sampler.draw(0, step, idx);
      obj.gradient(theta, idx, g, ws);
      theta -= lr * g;
    }
    phi += alpha * (theta - phi);
    theta = phi;
  }
  LocalMethod<SGD, ConstantSync, ConstantBatch, ConstantLr, IidSampler, OuterSGD> lookahead(
      {.workers = 1, .max_steps = k * rounds}, SGD{}, ConstantSync{k}, ConstantBatch{b}, ConstantLr{.lr = lr},
      IidSampler(9), OuterSGD(OuterSGDOptions{.lr = alpha, .momentum = 0.0}));
  CHECK(max_rel_diff(lookahead.run(obj, x0).x, phi) < 1e-14);
}

TEST_CASE("driver: the same seed gives bitwise the same run with 1, 2 and 4 threads") {
  const auto obj = make_problem();
  const Vector x0 = Vector::Constant(obj.dim(), 0.5);
  auto run_with_threads = [&](int threads) {
    AdaptiveBatchOptions bo{.b_min = 4, .b_max = 256};
    LocalMethod<HeavyBall, QuadraticSyncRule, NormTestRule, WarmupCosineLr> method(
        {.workers = 8, .max_steps = 120, .threads = threads}, HeavyBall{.momentum = 0.9},
        QuadraticSyncRule{.alpha = 0.02, .H_base = 2}, NormTestRule(bo, NormTest{.eta = 0.5}),
        WarmupCosineLr{.peak = 0.02, .warmup = 10, .total = 120}, IidSampler(42));
    SyncHistory history;
    RunResult r = method.run(obj, x0, history);
    return std::pair{r, history.records()};
  };
  const auto [r1, h1] = run_with_threads(1);
  for (int t : {2, 4}) {
    const auto [rt, ht] = run_with_threads(t);
    CHECK(rt.x == r1.x);
    CHECK(rt.metrics.samples == r1.metrics.samples);
    CHECK(rt.metrics.comm_rounds == r1.metrics.comm_rounds);
    REQUIRE(ht.size() == h1.size());
    for (size_t i = 0; i < ht.size(); ++i) {
      CHECK(ht[i].batch_loss == h1[i].batch_loss);
      CHECK(ht[i].batch_max == h1[i].batch_max);
    }
  }
  CHECK(h1.back().batch_max > 4);  // the norm test did grow the batches
}

TEST_CASE("driver: metrics follow their single definitions") {
  const auto obj = make_problem();
  const Vector x0 = Vector::Zero(obj.dim());
  AlphaBetaCostOptions co{.network = {1e-3, 1e6},
                          .element_bytes = 4.0,
                          .seconds_per_sample = 1e-4,
                          .seconds_per_step = 1e-3,
                          .worker_slowdown = {1.0, 1.0, 3.0, 1.0}};
  LocalSGD method({.workers = 4, .max_steps = 20}, SGD{}, ConstantSync{8}, ConstantBatch{10}, ConstantLr{.lr = 0.01},
                  IidSampler(1), Averaging{}, AlphaBetaCost(co));
  HookCounter hooks;
  const RunResult r = method.run(obj, x0, hooks);
  // rounds of 8, 8, 4 steps (the last one shortened to the budget)
  CHECK(r.metrics.comm_rounds == 3);
  CHECK(r.metrics.global_rounds == 3);
  CHECK(hooks.steps == 20);
  CHECK(hooks.syncs == 3);
  CHECK(hooks.ends == 1);
  CHECK(r.metrics.samples == 20 * 4 * 10);
  const double payload = 4.0 * static_cast<double>(obj.dim());
  CHECK(r.metrics.bytes == doctest::Approx(3 * 2.0 * 3.0 / 4.0 * payload));
  const double ring = 2 * 3 * 1e-3 + 2.0 * 3.0 / 4.0 * payload / 1e6;
  CHECK(r.metrics.comm_time_s == doctest::Approx(3 * ring));
  // the straggler (3× slower) sets every round's compute time
  CHECK(r.metrics.compute_time_s == doctest::Approx(3.0 * 20 * (1e-3 + 10 * 1e-4)));
  CHECK(r.metrics.sim_time_s == doctest::Approx(r.metrics.compute_time_s + r.metrics.comm_time_s));
}

TEST_CASE("driver: a budget in samples ends with a sync; an observer can stop the run") {
  const auto obj = make_problem();
  const Vector x0 = Vector::Zero(obj.dim());
  LocalSGD by_samples({.workers = 2, .max_samples = 1000}, SGD{}, ConstantSync{7}, ConstantBatch{8},
                      ConstantLr{.lr = 0.01}, IidSampler(2));
  const RunResult r = by_samples.run(obj, x0);
  CHECK(r.metrics.samples >= 1000);
  CHECK(r.metrics.samples < 1000 + 16);
  CHECK(r.metrics.comm_rounds == (r.metrics.steps + 6) / 7);

  LocalSGD method({.workers = 2, .max_steps = 100}, SGD{}, ConstantSync{4}, ConstantBatch{8}, ConstantLr{.lr = 0.01},
                  IidSampler(2));
  StopWhen stop([](const RunState& s) { return s.metrics.comm_rounds >= 3; });
  const RunResult rs = method.run(obj, x0, stop);
  CHECK(rs.reason == StopReason::observer);
  CHECK(rs.metrics.comm_rounds == 3);
  CHECK(rs.metrics.steps == 12);
}

TEST_CASE("driver: Local SGD and the norm test converge to the known optimum") {
  const auto obj = make_problem();
  const Vector x0 = Vector::Zero(obj.dim());
  // with replacement, batches may exceed N; the cap must not bind before the target accuracy (docs/decisions.md §B7)
  AdaptiveBatchOptions bo{
      .b_min = 4, .b_max = 1 << 16, .variance = VarianceMode::exact, .apply_at = ApplyAt::next_step};
  LocalMethod<SGD, ConstantSync, NormTestRule> method({.workers = 4, .max_steps = 300}, SGD{}, ConstantSync{4},
                                                      NormTestRule(bo, NormTest{.eta = 0.5}),
                                                      ConstantLr{.lr = 0.5 / obj.smoothness()}, IidSampler(8));
  const RunResult r = method.run(obj, x0);
  const double start = (x0 - obj.optimum()).squaredNorm();
  CHECK((r.x - obj.optimum()).squaredNorm() < 1e-6 * start);
}

TEST_CASE("driver: hierarchical syncs average groups, and the output is the global average of the last state") {
  const auto obj = make_problem();
  const Vector x0 = Vector::Zero(obj.dim());
  LocalMethod<SGD, HierarchicalSync> method({.workers = 4, .max_steps = 10}, SGD{},
                                            HierarchicalSync{.H = 2, .global_every = 2, .group_size = 2},
                                            ConstantBatch{4}, ConstantLr{.lr = 0.05}, IidSampler(4));
  // records the workers' points after each sync and the scope of that sync
  struct Recorder {
    std::vector<Matrix> X;
    std::vector<SyncScope> scope;
    void on_sync(const RunState& s) {
      X.emplace_back(s.X);
      scope.push_back(s.scope);
    }
  } rec;
  const RunResult r = method.run(obj, x0, rec);
  // rounds end at steps 2 (group), 4 (global), 6 (group), 8 (global), 10 (group) + a forced final global
  CHECK(r.metrics.comm_rounds == 6);
  CHECK(r.metrics.global_rounds == 3);
  REQUIRE(rec.X.size() == 5);
  for (size_t k = 0; k < rec.X.size(); ++k) {
    const Matrix& X = rec.X[k];
    const bool global = k % 2 == 1;
    CHECK((rec.scope[k] == SyncScope::global) == global);
    // a group sync makes the columns of each group equal (and the groups different); a global one all of them
    CHECK((X.col(0) - X.col(1)).cwiseAbs().maxCoeff() == 0.0);
    CHECK((X.col(2) - X.col(3)).cwiseAbs().maxCoeff() == 0.0);
    CHECK(((X.col(0) - X.col(2)).cwiseAbs().maxCoeff() == 0.0) == global);
  }
  // the output: the mean of the four workers after the last (group) sync, computed here independently
  const Vector expected = rec.X.back().rowwise().sum() / 4.0;
  CHECK(max_rel_diff(r.x, expected) < 1e-15);
}

namespace {
// Minibatch SGD with the mean of the M workers' gradients, followed by outer SGD with Nesterov momentum at
// every step, written without the driver.
Vector minibatch_sgd_with_outer(const LeastSquares& obj, Vector x, Index M, Index steps, Index b, double lr,
                                OuterSGDOptions outer, std::uint64_t seed) {
  IidSampler sampler(seed);
  sampler.reset(M, obj.num_samples());
  auto ws = obj.make_workspace();
  std::vector<Index> idx(static_cast<size_t>(b));
  Vector g(obj.dim()), gm(obj.dim()), v = Vector::Zero(obj.dim());
  for (Index k = 0; k < steps; ++k) {
    g.setZero();
    for (Index m = 0; m < M; ++m) {
      sampler.draw(m, k, idx);
      obj.gradient(x, idx, gm, ws);
      g += gm;
    }
    g /= static_cast<double>(M);
    const Vector delta = lr * g;  // x − (x − lr·g)
    v = outer.momentum * v + delta;
    x -= outer.lr * (delta + outer.momentum * v);
  }
  return x;
}
}  // namespace

TEST_CASE("driver: an outer optimizer also acts on rounds that average gradients (every step)") {
  const auto obj = make_problem();
  const Vector x0 = Vector::Ones(obj.dim());
  const OuterSGDOptions nesterov{.lr = 0.7, .momentum = 0.9, .nesterov = true};
  using EveryStepOuter = LocalMethod<SGD, EveryStepSync, ConstantBatch, ConstantLr, IidSampler, OuterSGD>;
  EveryStepOuter with_outer({.workers = 3, .max_steps = 25}, SGD{}, EveryStepSync{}, ConstantBatch{4},
                            ConstantLr{.lr = 0.05}, IidSampler(5), OuterSGD(nesterov));
  const RunResult r = with_outer.run(obj, x0);
  const Vector expected = minibatch_sgd_with_outer(obj, x0, 3, 25, 4, 0.05, nesterov, 5);
  CHECK(max_rel_diff(r.x, expected) < 1e-12);
  // and it is not plain averaging (the defect: the outer step was skipped on these rounds)
  EveryStepOuter plain({.workers = 3, .max_steps = 25}, SGD{}, EveryStepSync{}, ConstantBatch{4},
                       ConstantLr{.lr = 0.05}, IidSampler(5), OuterSGD{});
  CHECK(max_rel_diff(plain.run(obj, x0).x, expected) > 1e-3);
  // parameter averaging after every step is the same method for SGD
  using ParamAvgOuter = LocalMethod<SGD, ConstantSync, ConstantBatch, ConstantLr, IidSampler, OuterSGD>;
  ParamAvgOuter by_params({.workers = 3, .max_steps = 25}, SGD{}, ConstantSync{1}, ConstantBatch{4},
                          ConstantLr{.lr = 0.05}, IidSampler(5), OuterSGD(nesterov));
  CHECK(max_rel_diff(by_params.run(obj, x0).x, expected) < 1e-12);
}

TEST_CASE("driver: on_batch_change returning false stops the run at the first change") {
  const auto obj = make_problem();
  const Vector x0 = Vector::Zero(obj.dim());
  AdaptiveBatchOptions bo{.b_min = 2, .b_max = 256, .variance = VarianceMode::exact, .apply_at = ApplyAt::next_step};
  LocalMethod<SGD, ConstantSync, NormTestRule> method({.workers = 2, .max_steps = 400}, SGD{}, ConstantSync{4},
                                                      NormTestRule(bo, NormTest{.eta = 0.2}), ConstantLr{.lr = 0.05},
                                                      IidSampler(3));
  struct StopAtChange {
    Index calls = 0, round = -1;
    bool on_batch_change(const RunState& s) {
      ++calls;
      round = s.round;
      return false;
    }
  } stop;
  HookCounter count;
  const RunResult r = method.run(obj, x0, stop, count);
  CHECK(stop.calls == 1);
  CHECK(r.reason == StopReason::observer);
  CHECK(r.message.find("batch-size change") != std::string::npos);
  CHECK(r.metrics.comm_rounds == stop.round + 1);
  CHECK(r.metrics.steps < 400);
  CHECK(count.syncs == stop.round + 1);  // the other observers still see the sync where it stopped
}

namespace {
// Least squares whose gradient throws std::bad_alloc on a batch of 7 (only worker 1 gets one).
struct ThrowingObjective : LeastSquares {
  explicit ThrowingObjective(LeastSquares base) : LeastSquares(std::move(base)) {}
  double gradient(ConstVectorRef x, IndexSpan batch, VectorRef g, Workspace& ws) const {
    if (batch.size() == 7) throw std::bad_alloc();
    return LeastSquares::gradient(x, batch, g, ws);
  }
};
// Gives worker 1 a batch of 7 from step 5 on, so that its gradient throws inside the parallel region.
struct GrowingBatch {
  Index step = 0;
  void reset(Index, Index) { step = 0; }
  Index batch_size(Index m) const { return m == 1 && step >= 5 ? 7 : 4; }
  Index max_batch_size() const { return 7; }
  void validate() const {}
  template <class Ctx>
  void after_gradients(const Ctx&) {
    ++step;
  }
  template <class Ctx>
  void at_sync(const Ctx&) {}
};
}  // namespace

TEST_CASE("driver: an exception in a worker's gradient leaves the parallel region and reaches the caller") {
  const ThrowingObjective obj(make_problem());
  const Vector x0 = Vector::Zero(obj.dim());
  for (int threads : {1, 2}) {
    LocalMethod<SGD, ConstantSync, GrowingBatch> method({.workers = 4, .max_steps = 20, .threads = threads}, SGD{},
                                                        ConstantSync{2});
    CHECK_THROWS_AS(method.run(obj, x0), std::bad_alloc);
  }
}

TEST_CASE("driver: divergence stops the run and names the step and round") {
  const auto obj = make_problem();
  const Vector x0 = Vector::Ones(obj.dim());
  LocalSGD method({.workers = 2, .max_steps = 5000}, SGD{}, ConstantSync{4}, ConstantBatch{4}, ConstantLr{.lr = 100.0},
                  IidSampler(1));
  const RunResult r = method.run(obj, x0);
  CHECK(r.reason == StopReason::diverged);
  CHECK(r.message.find("step") != std::string::npos);
  CHECK(r.message.find("round") != std::string::npos);
  CHECK(r.metrics.steps < 5000);
}

TEST_CASE("driver: bad input is rejected before the run, naming the parameter, value and range") {
  const auto obj = make_problem();
  const Vector x0 = Vector::Zero(obj.dim());
  auto message = [&](auto&& method, const Vector& x) -> std::string {
    try {
      method.run(obj, x);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "no error";
  };
  CHECK(message(
            LocalSGD({.workers = 2, .max_steps = 10}, SGD{}, ConstantSync{4}, ConstantBatch{4}, ConstantLr{.lr = -0.1}),
            x0)
            .find("lr = -0.1") != std::string::npos);
  CHECK(message(LocalSGD({.workers = 2, .max_steps = 10}, SGD{}, ConstantSync{0}), x0) ==
        "invalid H = 0 (accepted: an integer >= 1)");
  CHECK(message(LocalSGD({.workers = 0, .max_steps = 10}), x0) == "invalid M = 0 (accepted: an integer >= 1)");
  CHECK(message(LocalSGD({.workers = 2}), x0).find("max_steps/max_samples") != std::string::npos);
  CHECK(message(LocalSGD({.workers = 2, .max_steps = 10}), Vector::Zero(obj.dim() + 1)) ==
        "invalid x0 (size) = 7 (accepted: the objective's dimension d = 6)");
  Vector bad = x0;
  bad[0] = std::numeric_limits<double>::quiet_NaN();
  CHECK(message(LocalSGD({.workers = 2, .max_steps = 10}), bad).find("x0") != std::string::npos);

  using Norm = LocalMethod<SGD, ConstantSync, NormTestRule>;
  auto norm = [&](AdaptiveBatchOptions bo, double eta) {
    return Norm({.workers = 2, .max_steps = 10}, SGD{}, ConstantSync{4}, NormTestRule(bo, NormTest{.eta = eta}));
  };
  CHECK(message(norm({.b_min = 1}, 0.1), x0).find("b_min = 1") != std::string::npos);
  CHECK(message(norm({.b_min = 8, .b_max = 4}, 0.1), x0).find("b_max = 4") != std::string::npos);
  CHECK(message(norm({}, 0.0), x0).find("eta = 0") != std::string::npos);
  CHECK(message(norm({}, -1.0), x0).find("eta = -1") != std::string::npos);
}
