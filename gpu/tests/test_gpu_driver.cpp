// The unchanged driver on device storage (issue 7, "the driver is unchanged"): LocalMethod with the GPU
// communicator, objective and optimizer must give the host run's trajectory, same seed, same indices. In the
// OpenMP build T = double agrees with the host to rounding and T = float to float32 tolerance; on a GPU (the
// CUDA build) the same checks are the CPU–GPU parity.
#include <doctest/doctest.h>

#include <cmath>
#include <lgm/lgm.hpp>
#include <type_traits>
#include <vector>

#include "lgm/gpu/gpu.hpp"  // the umbrella: checks that it compiles in both builds

namespace {

using namespace lgm;

double rel_diff(const Vector& a, const Vector& b) {
  return (a - b).cwiseAbs().maxCoeff() / std::max(1e-300, b.cwiseAbs().maxCoeff());
}

// Records the shared point and the minibatch loss at every sync: the trajectory that is compared.
struct Trajectory {
  std::vector<Vector> points;
  std::vector<double> losses;
  std::vector<std::vector<Index>> sizes;
  void on_sync(const RunState& s) {
    points.emplace_back(s.shared_point);
    losses.push_back(s.batch_loss);
    sizes.emplace_back(s.batch_sizes.begin(), s.batch_sizes.end());
  }
};

// Records every step's worker points as the observers see them (downloaded from the device).
struct StepPoints {
  std::vector<Matrix> X, at_sync;
  void on_step(const RunState& s) { X.emplace_back(s.X); }
  void on_sync(const RunState& s) { at_sync.emplace_back(s.X); }
};

template <class T>
double tolerance() {
  return std::is_same_v<T, double> ? 1e-10 : 2e-4;
}

// The host run and the device run of one configuration, compared sync by sync.
template <class T, class HostObj, class DeviceObj, class HostOpt, class Sync, class Batch = ConstantBatch,
          class Outer = Averaging>
void check_parity(const HostObj& obj, RunOptions run, HostOpt opt, Sync sync, Batch batch, double lr,
                  Outer outer = {}) {
  const Vector x0 = Vector::Constant(obj.dim(), 0.1);
  Trajectory host_traj, dev_traj;
  LocalMethod<HostOpt, Sync, Batch, ConstantLr, IidSampler, Outer> host(run, opt, sync, batch, ConstantLr{.lr = lr},
                                                                        IidSampler(11), outer);
  const RunResult hr = host.run(obj, x0, host_traj);

  gpu::DeviceStorage<T> storage;
  gpu::DeviceCommunicator<T> comm(run.workers, storage);
  const DeviceObj dobj(obj, storage);
  LocalMethod<gpu::DeviceOptimizer<HostOpt, T>, Sync, Batch, ConstantLr, IidSampler, Outer> dev(
      run, gpu::DeviceOptimizer<HostOpt, T>(opt), sync, batch, ConstantLr{.lr = lr}, IidSampler(11), outer);
  const RunResult dr = dev.run_with(comm, dobj, x0, dev_traj);

  REQUIRE(dr.reason == hr.reason);
  CHECK(dr.metrics.steps == hr.metrics.steps);
  CHECK(dr.metrics.samples == hr.metrics.samples);
  CHECK(dr.metrics.comm_rounds == hr.metrics.comm_rounds);
  CHECK(dr.metrics.global_rounds == hr.metrics.global_rounds);
  CHECK(dr.metrics.bytes == doctest::Approx(hr.metrics.bytes));
  REQUIRE(dev_traj.points.size() == host_traj.points.size());
  double worst = 0.0, worst_loss = 0.0;
  for (size_t j = 0; j < host_traj.points.size(); ++j) {
    worst = std::max(worst, rel_diff(dev_traj.points[j], host_traj.points[j]));
    worst_loss = std::max(worst_loss, std::abs(dev_traj.losses[j] - host_traj.losses[j]) /
                                          std::max(1e-300, std::abs(host_traj.losses[j])));
  }
  INFO("largest relative difference of the shared point: " << worst << ", of the loss: " << worst_loss);
  CHECK(worst < tolerance<T>());
  CHECK(worst_loss < tolerance<T>());
  CHECK(rel_diff(dr.x, hr.x) < tolerance<T>());
  if constexpr (std::is_same_v<T, double>) CHECK(dev_traj.sizes == host_traj.sizes);  // the batch-size decisions
}

}  // namespace

