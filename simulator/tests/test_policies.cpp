// The run-time policies (policies.hpp) are the library's policies: a run through the Any* wrappers is
// bitwise the run through the wrapped policy, for every hook the driver calls (the defect this guards:
// AnyBatchRule did not forward before_gradients, so apply_at = "this_step" silently did nothing).
#include <doctest/doctest.h>

#include <lgm/lgm.hpp>

#include "policies.hpp"

namespace {

using namespace lgm;

LeastSquares problem() {
  return LeastSquares::synthetic({.N = 300, .d = 4, .condition = 10.0, .noise = 0.5, .lambda = 0.0, .seed = 3});
}

// The batch-size trajectory and the result of one run.
struct Trace {
  std::vector<Index> batch_at_sync;
  Vector x;
  Index steps = 0, samples = 0;
};

struct BatchTrace {
  std::vector<Index>* out;
  void on_sync(const RunState& s) { out->push_back(s.batch_sizes[0]); }
};

template <class Method>
Trace run(Method& method, const LeastSquares& obj) {
  Trace t;
  BatchTrace obs{&t.batch_at_sync};
  const RunResult r = method.run(obj, Vector::Zero(obj.dim()), obs);
  t.x = r.x;
  t.steps = r.metrics.steps;
  t.samples = r.metrics.samples;
  return t;
}

bool same(const Trace& a, const Trace& b) {
  return a.batch_at_sync == b.batch_at_sync && a.x == b.x && a.steps == b.steps && a.samples == b.samples;
}

}  // namespace

TEST_CASE("policies: AnyBatchRule runs the norm test bitwise as the library's rule, for every apply_at") {
  const LeastSquares obj = problem();
  for (ApplyAt at : {ApplyAt::next_round, ApplyAt::next_step, ApplyAt::this_step}) {
    CAPTURE(to_string(at));
    const AdaptiveBatchOptions bo{.b_min = 2, .b_max = 256, .variance = VarianceMode::exact, .apply_at = at};
    const NormTestRule rule(bo, NormTest{.eta = 0.2});
    const RunOptions ro{.workers = 2, .max_steps = 200};
    LocalMethod<SGD, ConstantSync, NormTestRule> direct(ro, SGD{}, ConstantSync{4}, rule, ConstantLr{.lr = 0.05},
                                                        IidSampler(1));
    sim::ConfiguredMethod wrapped(ro, SGD{}, ConstantSync{4}, rule, ConstantLr{.lr = 0.05}, IidSampler(1));
    const Trace a = run(direct, obj), b = run(wrapped, obj);
    CHECK(same(a, b));
    CHECK(a.batch_at_sync.back() > 2);  // the test did grow the batch
  }
}

TEST_CASE("policies: apply_at = this_step changes the run (it sizes each step before its draw)") {
  const LeastSquares obj = problem();
  auto trace = [&](ApplyAt at) {
    const AdaptiveBatchOptions bo{.b_min = 2, .b_max = 256, .variance = VarianceMode::exact, .apply_at = at};
    sim::ConfiguredMethod m({.workers = 2, .max_steps = 200}, SGD{}, ConstantSync{4},
                            NormTestRule(bo, NormTest{.eta = 0.2}), ConstantLr{.lr = 0.05}, IidSampler(1));
    return run(m, obj);
  };
  const Trace next = trace(ApplyAt::next_step), now = trace(ApplyAt::this_step);
  CHECK_FALSE(same(next, now));
  CHECK(now.batch_at_sync.back() > 2);
}

TEST_CASE("policies: AnyOuterOptimizer, AnySampler and AnySchedule run bitwise as the wrapped policies") {
  const LeastSquares obj = problem();
  const RunOptions ro{.workers = 3, .max_steps = 60};
  const OuterSGD outer(OuterSGDOptions{.lr = 0.7, .momentum = 0.9, .nesterov = true});
  const WarmupCosineLr lr{.peak = 0.05, .warmup = 10, .total = 60};
  for (bool every_step : {false, true}) {
    CAPTURE(every_step);
    Trace a, b;
    if (every_step) {
      LocalMethod<SGD, EveryStepSync, ConstantBatch, WarmupCosineLr, ShuffledEpochSampler, OuterSGD> direct(
          ro, SGD{}, EveryStepSync{}, ConstantBatch{4}, lr, ShuffledEpochSampler(2), outer);
      sim::ConfiguredMethod wrapped(ro, SGD{}, EveryStepSync{}, ConstantBatch{4}, lr, ShuffledEpochSampler(2), outer);
      a = run(direct, obj);
      b = run(wrapped, obj);
    } else {
      LocalMethod<HeavyBall, ConstantSync, ConstantBatch, WarmupCosineLr, ShuffledEpochSampler, OuterSGD> direct(
          ro, HeavyBall{}, ConstantSync{5}, ConstantBatch{4}, lr, ShuffledEpochSampler(2), outer);
      sim::ConfiguredMethod wrapped(ro, HeavyBall{}, ConstantSync{5}, ConstantBatch{4}, lr, ShuffledEpochSampler(2),
                                    outer);
      a = run(direct, obj);
      b = run(wrapped, obj);
    }
    CHECK(same(a, b));
  }
}
