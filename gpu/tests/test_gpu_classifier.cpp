// A ResNet under the unchanged LocalMethod (lgm/gpu/nn/image_classifier.hpp, docs/nn.md §Image classifier): the
// exact equivalences of the quality bar (M = 1 is plain SGD; H = 1 with gradient averaging is minibatch SGD with
// batch M·b, batch norm in M groups), bitwise determinism for 1 and 2 threads, the batch-norm statistics at a
// sync, the batch-size estimators of networks, the memory plan, divergence, and a run that learns.
#include <doctest/doctest.h>

#include <filesystem>
#include <lgm/lgm.hpp>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "lgm/data/cifar.hpp"
#include "lgm/data/fashion_mnist.hpp"
#include "lgm/gpu/gpu.hpp"
#include "lgm/gpu/nn/image_classifier.hpp"
#include "objective_test_util.hpp"
#include "skip.hpp"

using namespace lgm;
namespace nn = lgm::gpu::nn;
using namespace lgm::gpu::testing::objtest;  // NOLINT(google-build-using-namespace): the tests' helpers

namespace {

/// A tiny image set: 1 × 6 × 6 images of 3 classes, the class shifting the mean of one quadrant.
ClassificationData tiny_images(Index n, std::uint64_t seed) {
  detail::DataRng rng(seed);
  ClassificationData d{Matrix(36, n), std::vector<Index>(static_cast<std::size_t>(n)), 3};
  for (Index i = 0; i < n; ++i) {
    const Index y = i % 3;
    d.labels[static_cast<std::size_t>(i)] = y;
    for (Index p = 0; p < 36; ++p)
      d.features(p, i) = rng.normal() * 0.5 + ((p % 6) / 3 == y % 2 && p / 18 == y / 2 ? 1.0 : 0.0);
  }
  return d;
}

nn::ResNet tiny_net() { return nn::ResNet(nn::ResNetSpec::cifar(8, 2, 1, 6, 3)); }

}  // namespace

TEST_CASE("classifier: M = 1 under LocalMethod is plain SGD on the network (double)") {
  gpu::DeviceStorage<double> st;
  const nn::ImageClassifier<double> obj(tiny_net(), tiny_images(60, 1), st);
  const Vector x0 = obj.initial_point(3);
  gpu::DeviceCommunicator<double> comm(1, st);
  LocalMethod<gpu::DeviceOptimizer<SGD, double>, ConstantSync, ConstantBatch, ConstantLr, IidSampler> method(
      {.workers = 1, .max_steps = 6}, gpu::DeviceOptimizer<SGD, double>(SGD{}), ConstantSync{3}, ConstantBatch{6},
      ConstantLr{.lr = 0.1}, IidSampler(5));
  const RunResult r = method.run_with(comm, obj, x0);
  const Vector want = by_hand<double>(obj, st, x0, 1, 6, 6, 5, [](Vector& x, const Vector& g) { x -= 0.1 * g; });
  CHECK((r.x - want).cwiseAbs().maxCoeff() <= 1e-12 * std::max(1.0, want.cwiseAbs().maxCoeff()));
  CHECK((r.x - x0).norm() > 0.0);
}

TEST_CASE("classifier: H = 1 averaging M gradients is minibatch SGD with batch M·b and batch norm in M groups") {
  const Index M = 2, b = 4;
  gpu::DeviceStorage<double> st;
  const auto data = tiny_images(60, 2);
  const nn::ImageClassifier<double> obj(tiny_net(), data, st);
  const nn::ImageClassifier<double> big(tiny_net(), data, st, {.bn_groups = M});
  const Vector x0 = obj.initial_point(4);
  gpu::DeviceCommunicator<double> comm(M, st);
  LocalMethod<gpu::DeviceOptimizer<SGD, double>, EveryStepSync, ConstantBatch, ConstantLr, IidSampler> method(
      {.workers = M, .max_steps = 5}, gpu::DeviceOptimizer<SGD, double>(SGD{}), EveryStepSync{}, ConstantBatch{b},
      ConstantLr{.lr = 0.2}, IidSampler(6));
  const RunResult r = method.run_with(comm, obj, x0);
  const Vector want = by_hand<double>(big, st, x0, M, b, 5, 6, [](Vector& x, const Vector& g) { x -= 0.2 * g; });
  CHECK((r.x - want).cwiseAbs().maxCoeff() <= 1e-12 * std::max(1.0, want.cwiseAbs().maxCoeff()));
}