TEST_CASE_TEMPLATE("gpu driver: Local SGD on logistic regression follows the host run", T, double, float) {
  const auto obj = Logistic::synthetic({.N = 400, .d = 12, .lambda = 1e-2, .compute_optimum = false, .seed = 3});
  check_parity<T, Logistic, gpu::DeviceLogistic<T>>(obj, {.workers = 4, .max_steps = 60}, SGD{.weight_decay = 1e-3},
                                                    ConstantSync{4}, ConstantBatch{8}, 0.5);
}

TEST_CASE_TEMPLATE("gpu driver: Local AdamW with averaged moments on softmax regression", T, double, float) {
  const auto obj = Softmax::synthetic({.N = 300, .d = 8, .classes = 3, .lambda = 1e-3, .seed = 5});
  check_parity<T, Softmax, gpu::DeviceSoftmax<T>>(
      obj, {.workers = 3, .max_steps = 40},
      AdamW{.weight_decay = 0.01, .average_first_moment = true, .average_second_moment = true}, ConstantSync{5},
      ConstantBatch{16}, 0.01);
}

TEST_CASE_TEMPLATE("gpu driver: heavy ball with a gradient all-reduce (H = 1) on least squares", T, double, float) {
  const auto obj = LeastSquares::synthetic({.N = 200, .d = 6, .condition = 5.0, .noise = 0.3, .lambda = 0.01});
  check_parity<T, LeastSquares, gpu::DeviceLeastSquares<T>>(
      obj, {.workers = 4, .max_steps = 30}, HeavyBall{.momentum = 0.9}, EveryStepSync{}, ConstantBatch{4}, 0.05);
}

TEST_CASE_TEMPLATE("gpu driver: hierarchical syncs and a sample budget", T, double, float) {
  const auto obj = LeastSquares::synthetic({.N = 200, .d = 6, .condition = 5.0, .noise = 0.3, .lambda = 0.01});
  check_parity<T, LeastSquares, gpu::DeviceLeastSquares<T>>(
      obj, {.workers = 4, .max_samples = 1000}, Nesterov{.momentum = 0.8},
      HierarchicalSync{.H = 3, .global_every = 2, .group_size = 2}, ConstantBatch{8}, 0.05);
}

TEST_CASE_TEMPLATE("gpu driver: an outer optimizer (DiLoCo) takes its step on the host copy", T, double, float) {
  const auto obj = Logistic::synthetic({.N = 300, .d = 10, .lambda = 1e-2, .compute_optimum = false, .seed = 9});
  check_parity<T, Logistic, gpu::DeviceLogistic<T>>(obj, {.workers = 2, .max_steps = 40}, SGD{}, ConstantSync{8},
                                                    ConstantBatch{8}, 0.3, OuterSGD(OuterSGDOptions::diloco()));
}

TEST_CASE_TEMPLATE("gpu driver: the local norm and inner-product tests size the batches as on the host", T, double,
                   float) {
  const auto obj = Logistic::synthetic({.N = 2000, .d = 12, .lambda = 1e-2, .compute_optimum = false, .seed = 4});
  check_parity<T, Logistic, gpu::DeviceLogistic<T>>(obj, {.workers = 4, .max_samples = 20000}, SGD{}, ConstantSync{4},
                                                    NormTestRule({.b0 = 4, .b_max = 256}, NormTest{0.5}), 0.5);
  check_parity<T, Logistic, gpu::DeviceLogistic<T>>(
      obj, {.workers = 4, .max_samples = 20000}, SGD{}, ConstantSync{4},
      InnerProductTestRule({.b0 = 4, .b_max = 256}, InnerProductTest{0.5}), 0.5);
}

