// A GPT under the unchanged LocalMethod (lgm/gpu/nn/language_model.hpp, docs/nn.md §Language model): M = 1 is
// plain AdamW, H = 1 with gradient averaging is minibatch SGD with batch M·b windows, bitwise determinism for 1 and
// 2 threads, micro-batches and evaluation against gradients() on the same windows, bad input, the memory plan,
// and a run that learns the fortunes text.
#include <doctest/doctest.h>

#include <filesystem>
#include <lgm/lgm.hpp>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "lgm/data/tokens.hpp"
#include "lgm/gpu/gpu.hpp"
#include "lgm/gpu/nn/language_model.hpp"
#include "objective_test_util.hpp"
#include "skip.hpp"

using namespace lgm;
namespace nn = lgm::gpu::nn;
using namespace lgm::gpu::testing::objtest;  // NOLINT(google-build-using-namespace): the tests' helpers

namespace {

/// A byte stream with structure: repeated words with a counter-based choice among them.
TokenData tiny_text(Index n, std::uint64_t seed) {
  const char* words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat. "};
  detail::DataRng rng(seed);
  TokenData d;
  d.source = "tiny text";
  while (d.count() < n)
    for (const char* c = words[static_cast<std::size_t>(rng.uniform() * 6) % 6]; *c != '\0' && d.count() < n; ++c)
      d.tokens.push_back(static_cast<std::uint8_t>(*c));
  return d;
}

nn::Gpt tiny_gpt() { return nn::Gpt(nn::GptSpec{2, 2, 16, 8, 128}); }

double max_rel(const Vector& a, const Vector& b) {
  return (a - b).cwiseAbs().maxCoeff() / std::max(1.0, b.cwiseAbs().maxCoeff());
}

}  // namespace

TEST_CASE("language model: M = 1 under LocalMethod is plain AdamW on the GPT (double)") {
  gpu::DeviceStorage<double> st;
  const nn::LanguageModel<double> obj(tiny_gpt(), tiny_text(400, 1), st);
  const Vector x0 = obj.initial_point(3);
  const AdamW adamw{.weight_decay = 0.1};
  gpu::DeviceCommunicator<double> comm(1, st);
  LocalMethod<gpu::DeviceOptimizer<AdamW, double>, ConstantSync, ConstantBatch, ConstantLr, IidSampler> method(
      {.workers = 1, .max_steps = 6}, gpu::DeviceOptimizer<AdamW, double>(adamw), ConstantSync{3}, ConstantBatch{4},
      ConstantLr{.lr = 0.01}, IidSampler(5));
  const RunResult r = method.run_with(comm, obj, x0);
  AdamW::State state = adamw.init(obj.dim(), 1);
  const Vector want =
      by_hand<double>(obj, st, x0, 1, 4, 6, 5, [&](Vector& x, const Vector& g) { adamw.step(state, 0, x, g, 0.01); });
  CHECK(max_rel(r.x, want) <= 1e-12);
  CHECK((r.x - x0).norm() > 0.0);
}

TEST_CASE("language model: H = 1 averaging M gradients is minibatch SGD with batch M·b windows") {
  const Index M = 3, b = 2;
  gpu::DeviceStorage<double> st;
  const nn::LanguageModel<double> obj(tiny_gpt(), tiny_text(400, 2), st);
  const Vector x0 = obj.initial_point(4);
  gpu::DeviceCommunicator<double> comm(M, st);
  LocalMethod<gpu::DeviceOptimizer<SGD, double>, EveryStepSync, ConstantBatch, ConstantLr, IidSampler> method(
      {.workers = M, .max_steps = 5}, gpu::DeviceOptimizer<SGD, double>(SGD{}), EveryStepSync{}, ConstantBatch{b},
      ConstantLr{.lr = 0.3}, IidSampler(6));
  const RunResult r = method.run_with(comm, obj, x0);
  const Vector want = by_hand<double>(obj, st, x0, M, b, 5, 6, [](Vector& x, const Vector& g) { x -= 0.3 * g; });
  CHECK(max_rel(r.x, want) <= 1e-12);
}

TEST_CASE("language model: the same seed gives bitwise the same Local AdamW run for 1 and 2 threads") {
#ifdef _OPENMP
  const auto run = [](int threads) {
    const int keep = omp_get_max_threads();
    omp_set_num_threads(threads);
    gpu::DeviceStorage<float> st;
    const nn::LanguageModel<float> obj(tiny_gpt(), tiny_text(400, 3), st);
    gpu::DeviceCommunicator<float> comm(2, st);
    LocalMethod<gpu::DeviceOptimizer<AdamW, float>, ConstantSync, ConstantBatch, ConstantLr, IidSampler> method(
        {.workers = 2, .max_steps = 6}, gpu::DeviceOptimizer<AdamW, float>(AdamW{}), ConstantSync{3}, ConstantBatch{3},
        ConstantLr{.lr = 0.01}, IidSampler(7));
    const RunResult r = method.run_with(comm, obj, obj.initial_point(5));
    omp_set_num_threads(keep);
    return r.x;
  };
  const Vector one = run(1), two = run(2);
  CHECK(one == two);
#else
  lgm::test::skip("needs OpenMP (thread counts)");
#endif
}