TEST_CASE("classifier: the same seed gives bitwise the same Local SGD run for 1 and 2 threads, with augmentation") {
#ifdef _OPENMP
  const auto run = [](int threads) {
    const int keep = omp_get_max_threads();
    omp_set_num_threads(threads);
    gpu::DeviceStorage<float> st;
    const nn::ImageClassifier<float> obj(tiny_net(), tiny_images(60, 3), st, {.augment = true, .pad = 1, .seed = 9});
    gpu::DeviceCommunicator<float> comm(3, st);
    LocalMethod<gpu::DeviceOptimizer<HeavyBall, float>, ConstantSync, ConstantBatch, ConstantLr, IidSampler> method(
        {.workers = 3, .max_steps = 8}, gpu::DeviceOptimizer<HeavyBall, float>(HeavyBall{.momentum = 0.9}),
        ConstantSync{4}, ConstantBatch{6}, ConstantLr{.lr = 0.05}, IidSampler(7));
    const RunResult r = method.run_with(comm, obj, obj.initial_point(5));
    omp_set_num_threads(keep);
    return r.x;
  };
  const Vector one = run(1), two = run(2);
  CHECK(one == two);
#else
  MESSAGE("single-threaded build: nothing to compare");
#endif
}

TEST_CASE("classifier: bad input is refused before the run, naming what is wrong") {
  gpu::DeviceStorage<float> st;
  auto data = tiny_images(10, 4);
  CHECK_THROWS_WITH_AS(nn::ImageClassifier<float>(nn::ResNet(nn::ResNetSpec::cifar(8, 2, 1, 5, 3)), data, st),
                       doctest::Contains("values a sample"), ConfigError);
  data.labels[3] = 7;
  CHECK_THROWS_WITH_AS(nn::ImageClassifier<float>(tiny_net(), data, st), doctest::Contains("label"), ConfigError);
  const nn::ImageClassifier<float> ghost(tiny_net(), tiny_images(10, 4), st, {.bn_groups = 3});
  auto ws = ghost.make_workspace();
  auto X = st.matrix(ghost.dim(), 1), G = st.matrix(ghost.dim(), 1);
  const std::vector<Index> idx{0, 1, 2, 3};
  const IndexSpan batch(idx.data(), idx.size());
  double loss = 0.0;
  CHECK_THROWS_WITH_AS(
      ghost.gradients(X.view(), std::span<const IndexSpan>(&batch, 1), G.view(), std::span<double>(&loss, 1), ws),
      doctest::Contains("multiple of bn_groups = 3"), ConfigError);
}

namespace {

Matrix download_matrix(const gpu::DeviceBuffer<double>& b, Index rows, Index cols) {
  Matrix out(rows, cols);
  const gpu::DeviceStorage<double> st;
  gpu::copy_to_host(out.data(), b.data(), static_cast<std::size_t>(rows * cols) * sizeof(double), st.stream());
  return out;
}

template <class Batch>
using NetMethod = LocalMethod<gpu::DeviceOptimizer<SGD, double>, ConstantSync, Batch, ConstantLr, IidSampler>;

}  // namespace

TEST_CASE("classifier: batch-norm running statistics at a sync: not averaged, averaged (their mean), recomputed") {
  const Index M = 2;
  gpu::DeviceStorage<double> st;
  const auto data = tiny_images(60, 5);
  const auto run = [&](nn::BatchNormSync mode, Vector* x) {
    const nn::ImageClassifier<double> obj(tiny_net(), data, st, {.bn_sync = mode});
    gpu::DeviceCommunicator<double> comm(M, st);
    NetMethod<ConstantBatch> method({.workers = M, .max_steps = 6}, gpu::DeviceOptimizer<SGD, double>(SGD{}),
                                    ConstantSync{3}, ConstantBatch{6}, ConstantLr{.lr = 0.1}, IidSampler(8));
    const RunResult r = method.run_with(comm, obj, obj.initial_point(2));
    *x = r.x;
    const Index nc = obj.network().norm_channels();
    return std::pair{download_matrix(obj.running_mean(), nc, M), download_matrix(obj.running_var(), nc, M)};
  };
  Vector x_local, x_avg;
  const auto [mean_local, var_local] = run(nn::BatchNormSync::not_averaged, &x_local);
  const auto [mean_avg, var_avg] = run(nn::BatchNormSync::averaged, &x_avg);
  CHECK(x_local == x_avg);  // training uses batch statistics: the parameters do not depend on the mode
  CHECK((mean_local.col(0) - mean_local.col(1)).norm() > 1e-6);  // each worker its own
  CHECK(mean_avg.col(0) == mean_avg.col(1));
  CHECK(var_avg.col(0) == var_avg.col(1));
  // the running statistics are linear in the batch statistics: averaging at every sync ends, after a sync, at
  // the mean of the workers' unaveraged ones
  const Vector want_mean = mean_local.rowwise().mean(), want_var = var_local.rowwise().mean();
  CHECK((mean_avg.col(0) - want_mean).cwiseAbs().maxCoeff() <= 1e-12);
  CHECK((var_avg.col(0) - want_var).cwiseAbs().maxCoeff() <= 1e-12);
}