TEST_CASE_TEMPLATE("gpu driver: the micro-batch and cross-worker estimators size the batches as on the host", T, double,
                   float) {
  const auto obj = Logistic::synthetic({.N = 2000, .d = 12, .lambda = 1e-2, .compute_optimum = false, .seed = 6});
  check_parity<T, Logistic, gpu::DeviceLogistic<T>>(
      obj, {.workers = 4, .max_samples = 20000}, SGD{}, ConstantSync{4},
      InnerProductTestRule({.b_min = 4, .b_max = 256, .estimator = Estimator::micro_batch_means, .micro_batches = 3},
                           InnerProductTest{0.5}),
      0.5);
  check_parity<T, Logistic, gpu::DeviceLogistic<T>>(
      obj, {.workers = 4, .max_samples = 20000}, SGD{}, ConstantSync{4},
      NormTestRule({.b_min = 4, .b_max = 256, .estimator = Estimator::cross_worker}, NormTest{0.5}), 0.5);
}

TEST_CASE("gpu driver: a test mode that needs host storage is rejected before the first step, naming it") {
  const auto obj = Logistic::synthetic({.N = 200, .d = 6, .lambda = 1e-2, .compute_optimum = false, .seed = 4});
  gpu::DeviceStorage<float> storage;
  gpu::DeviceCommunicator<float> comm(2, storage);
  const gpu::DeviceLogistic<float> dobj(obj, storage);
  LocalMethod<gpu::SGD<float>, ConstantSync, NormTestRule> method(
      {.workers = 2, .max_steps = 10}, gpu::SGD<float>(SGD{}), ConstantSync{4},
      NormTestRule({.b0 = 4, .scope = TestScope::global}, NormTest{0.5}));
  CHECK_THROWS_WITH_AS(method.run_with(comm, dobj, Vector::Zero(obj.dim())),
                       doctest::Contains("scope = global (accepted: local on a device run"), ConfigError);
}

TEST_CASE("gpu driver: observers see the device replicas; the same seed gives bitwise the same device run") {
  const auto obj = Logistic::synthetic({.N = 300, .d = 10, .lambda = 1e-2, .compute_optimum = false, .seed = 2});
  const Vector x0 = Vector::Zero(obj.dim());
  auto run_once = [&](StepPoints& seen) {
    gpu::DeviceStorage<float> storage;
    gpu::DeviceCommunicator<float> comm(3, storage);
    const gpu::DeviceLogistic<float> dobj(obj, storage);
    LocalMethod<gpu::SGD<float>> method({.workers = 3, .max_steps = 12}, gpu::SGD<float>(SGD{}), ConstantSync{4},
                                        ConstantBatch{8}, ConstantLr{.lr = 0.5}, IidSampler(4));
    return method.run_with(comm, dobj, x0, seen);
  };
  StepPoints a, b;
  const RunResult ra = run_once(a), rb = run_once(b);
  REQUIRE(a.X.size() == 12);
  CHECK(a.X[0].cols() == 3);
  CHECK(a.X[0].col(0) != a.X[0].col(1));  // after the first step the workers differ
  REQUIRE(a.at_sync.size() == 3);
  CHECK(a.at_sync[0].col(0) == a.at_sync[0].col(2));  // after a sync all equal the average
  CHECK(ra.x == rb.x);
  for (size_t k = 0; k < a.X.size(); ++k) CHECK(a.X[k] == b.X[k]);
}

TEST_CASE("gpu driver: divergence on the device stops the run and names the step") {
  const auto obj = LeastSquares::synthetic({.N = 200, .d = 6, .condition = 10.0, .noise = 0.5, .lambda = 0.01});
  gpu::DeviceStorage<float> storage;
  gpu::DeviceCommunicator<float> comm(2, storage);
  const gpu::DeviceLeastSquares<float> dobj(obj, storage);
  LocalMethod<gpu::SGD<float>> method({.workers = 2, .max_steps = 5000}, gpu::SGD<float>(SGD{}), ConstantSync{4},
                                      ConstantBatch{4}, ConstantLr{.lr = 100.0}, IidSampler(1));
  const RunResult r = method.run_with(comm, dobj, Vector::Ones(obj.dim()));
  CHECK(r.reason == StopReason::diverged);
  CHECK(r.message.find("step") != std::string::npos);
  CHECK(r.metrics.steps < 5000);
}