TEST_CASE("language model: micro-batches and evaluation equal gradients() on the same windows") {
  gpu::DeviceStorage<double> st;
  const TokenData text = tiny_text(300, 4);
  const nn::LanguageModel<double> obj(tiny_gpt(), text, st, {.eval_batch = 3});
  const Vector x0 = obj.initial_point(6);
  auto X = st.matrix(obj.dim(), 2), G = st.matrix(obj.dim(), 2), H = st.matrix(obj.dim(), 2);
  st.upload(x0, X.col(0));
  st.upload(x0 * 0.5, X.col(1));
  auto ws = obj.make_workspace();
  const std::vector<Index> w0{3, 40, 17, 99}, w1{5, 6, 200, 31};
  const IndexSpan batches[] = {IndexSpan(w0), IndexSpan(w1)};
  double losses[2];
  // part 1 of 2 (windows 2 and 3 of each worker) against gradients() on those windows
  obj.micro_batch_gradients(X.view(), batches, 1, 2, G.view(), ws);
  const IndexSpan halves[] = {IndexSpan(w0).subspan(2), IndexSpan(w1).subspan(2)};
  obj.gradients(X.view(), halves, H.view(), losses, ws);
  Vector g(obj.dim()), h(obj.dim());
  for (Index m = 0; m < 2; ++m) {
    st.download(G.col(m), g);
    st.download(H.col(m), h);
    CHECK(max_rel(g, h) <= 1e-12);
  }
  // evaluation over every disjoint window (starts 0, 8, 16, …) = the loss of gradients() on them
  const nn::DeviceTokens set = obj.upload(text);
  const auto e = obj.evaluate(ConstVectorRef(x0), set);
  std::vector<Index> starts;
  for (Index s = 0; s + obj.seq() < text.count(); s += obj.seq()) starts.push_back(s);
  const IndexSpan all(starts);
  auto X1 = st.matrix(obj.dim(), 1), G1 = st.matrix(obj.dim(), 1);
  st.upload(x0, X1.col(0));
  obj.gradients(X1.view(), std::span<const IndexSpan>(&all, 1), G1.view(), std::span<double>(losses, 1), ws);
  CHECK(e.loss == doctest::Approx(losses[0]).epsilon(1e-12));
  CHECK(e.accuracy >= 0.0);
  CHECK(e.accuracy <= 1.0);
  CHECK(e.bits() == doctest::Approx(e.loss / std::log(2.0)));
}

TEST_CASE("language model: the micro-batch and cross-worker norm tests on the GPT agree with the host formulas") {
  const Index M = 2, b = 6, parts = 3;
  const std::uint64_t seed = 13;
  gpu::DeviceStorage<double> st;
  const nn::LanguageModel<double> obj(tiny_gpt(), tiny_text(300, 8), st);
  const Vector x0 = obj.initial_point(8);
  const NormTest test{.eta = 0.5};
  {  // micro-batch means: three micro-batches of two windows each
    NormTestRule rule({.b_min = b, .b_max = 4 * b, .estimator = Estimator::micro_batch_means, .micro_batches = parts},
                      test);
    gpu::DeviceCommunicator<double> comm(M, st);
    LocalMethod<gpu::DeviceOptimizer<SGD, double>, ConstantSync, NormTestRule, ConstantLr, IidSampler> method(
        {.workers = M, .max_steps = 1}, gpu::DeviceOptimizer<SGD, double>(SGD{}), ConstantSync{4}, rule,
        ConstantLr{.lr = 0.1}, IidSampler(seed));
    (void)method.run_with(comm, obj, x0);
    for (Index m = 0; m < M; ++m) {
      const auto batch = drawn_batch(seed, M, obj.num_samples(), m, 0, b);
      const Vector g = gradient_on(obj, st, x0, batch);
      MicroBatchDeviations dev;
      for (Index j = 0; j < parts; ++j) {
        const std::vector<Index> part(batch.begin() + j * b / parts, batch.begin() + (j + 1) * b / parts);
        dev.add(gradient_on(obj, st, x0, part), static_cast<Index>(part.size()), g, g.squaredNorm());
      }
      CHECK(method.batch_rule().last_ratio(m) ==
            doctest::Approx(test.ratio(micro_batch_means_statistics(dev, g.squaredNorm()))).epsilon(1e-9));
    }
  }
  {  // cross-worker at a sync
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
      const Vector g = gradient_on(obj, st, x0, drawn_batch(seed, M, obj.num_samples(), m, 0, b));
      sum += g;
      sq += g.squaredNorm();
    }
    BatchStatistics want;
    want.grad_norm_sq = (sum / static_cast<double>(M)).squaredNorm();
    want.variance = cross_worker_variance(sq, want.grad_norm_sq, M, static_cast<double>(b)) / static_cast<double>(M);
    CHECK(method.batch_rule().last_ratio(0) == doctest::Approx(test.ratio(want)).epsilon(1e-9));
  }
  {  // per-sample: refused, naming the option
    gpu::DeviceCommunicator<double> comm(M, st);
    LocalMethod<gpu::DeviceOptimizer<SGD, double>, ConstantSync, NormTestRule, ConstantLr, IidSampler> method(
        {.workers = M, .max_steps = 2}, gpu::DeviceOptimizer<SGD, double>(SGD{}), ConstantSync{2},
        NormTestRule({.b_min = 4, .b_max = 8}), ConstantLr{.lr = 0.1}, IidSampler(1));
    CHECK_THROWS_WITH_AS(method.run_with(comm, obj, x0), doctest::Contains("micro_batch_means or cross_worker"),
                         ConfigError);
  }
}