TEST_CASE("classifier: recomputed statistics are the mean of each batch's own (two batches = mean of two sets)") {
  gpu::DeviceStorage<double> st;
  const auto data = tiny_images(60, 6);
  ClassificationData first{data.features.leftCols(30), {data.labels.begin(), data.labels.begin() + 30}, 3};
  ClassificationData second{data.features.rightCols(30), {data.labels.begin() + 30, data.labels.end()}, 3};
  const nn::ImageClassifierOptions opt{
      .bn_sync = nn::BatchNormSync::recomputed, .recompute_samples = 60, .eval_batch = 30};
  const nn::ImageClassifier<double> both(tiny_net(), data, st, opt);
  nn::ImageClassifierOptions half = opt;
  half.recompute_samples = 30;
  const nn::ImageClassifier<double> a(tiny_net(), first, st, half), b(tiny_net(), second, st, half);
  const Vector x = both.initial_point(4);
  const auto test = nn::DeviceImages<double>::upload(data, 1, 6, 6, st.stream());
  const Index nc = both.network().norm_channels();
  const auto eval = both.evaluate(ConstVectorRef(x), test);
  (void)a.evaluate(ConstVectorRef(x), test);
  (void)b.evaluate(ConstVectorRef(x), test);
  const Matrix m2 = download_matrix(both.evaluation_mean(), nc, 1), v2 = download_matrix(both.evaluation_var(), nc, 1);
  const Matrix ma = download_matrix(a.evaluation_mean(), nc, 1), va = download_matrix(a.evaluation_var(), nc, 1);
  const Matrix mb = download_matrix(b.evaluation_mean(), nc, 1), vb = download_matrix(b.evaluation_var(), nc, 1);
  CHECK((m2 - 0.5 * (ma + mb)).cwiseAbs().maxCoeff() <= 1e-12);
  CHECK((v2 - 0.5 * (va + vb)).cwiseAbs().maxCoeff() <= 1e-12);
  CHECK(eval.accuracy >= 0.0);
  CHECK(eval.accuracy <= 1.0);
  CHECK(std::isfinite(eval.loss));
}

TEST_CASE("classifier: the micro-batch norm test on a network agrees with the host formula on halves") {
  const Index M = 2, b = 6, parts = 2;
  const std::uint64_t seed = 11;
  gpu::DeviceStorage<double> st;
  const auto data = tiny_images(60, 7);
  const nn::ImageClassifier<double> obj(tiny_net(), data, st);
  const Vector x0 = obj.initial_point(6);
  const NormTest test{.eta = 0.5};
  NormTestRule rule({.b_min = b, .b_max = 4 * b, .estimator = Estimator::micro_batch_means, .micro_batches = parts},
                    test);
  gpu::DeviceCommunicator<double> comm(M, st);
  LocalMethod<gpu::DeviceOptimizer<SGD, double>, ConstantSync, NormTestRule, ConstantLr, IidSampler> method(
      {.workers = M, .max_steps = 1}, gpu::DeviceOptimizer<SGD, double>(SGD{}), ConstantSync{4}, rule,
      ConstantLr{.lr = 0.1}, IidSampler(seed));
  (void)method.run_with(comm, obj, x0);
  for (Index m = 0; m < M; ++m) {
    const auto batch = drawn_batch(seed, M, 60, m, 0, b);
    const Vector g = gradient_on(obj, st, x0, batch);
    MicroBatchDeviations dev;
    for (Index j = 0; j < parts; ++j) {
      const std::vector<Index> part(batch.begin() + j * b / parts, batch.begin() + (j + 1) * b / parts);
      dev.add(gradient_on(obj, st, x0, part), static_cast<Index>(part.size()), g, g.squaredNorm());
    }
    const double want = test.ratio(micro_batch_means_statistics(dev, g.squaredNorm()));
    CHECK(method.batch_rule().last_ratio(m) == doctest::Approx(want).epsilon(1e-9));
    CHECK(method.batch_rule().tests_run(m) == 1);
  }
}

TEST_CASE("classifier: the cross-worker norm test on a device agrees with the host formula") {
  const Index M = 3, b = 4;
  const std::uint64_t seed = 12;
  gpu::DeviceStorage<double> st;
  const auto data = tiny_images(60, 8);
  const nn::ImageClassifier<double> obj(tiny_net(), data, st);
  const Vector x0 = obj.initial_point(7);
  const NormTest test{.eta = 0.5};
  NormTestRule rule({.b_min = b, .b_max = 64, .estimator = Estimator::cross_worker, .when = TestWhen::sync_steps},
                    test);
  gpu::DeviceCommunicator<double> comm(M, st);
  LocalMethod<gpu::DeviceOptimizer<SGD, double>, ConstantSync, NormTestRule, ConstantLr, IidSampler> method(
      {.workers = M, .max_steps = 1}, gpu::DeviceOptimizer<SGD, double>(SGD{}), ConstantSync{1}, rule,
      ConstantLr{.lr = 0.1}, IidSampler(seed));
  (void)method.run_with(comm, obj, x0);
  Vector sum = Vector::Zero(obj.dim());
  double sq = 0.0;
  for (Index m = 0; m < M; ++m) {
    const Vector g = gradient_on(obj, st, x0, drawn_batch(seed, M, 60, m, 0, b));
    sum += g;
    sq += g.squaredNorm();
  }
  BatchStatistics want;
  want.grad_norm_sq = (sum / static_cast<double>(M)).squaredNorm();
  want.variance = cross_worker_variance(sq, want.grad_norm_sq, M, static_cast<double>(b)) / static_cast<double>(M);
  CHECK(method.batch_rule().last_ratio(0) == doctest::Approx(test.ratio(want)).epsilon(1e-9));
}