TEST_CASE("language model: bad input is refused before the run, naming what is wrong") {
  gpu::DeviceStorage<float> st;
  TokenData text = tiny_text(200, 5);
  // a vocabulary smaller than the data's largest token
  CHECK_THROWS_WITH_AS(nn::LanguageModel<float>(nn::Gpt(nn::GptSpec{1, 1, 8, 8, 100}), text, st),
                       doctest::Contains("gpt vocab"), ConfigError);
  // a window longer than the model's context
  CHECK_THROWS_WITH_AS(nn::LanguageModel<float>(tiny_gpt(), text, st, {.seq = 9}),
                       doctest::Contains("seq (window length)"), ConfigError);
  // a stream no longer than a window
  text.tokens.resize(8);
  CHECK_THROWS_WITH_AS(nn::LanguageModel<float>(tiny_gpt(), text, st), doctest::Contains("training tokens"),
                       ConfigError);
  // a run that does not fit: refused before the first step with the plan's figures
  const nn::LanguageModel<float> obj(tiny_gpt(), tiny_text(200, 6), st, {.memory_limit_bytes = 1e5});
  gpu::DeviceCommunicator<float> comm(2, st);
  LocalMethod<gpu::DeviceOptimizer<AdamW, float>, ConstantSync, ConstantBatch, ConstantLr, IidSampler> method(
      {.workers = 2, .max_steps = 2}, gpu::DeviceOptimizer<AdamW, float>(AdamW{}), ConstantSync{2}, ConstantBatch{64},
      ConstantLr{.lr = 0.01}, IidSampler(1));
  CHECK_THROWS_WITH_AS(method.run_with(comm, obj, obj.initial_point(1)),
                       doctest::Contains("activations and workspace (M_local × b × seq = 2 × 64 × 8)"), ConfigError);
}

TEST_CASE("language model: the CI-sized GPT learns the fortunes text under Local AdamW (below the unigram entropy)") {
#if defined(__SANITIZE_ADDRESS__) || defined(LGM_TEST_SANITIZED)
  lgm::test::skip("a learning run of the release build (too slow under the sanitizers)");
  return;
#endif
  if (!std::filesystem::is_directory(fortunes_directory())) {
    lgm::test::skip(std::string("the fortunes text not found in ") + fortunes_directory() +
                    " (Debian package fortunes)");
    return;
  }
  const TokenSplit split = split_tokens(read_fortunes(), 0.1);
  const double unigram = unigram_entropy(split.validation);
  gpu::DeviceStorage<float> st;
  const nn::LanguageModel<float> obj(nn::Gpt(nn::GptSpec::ci()), split.train, st, {.eval_windows = 64});
  const nn::DeviceTokens validation = obj.upload(split.validation);
  nn::EvaluationObserver evals(obj, validation, 50);
  gpu::DeviceCommunicator<float> comm(2, st);
  const Index steps = 400;
  LocalMethod<gpu::DeviceOptimizer<AdamW, float>, ConstantSync, ConstantBatch, WarmupCosineLr, IidSampler> method(
      {.workers = 2, .max_steps = steps},
      gpu::DeviceOptimizer<AdamW, float>(AdamW{.beta2 = 0.99,
                                               .weight_decay = 0.1,
                                               .decay_mask = nn::decay_mask(obj.network().table()),
                                               .max_grad_norm = 1.0}),
      ConstantSync{4}, ConstantBatch{8}, WarmupCosineLr{.peak = 2e-3, .warmup = 20, .total = steps}, IidSampler(3));
  const RunResult r = method.run_with(comm, obj, obj.initial_point(1), evals);
  REQUIRE(r.reason == StopReason::budget);
  REQUIRE(!evals.records().empty());
  for (const auto& e : evals.records())
    MESSAGE("step " << e.step << ": validation loss " << e.loss << ", accuracy " << e.accuracy);
  const double loss = evals.records().back().loss;
  MESSAGE("GPT ci (2 layers, width 64, context 64), 2 workers × 8 windows, H = 4, "
          << steps << " steps on " << split.train.count() << " fortune bytes: validation loss " << loss << " nats ("
          << loss / std::log(2.0) << " bits/byte) against the unigram entropy " << unigram << " nats");
  CHECK(loss < 0.85 * unigram);
}