TEST_CASE("classifier: the per-sample estimator is refused on a network, naming the option") {
  gpu::DeviceStorage<double> st;
  const nn::ImageClassifier<double> obj(tiny_net(), tiny_images(30, 9), st);
  gpu::DeviceCommunicator<double> comm(2, st);
  LocalMethod<gpu::DeviceOptimizer<SGD, double>, ConstantSync, NormTestRule, ConstantLr, IidSampler> method(
      {.workers = 2, .max_steps = 2}, gpu::DeviceOptimizer<SGD, double>(SGD{}), ConstantSync{2},
      NormTestRule({.b_min = 4, .b_max = 8}), ConstantLr{.lr = 0.1}, IidSampler(1));
  CHECK_THROWS_WITH_AS(method.run_with(comm, obj, obj.initial_point(1)), doctest::Contains("estimator = per_sample"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(method.run_with(comm, obj, obj.initial_point(1)),
                       doctest::Contains("micro_batch_means or cross_worker"), ConfigError);
}

TEST_CASE("classifier: a run that does not fit is refused before the first step, with the plan's figures") {
  gpu::DeviceStorage<float> st;
  const nn::ImageClassifier<float> obj(tiny_net(), tiny_images(30, 10), st, {.memory_limit_bytes = 1e5});
  const hooks::RunFootprint f{.local_workers = 4, .max_batch = 64, .replica_columns = 20};
  const nn::MemoryPlan plan = obj.memory_plan(f);
  const nn::ResNetPlan p = obj.network().plan(4, 64, 1);
  CHECK(plan.items.size() == 4);
  CHECK(plan.items[0].bytes == 20.0 * static_cast<double>(obj.dim()) * sizeof(float));
  CHECK(plan.items[1].bytes == static_cast<double>(p.t_values * 4 + p.d_values * 8 + p.i_values * 8));
  CHECK(plan.items[2].bytes == 30.0 * 36 * sizeof(float) + 30.0 * sizeof(Index));
  gpu::DeviceCommunicator<float> comm(4, st);
  LocalMethod<gpu::DeviceOptimizer<HeavyBall, float>, ConstantSync, ConstantBatch, ConstantLr, IidSampler> method(
      {.workers = 4, .max_steps = 2}, gpu::DeviceOptimizer<HeavyBall, float>(HeavyBall{}), ConstantSync{2},
      ConstantBatch{64}, ConstantLr{.lr = 0.1}, IidSampler(1));
  CHECK_THROWS_WITH_AS(method.run_with(comm, obj, obj.initial_point(1)), doctest::Contains("largest batch = 64"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(method.run_with(comm, obj, obj.initial_point(1)), doctest::Contains("activations"), ConfigError);
  CHECK_THROWS_WITH_AS(method.run_with(comm, obj, obj.initial_point(1)), doctest::Contains("memory_limit_bytes"),
                       ConfigError);
}

TEST_CASE("classifier: a diverging network run stops naming the step and round, the result intact") {
  gpu::DeviceStorage<float> st;
  const nn::ImageClassifier<float> obj(tiny_net(), tiny_images(30, 11), st);
  const auto test = nn::DeviceImages<float>::upload(tiny_images(30, 12), 1, 6, 6, st.stream());
  nn::EvaluationObserver evals(obj, test);
  gpu::DeviceCommunicator<float> comm(2, st);
  LocalMethod<gpu::DeviceOptimizer<SGD, float>, ConstantSync, ConstantBatch, ConstantLr, IidSampler> method(
      {.workers = 2, .max_steps = 50}, gpu::DeviceOptimizer<SGD, float>(SGD{}), ConstantSync{2}, ConstantBatch{6},
      ConstantLr{.lr = 1e12}, IidSampler(1));
  const RunResult r = method.run_with(comm, obj, obj.initial_point(1), evals);
  CHECK(r.reason == StopReason::diverged);
  CHECK(r.message.find("step") != std::string::npos);
  CHECK(r.message.find("round") != std::string::npos);
  CHECK(r.metrics.steps < 50);
}

TEST_CASE("classifier: the evaluation observer records the shared model at global syncs and at the end") {
  gpu::DeviceStorage<float> st;
  const nn::ImageClassifier<float> obj(tiny_net(), tiny_images(30, 13), st);
  const auto test = nn::DeviceImages<float>::upload(tiny_images(30, 14), 1, 6, 6, st.stream());
  nn::EvaluationObserver evals(obj, test, 2);
  gpu::DeviceCommunicator<float> comm(2, st);
  LocalMethod<gpu::DeviceOptimizer<SGD, float>, ConstantSync, ConstantBatch, ConstantLr, IidSampler> method(
      {.workers = 2, .max_steps = 10}, gpu::DeviceOptimizer<SGD, float>(SGD{}), ConstantSync{2}, ConstantBatch{6},
      ConstantLr{.lr = 0.05}, IidSampler(1));
  const RunResult r = method.run_with(comm, obj, obj.initial_point(1), evals);
  REQUIRE(evals.records().size() == 3);  // syncs 2 and 4 of 5, then the end
  CHECK(evals.records()[0].step == 4);
  CHECK(evals.records()[2].step == 10);
  const auto last = obj.evaluate(ConstVectorRef(r.x), test);
  CHECK(evals.records()[2].accuracy == last.accuracy);
  CHECK(evals.records()[2].loss == last.loss);
}

TEST_CASE("classifier: a small ResNet learns Fashion-MNIST under Local SGD (test accuracy well above chance)") {
#if defined(__SANITIZE_ADDRESS__) || defined(LGM_TEST_SANITIZED)
  lgm::test::skip("a learning run of the release build (too slow under the sanitizers)");
  return;
#endif
  const FashionMnistOptions fopt;
  if (!std::filesystem::exists(fopt.dir / "train-images-idx3-ubyte.gz")) {
    lgm::test::skip("Fashion-MNIST not found in " + fopt.dir.string() + " (Debian package dataset-fashion-mnist)");
    return;
  }
  TrainTestData d = load_fashion_mnist({.train_limit = 4000, .test_limit = 1000});
  const ChannelStats stats = channel_stats(d.train.features, 1, 784);
  normalize_channels(d.train.features, 1, 784, stats);
  normalize_channels(d.test.features, 1, 784, stats);
  gpu::DeviceStorage<float> st;
  const nn::ImageClassifier<float> obj(nn::ResNet(nn::ResNetSpec::cifar(8, 8, 1, 28, 10)), d.train, st);
  const auto test = nn::DeviceImages<float>::upload(d.test, 1, 28, 28, st.stream());
  nn::EvaluationObserver evals(obj, test, 25);
  gpu::DeviceCommunicator<float> comm(2, st);
  LocalMethod<gpu::DeviceOptimizer<HeavyBall, float>, ConstantSync, ConstantBatch, ConstantLr, IidSampler> method(
      {.workers = 2, .max_steps = 300}, gpu::DeviceOptimizer<HeavyBall, float>(HeavyBall{.momentum = 0.9}),
      ConstantSync{4}, ConstantBatch{32}, ConstantLr{.lr = 0.05}, IidSampler(3));
  const RunResult r = method.run_with(comm, obj, obj.initial_point(1), evals);
  REQUIRE(r.reason == StopReason::budget);
  REQUIRE(!evals.records().empty());
  const double accuracy = evals.records().back().accuracy;
  MESSAGE("ResNet-8 (width 8), 2 workers × b = 32, H = 4, 300 steps on 4000 Fashion-MNIST images: test accuracy "
          << accuracy << " on 1000");
  CHECK(accuracy >= 0.6);  // chance: 0.1
}
