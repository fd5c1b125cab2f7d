// Batch-size rules (docs/batch_rules.md §The adaptive tests): every formula is checked against a second,
// independent computation written here with explicit per-sample gradient vectors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "lgm/batch/batch.hpp"
#include "lgm/comm/in_process.hpp"
#include "lgm/core/step_context.hpp"
#include "lgm/run/local_method.hpp"

using namespace lgm;

namespace {

// ---------------------------------------------------------------- test objectives

/// f_i(x) = ½(a_iᵀx − y_i)², ∇f_i = (a_iᵀx − y_i) a_i; A is d × N (column i = a_i). With ClosedForm the
/// per-sample moments come in closed form (‖g_i‖² = r_i²‖a_i‖², ⟨g_i,v⟩ = r_i⟨a_i,v⟩), without it the
/// library falls back to the per-sample loop.
template <bool ClosedForm>
struct LeastSquaresT {
  Matrix A;
  Vector y;
  Vector col_sq;

  LeastSquaresT(Matrix a, Vector targets) : A(std::move(a)), y(std::move(targets)), col_sq(A.cols()) {
    for (Index i = 0; i < A.cols(); ++i) col_sq[i] = A.col(i).squaredNorm();
  }

  struct Workspace {};
  Index dim() const { return A.rows(); }
  Index num_samples() const { return A.cols(); }
  Workspace make_workspace() const { return {}; }
  double residual(ConstVectorRef x, Index i) const { return A.col(i).dot(x) - y[i]; }
  double loss(ConstVectorRef x, IndexSpan batch, Workspace&) const {
    double l = 0.0;
    for (Index i : batch) l += 0.5 * residual(x, i) * residual(x, i);
    return l / static_cast<double>(batch.size());
  }
  double gradient(ConstVectorRef x, IndexSpan batch, VectorRef g, Workspace&) const {
    g.setZero();
    double l = 0.0;
    for (Index i : batch) {
      const double r = residual(x, i);
      g += r * A.col(i);
      l += 0.5 * r * r;
    }
    g /= static_cast<double>(batch.size());
    return l / static_cast<double>(batch.size());
  }
  double sample_gradient(ConstVectorRef x, Index i, VectorRef g, Workspace&) const {
    const double r = residual(x, i);
    g = r * A.col(i);
    return 0.5 * r * r;
  }
  SampleMoments sample_moments(ConstVectorRef x, IndexSpan batch, ConstVectorRef v,
                               Workspace&) const requires ClosedForm {
    SampleMoments s;
    for (Index i : batch) {
      const double r = residual(x, i);
      const double p = r * A.col(i).dot(v);
      s.sum_sq_norm += r * r * col_sq[i];
      s.sum_proj += p;
      s.sum_proj_sq += p * p;
    }
    s.count = static_cast<Index>(batch.size());
    return s;
  }
};
using LeastSquares = LeastSquaresT<true>;
using LeastSquaresNoMoments = LeastSquaresT<false>;

static_assert(HasClosedFormMoments<LeastSquares>);
static_assert(Objective<LeastSquaresNoMoments> && !HasClosedFormMoments<LeastSquaresNoMoments>);

/// f_i(x) = ½‖x − c_i‖²: ∇F(x) = x − c̄ and σ²(x) = (1/N)Σ‖c_i − c̄‖² are known in closed form.
struct MeanEstimation {
  Matrix C;  // d × N
  struct Workspace {};
  Index dim() const { return C.rows(); }
  Index num_samples() const { return C.cols(); }
  Workspace make_workspace() const { return {}; }
  double loss(ConstVectorRef x, IndexSpan batch, Workspace&) const {
    double l = 0.0;
    for (Index i : batch) l += 0.5 * (x - C.col(i)).squaredNorm();
    return l / static_cast<double>(batch.size());
  }
  double gradient(ConstVectorRef x, IndexSpan batch, VectorRef g, Workspace& ws) const {
    g = x;
    for (Index i : batch) g -= C.col(i) / static_cast<double>(batch.size());
    return loss(x, batch, ws);
  }
  double sample_gradient(ConstVectorRef x, Index i, VectorRef g, Workspace&) const {
    g = x - C.col(i);
    return 0.5 * g.squaredNorm();
  }
};

LeastSquares make_least_squares(Index d, Index N, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n01;
  Matrix A(d, N);
  Vector y(N);
  for (Index i = 0; i < N; ++i) {
    for (Index j = 0; j < d; ++j) A(j, i) = n01(rng);
    y[i] = n01(rng) + 0.5 * static_cast<double>(i % 3);
  }
  return LeastSquares(A, y);
}

Vector random_vector(Index d, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> n01;
  Vector v(d);
  for (Index j = 0; j < d; ++j) v[j] = scale * n01(rng);
  return v;
}

bool rel_close(double a, double b, double tol = 1e-12) {
  return std::abs(a - b) <= tol * std::max({std::abs(a), std::abs(b), 1e-300});
}

// ---------------------------------------------------------------- a hand-built driver step

/// Holds what the driver would hold and builds the StepContext by hand.
template <class Obj>
struct Harness {
  using Ctx = StepContext<Obj, InProcessCommunicator>;
  const Obj& obj;
  Index M;
  int threads;
  InProcessCommunicator comm;
  Matrix X, G, scratch;
  std::vector<std::vector<Index>> index_buffers;
  std::vector<IndexSpan> batches;
  std::vector<typename Obj::Workspace> workspaces;
  std::vector<Index> all;

  Harness(const Obj& o, Index workers, int thr = 1)
      : obj(o),
        M(workers),
        threads(thr),
        comm(workers, thr),
        X(Matrix::Zero(o.dim(), workers)),
        G(Matrix::Zero(o.dim(), workers)),
        scratch(Matrix::Zero(o.dim(), 2 * workers + 2)),
        index_buffers(static_cast<size_t>(workers)),
        batches(static_cast<size_t>(workers)) {
    for (Index m = 0; m < workers; ++m) workspaces.push_back(o.make_workspace());
    for (Index i = 0; i < o.num_samples(); ++i) all.push_back(i);
  }

  Ctx ctx(Index step, bool sync_after, SyncScope scope = SyncScope::global) {
    return Ctx{obj, comm, X, G, batches, workspaces, scratch, all, step, sync_after, scope, threads};
  }

  void set_batch(Index m, std::vector<Index> batch) {
    auto& buf = index_buffers[static_cast<size_t>(m)];
    buf = std::move(batch);
    batches[static_cast<size_t>(m)] = IndexSpan(buf.data(), buf.size());
    obj.gradient(X.col(m), batches[static_cast<size_t>(m)], G.col(m), workspaces[static_cast<size_t>(m)]);
  }

  template <class Rule>
  void draw(const Rule& rule, std::mt19937_64& rng) {
    std::uniform_int_distribution<Index> pick(0, obj.num_samples() - 1);
    for (Index m = 0; m < M; ++m) {
      std::vector<Index> b(static_cast<size_t>(rule.batch_size(m)));
      for (Index& i : b) i = pick(rng);
      set_batch(m, std::move(b));
    }
  }

  /// One driver step: draw, gradients, after_gradients, an SGD step, and a global sync if asked.
  template <class Rule>
  void step(Rule& rule, Index k, bool sync, std::mt19937_64& rng, double lr = 0.05) {
    draw(rule, rng);
    rule.after_gradients(ctx(k, sync));
    X -= lr * G;
    if (sync) {
      const Vector mean = X.rowwise().mean();
      for (Index m = 0; m < M; ++m) X.col(m) = mean;
      rule.at_sync(ctx(k, true));
    }
  }
};

/// Per-sample gradients of least squares at x, written out directly (the independent reference).
std::vector<Vector> per_sample_gradients(const LeastSquares& obj, const Vector& x, const std::vector<Index>& batch) {
  std::vector<Vector> g;
  for (Index i : batch) g.push_back((obj.A.col(i).dot(x) - obj.y[i]) * obj.A.col(i));
  return g;
}

Vector mean_of(const std::vector<Vector>& v) {
  Vector s = Vector::Zero(v.front().size());
  for (const Vector& x : v) s += x;
  return s / static_cast<double>(v.size());
}

/// S², V_ip, V⊥ by their definitions (docs/batch_rules.md §Approximate tests, before the cheap rewrite).
BatchStatistics direct_statistics(const std::vector<Vector>& gi) {
  const Vector g = mean_of(gi);
  const double gns = g.squaredNorm();
  const double b = static_cast<double>(gi.size());
  double s2 = 0.0, vip = 0.0, vperp = 0.0;
  for (const Vector& v : gi) {
    s2 += (v - g).squaredNorm();
    vip += std::pow(v.dot(g) - gns, 2);
    vperp += (v - (v.dot(g) / gns) * g).squaredNorm();
  }
  return BatchStatistics{gns, s2 / (b - 1.0), vip / (b - 1.0), vperp / (b - 1.0)};
}

SampleMoments moments_along(const std::vector<Vector>& gi, const Vector& v) {
  SampleMoments s;
  for (const Vector& x : gi) {
    s.sum_sq_norm += x.squaredNorm();
    s.sum_proj += x.dot(v);
    s.sum_proj_sq += x.dot(v) * x.dot(v);
  }
  s.count = static_cast<Index>(gi.size());
  return s;
}

std::vector<Index> random_batch(Index b, Index N, std::mt19937_64& rng) {
  std::uniform_int_distribution<Index> pick(0, N - 1);
  std::vector<Index> out(static_cast<size_t>(b));
  for (Index& i : out) i = pick(rng);
  return out;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

Index expected_size(double ratio, Index b, Index b_max) {
  return std::min(b_max, std::max(b, static_cast<Index>(std::ceil(ratio))));
}

}  // namespace

// The rules satisfy the driver's concept with the real context type.
static_assert(BatchSizeRuleFor<ConstantBatch, StepContext<LeastSquares, InProcessCommunicator>>);
static_assert(BatchSizeRuleFor<NormTestRule, StepContext<LeastSquares, InProcessCommunicator>>);
static_assert(BatchSizeRuleFor<InnerProductTestRule, StepContext<LeastSquaresNoMoments, InProcessCommunicator>>);
static_assert(BatchSizeRuleFor<AugmentedInnerProductTestRule, StepContext<MeanEstimation, InProcessCommunicator>>);

// ================================================================ statistics.hpp

// docs/batch_rules.md §Cheap forms
TEST_CASE("cheap forms of S², V_ip, V⊥ equal their definitions") {
  std::mt19937_64 rng(1);
  for (Index b : {2, 3, 7, 40}) {
    std::vector<Vector> gi;
    for (Index i = 0; i < b; ++i) gi.push_back(random_vector(6, rng) + Vector::Constant(6, 0.7));
    const Vector g = mean_of(gi);
    const SampleMoments s = moments_along(gi, g);
    const BatchStatistics ref = direct_statistics(gi);
    CHECK(rel_close(sample_variance(s, g.squaredNorm()), ref.variance));
    CHECK(rel_close(inner_product_variance(s, g.squaredNorm()), ref.ip_variance));
    CHECK(rel_close(orthogonality_variance(s, g.squaredNorm()), ref.orth_variance));
    const BatchStatistics all = sample_statistics(s, g.squaredNorm());
    CHECK(all.grad_norm_sq == g.squaredNorm());
    CHECK(rel_close(all.variance, ref.variance));
    CHECK(rel_close(all.ip_variance, ref.ip_variance));
    CHECK(rel_close(all.orth_variance, ref.orth_variance));
  }
  // docs/decisions.md §B13
  SUBCASE("b < 2 and a zero direction give NaN") {
    SampleMoments one{1.0, 1.0, 1.0, 1};
    CHECK(std::isnan(sample_variance(one, 1.0)));
    CHECK(std::isnan(inner_product_variance(one, 1.0)));
    CHECK(std::isnan(orthogonality_variance(one, 1.0)));
    SampleMoments two{1.0, 0.0, 0.0, 2};
    CHECK(std::isnan(orthogonality_variance(two, 0.0)));
  }
}

// docs/batch_rules.md §Pooled micro-batches
TEST_CASE("pooled micro-batch S² equals the per-sample S² of the union") {
  std::mt19937_64 rng(2);
  const std::vector<Index> counts = {3, 1, 4, 2, 5};
  std::vector<Vector> all_samples;
  Matrix means(4, static_cast<Index>(counts.size()));
  std::vector<double> variances;
  for (size_t j = 0; j < counts.size(); ++j) {
    std::vector<Vector> part;
    for (Index i = 0; i < counts[j]; ++i) part.push_back(random_vector(4, rng) + Vector::Constant(4, double(j)));
    means.col(static_cast<Index>(j)) = mean_of(part);
    double s2 = 0.0;
    for (const Vector& v : part) s2 += (v - mean_of(part)).squaredNorm();
    // a part of one sample has no within-part variance: pass NaN to show it is not read
    variances.push_back(counts[j] > 1 ? s2 / static_cast<double>(counts[j] - 1) : std::nan(""));
    all_samples.insert(all_samples.end(), part.begin(), part.end());
  }
  const double pooled = pooled_sample_variance(counts, variances, means);
  CHECK(rel_close(pooled, direct_statistics(all_samples).variance));
  const std::vector<Index> single = {1};
  CHECK(std::isnan(pooled_sample_variance(single, std::vector<double>{0.0}, means.leftCols(1))));
}

// docs/batch_rules.md §micro_batch_means
TEST_CASE("micro-batch-means statistics") {
  std::mt19937_64 rng(3);
  SUBCASE("against the formula with explicit means, and with parts of one sample = per-sample S², V_ip, V⊥") {
    std::vector<Vector> gi;
    for (Index i = 0; i < 9; ++i) gi.push_back(random_vector(5, rng) + Vector::Constant(5, 0.4));
    const Vector g = mean_of(gi);
    MicroBatchDeviations singles;
    for (const Vector& v : gi) singles.add(v, 1, g, g.squaredNorm());
    const BatchStatistics per_sample = direct_statistics(gi);
    const BatchStatistics mb = micro_batch_means_statistics(singles, g.squaredNorm());
    CHECK(rel_close(mb.variance, per_sample.variance));
    CHECK(rel_close(mb.ip_variance, per_sample.ip_variance));
    CHECK(rel_close(mb.orth_variance, per_sample.orth_variance));

    const std::vector<Index> sizes = {2, 3, 4};
    MicroBatchDeviations parts;
    double naive_var = 0.0, naive_ip = 0.0, naive_orth = 0.0;
    size_t at = 0;
    for (Index n : sizes) {
      const std::vector<Vector> part(gi.begin() + static_cast<long>(at), gi.begin() + static_cast<long>(at + n));
      at += static_cast<size_t>(n);
      const Vector mu = mean_of(part);
      parts.add(mu, n, g, g.squaredNorm());
      naive_var += static_cast<double>(n) * (mu - g).squaredNorm();
      naive_ip += static_cast<double>(n) * std::pow(mu.dot(g) - g.squaredNorm(), 2);
      naive_orth += static_cast<double>(n) * (mu - mu.dot(g) / g.squaredNorm() * g).squaredNorm();
    }
    const BatchStatistics st = micro_batch_means_statistics(parts, g.squaredNorm());
    // the device's form from ‖μ_j‖², ⟨μ_j, g⟩ (docs/nn.md §Batch-size tests on networks)
    MicroBatchDeviations scalars;
    at = 0;
    for (Index n : sizes) {
      const Vector mu =
          mean_of(std::vector<Vector>(gi.begin() + static_cast<long>(at), gi.begin() + static_cast<long>(at + n)));
      at += static_cast<size_t>(n);
      scalars.add_moments(n, mu.squaredNorm(), mu.dot(g), g.squaredNorm());
    }
    const BatchStatistics sc = micro_batch_means_statistics(scalars, g.squaredNorm());
    CHECK(scalars.parts == 3);
    CHECK(scalars.count == 9);
    CHECK(rel_close(sc.variance, st.variance));
    CHECK(rel_close(sc.ip_variance, st.ip_variance));
    CHECK(rel_close(sc.orth_variance, st.orth_variance));
    CHECK(parts.parts == 3);
    CHECK(parts.count == 9);
    CHECK(rel_close(st.variance, naive_var / 2.0));
    CHECK(rel_close(st.ip_variance, naive_ip / 2.0));
    CHECK(rel_close(st.orth_variance, naive_orth / 2.0));
  }
  SUBCASE("σ̂² is unbiased for σ² with unequal micro-batch sizes") {
    // per-sample gradients μ + diag(s)·z, z ~ N(0, I): σ² = Σ s_k²
    const Vector mu = (Vector(4) << 1.0, -2.0, 0.5, 0.0).finished();
    const Vector s = (Vector(4) << 0.5, 1.0, 2.0, 1.5).finished();
    const double sigma2 = s.squaredNorm();
    const std::vector<Index> sizes = {2, 3, 5};
    const int trials = 20000;
    double mean_est = 0.0;
    std::normal_distribution<double> n01;
    for (int t = 0; t < trials; ++t) {
      std::vector<Vector> means;
      Vector g = Vector::Zero(4);
      for (Index n : sizes) {
        Vector sum = Vector::Zero(4);
        for (Index i = 0; i < n; ++i)
          for (Index k = 0; k < 4; ++k) sum[k] += mu[k] + s[k] * n01(rng);
        g += sum;
        means.push_back(sum / static_cast<double>(n));
      }
      g /= 10.0;
      MicroBatchDeviations dev;
      for (size_t j = 0; j < sizes.size(); ++j) dev.add(means[j], sizes[j], g, g.squaredNorm());
      mean_est += micro_batch_means_statistics(dev, g.squaredNorm()).variance / trials;
    }
    CHECK(mean_est == doctest::Approx(sigma2).epsilon(0.03));
  }
  SUBCASE("fewer than two parts: NaN") {
    MicroBatchDeviations one;
    const Vector g = Vector::Ones(2);
    one.add(g, 4, g, 2.0);
    CHECK(std::isnan(micro_batch_means_statistics(one, 2.0).variance));
  }
}

// docs/batch_rules.md §cross_worker
TEST_CASE("cross-worker σ̂²") {
  std::mt19937_64 rng(4);
  SUBCASE("against b/(M−1)·Σ‖g^m − ḡ‖²") {
    const Index M = 5, b = 16;
    std::vector<Vector> gm;
    for (Index m = 0; m < M; ++m) gm.push_back(random_vector(3, rng));
    const Vector gbar = mean_of(gm);
    double dev = 0.0, sq = 0.0;
    for (const Vector& v : gm) {
      dev += (v - gbar).squaredNorm();
      sq += v.squaredNorm();
    }
    CHECK(rel_close(cross_worker_variance(sq, gbar.squaredNorm(), M, double(b)), double(b) / (M - 1) * dev, 1e-10));
    CHECK(std::isnan(cross_worker_variance(sq, 0.0, 1, double(b))));
  }
  SUBCASE("unbiased with unequal sizes when b is their harmonic mean") {
    // g^m = μ + noise/√b_m with per-coordinate variance s_k²: Var(g^m) = σ²/b_m
    const std::vector<Index> sizes = {2, 4, 8, 16};
    const Vector s = (Vector(3) << 1.0, 2.0, 0.5).finished();
    const double sigma2 = s.squaredNorm();
    double inv = 0.0;
    for (Index b : sizes) inv += 1.0 / static_cast<double>(b);
    const double harmonic = static_cast<double>(sizes.size()) / inv;
    std::normal_distribution<double> n01;
    double mean_est = 0.0;
    const int trials = 20000;
    for (int t = 0; t < trials; ++t) {
      Vector sum = Vector::Zero(3);
      double sq = 0.0;
      for (Index b : sizes) {
        Vector g(3);
        for (Index k = 0; k < 3; ++k) g[k] = 3.0 + s[k] * n01(rng) / std::sqrt(static_cast<double>(b));
        sum += g;
        sq += g.squaredNorm();
      }
      const Vector gbar = sum / 4.0;
      mean_est += cross_worker_variance(sq, gbar.squaredNorm(), 4, harmonic) / trials;
    }
    CHECK(mean_est == doctest::Approx(sigma2).epsilon(0.03));
  }
}

// docs/batch_rules.md §Batch-size update; docs/decisions.md §B6, §B7, §B13
TEST_CASE("next_batch_size: grow to ⌈ratio⌉, never shrink, cap, keep b on NaN") {
  CHECK(next_batch_size(3.2, 8, 100) == 8);  // passes: keeps b
  CHECK(next_batch_size(8.0, 8, 100) == 8);
  CHECK(next_batch_size(10.2, 8, 100) == 11);                          // fails: ⌈ratio⌉
  CHECK(next_batch_size(1e9, 8, 100) == 100);                          // cap
  CHECK(next_batch_size(1e300, 8, Index{1} << 53) == Index{1} << 53);  // clamp before ceil: no overflow
  CHECK(next_batch_size(-5.0, 8, 100) == 8);
  CHECK(next_batch_size(std::numeric_limits<double>::quiet_NaN(), 8, 100) == 8);
  CHECK(next_batch_size(std::numeric_limits<double>::infinity(), 8, 100) == 8);
  CHECK(next_batch_size(-std::numeric_limits<double>::infinity(), 8, 100) == 8);
}

// docs/batch_rules.md §Approximate tests
TEST_CASE("the tests' ratios") {
  const BatchStatistics s{2.0, 3.0, 5.0, 7.0};
  CHECK(rel_close(NormTest{0.5}.ratio(s), 3.0 / (0.25 * 2.0)));
  CHECK(rel_close(InnerProductTest{0.5}.ratio(s), 5.0 / (0.25 * 4.0)));
  CHECK(rel_close(AugmentedInnerProductTest{0.5, 2.0}.ratio(s), std::max(5.0 / (0.25 * 4.0), 7.0 / (4.0 * 2.0))));
  CHECK(rel_close(AugmentedInnerProductTest{2.0, 0.5}.ratio(s), std::max(5.0 / (4.0 * 4.0), 7.0 / (0.25 * 2.0))));
  BatchStatistics nan_orth = s;
  nan_orth.orth_variance = std::nan("");
  CHECK(std::isnan(AugmentedInnerProductTest{}.ratio(nan_orth)));
}

// ================================================================ constant.hpp

TEST_CASE("ConstantBatch") {
  ConstantBatch rule{12};
  rule.validate();
  rule.reset(3, 3);
  CHECK(rule.batch_size(2) == 12);
  CHECK(rule.max_batch_size() == 12);
  const LeastSquares obj = make_least_squares(3, 20, 5);
  Harness<LeastSquares> h(obj, 3);
  std::mt19937_64 rng(5);
  h.step(rule, 0, true, rng);
  CHECK(rule.batch_size(0) == 12);
  const std::string msg = error_of([] { ConstantBatch{0}.validate(); });
  CHECK(contains(msg, "b = 0"));
  CHECK(contains(msg, ">= 1"));
}

// ================================================================ local approximate tests

TEST_CASE("local per-sample norm / inner-product / augmented tests vs hand computation") {
  const LeastSquares obj = make_least_squares(5, 60, 6);
  std::mt19937_64 rng(6);
  Harness<LeastSquares> h(obj, 1);
  h.X.col(0) = random_vector(5, rng, 2.0);
  const std::vector<Index> batch = random_batch(10, 60, rng);
  const BatchStatistics ref = direct_statistics(per_sample_gradients(obj, h.X.col(0), batch));

  auto run = [&](auto rule) {
    rule.validate();
    rule.reset(1, 1);
    h.set_batch(0, batch);
    rule.after_gradients(h.ctx(0, false));
    return rule;
  };

  SUBCASE("norm test that fails grows to ⌈S²/(η²‖g‖²)⌉, one that passes keeps b") {
    const double r = ref.variance / (0.01 * 0.01 * ref.grad_norm_sq);
    REQUIRE(r > 10.0);
    const auto fail = run(NormTestRule({.b0 = 10, .b_max = 1 << 20}, NormTest{0.01}));
    CHECK(rel_close(fail.last_ratio(0), r, 1e-11));
    CHECK(fail.pending_batch_size(0) == expected_size(r, 10, 1 << 20));
    CHECK(fail.batch_size(0) == 10);  // next_round: not applied before the sync
    CHECK(fail.tests_run(0) == 1);

    const double r_pass = ref.variance / (100.0 * ref.grad_norm_sq);
    REQUIRE(r_pass < 10.0);
    const auto pass = run(NormTestRule({.b0 = 10}, NormTest{10.0}));
    CHECK(rel_close(pass.last_ratio(0), r_pass, 1e-11));
    CHECK(pass.pending_batch_size(0) == 10);
  }
  SUBCASE("inner-product test") {
    const double r = ref.ip_variance / (0.01 * 0.01 * ref.grad_norm_sq * ref.grad_norm_sq);
    const auto rule = run(InnerProductTestRule({.b0 = 10}, InnerProductTest{0.01}));
    CHECK(rel_close(rule.last_ratio(0), r, 1e-10));
    CHECK(rule.pending_batch_size(0) == expected_size(r, 10, 1 << 20));
  }
  SUBCASE("augmented inner-product test: max of both ratios") {
    for (auto [theta, nu] : {std::pair{0.01, 1.0}, std::pair{1.0, 0.01}}) {
      const double r = std::max(ref.ip_variance / (theta * theta * std::pow(ref.grad_norm_sq, 2)),
                                ref.orth_variance / (nu * nu * ref.grad_norm_sq));
      const auto rule = run(AugmentedInnerProductTestRule({.b0 = 10}, AugmentedInnerProductTest{theta, nu}));
      CHECK(rel_close(rule.last_ratio(0), r, 1e-10));
      CHECK(rule.pending_batch_size(0) == expected_size(r, 10, 1 << 20));
    }
  }
  SUBCASE("b_max caps the size, and the test is skipped at the cap") {
    auto rule = run(NormTestRule({.b0 = 10, .b_max = 12}, NormTest{0.01}));
    CHECK(rule.pending_batch_size(0) == 12);
    rule.at_sync(h.ctx(0, true));
    CHECK(rule.batch_size(0) == 12);
    h.set_batch(0, random_batch(12, 60, rng));
    rule.after_gradients(h.ctx(1, false));
    CHECK(rule.tests_run(0) == 1);  // not run again at the cap
  }
  SUBCASE("the per-sample fallback (no closed-form moments) gives the same decision") {
    const LeastSquaresNoMoments plain(obj.A, obj.y);
    Harness<LeastSquaresNoMoments> hp(plain, 1);
    hp.X = h.X;
    hp.set_batch(0, batch);
    NormTestRule rule({.b0 = 10}, NormTest{0.01});
    rule.reset(1, 1);
    rule.after_gradients(hp.ctx(0, false));
    const auto closed = run(NormTestRule({.b0 = 10}, NormTest{0.01}));
    CHECK(rel_close(rule.last_ratio(0), closed.last_ratio(0), 1e-11));
    CHECK(rule.pending_batch_size(0) == closed.pending_batch_size(0));
  }
}

TEST_CASE("batch sizes never decrease over a run, and steps are applied at syncs") {
  const LeastSquares obj = make_least_squares(4, 80, 7);
  std::mt19937_64 rng(7);
  Harness<LeastSquares> h(obj, 2);
  h.X.colwise() = random_vector(4, rng, 3.0);
  NormTestRule rule({.b_min = 4, .b_max = 200}, NormTest{0.3});
  rule.validate();
  rule.reset(2, 2);
  std::vector<Index> prev = {4, 4};
  Index grew = 0;
  for (Index k = 0; k < 40; ++k) {
    const bool sync = (k + 1) % 4 == 0;
    const std::vector<Index> before = {rule.batch_size(0), rule.batch_size(1)};
    h.step(rule, k, sync, rng, 0.1);
    for (Index m = 0; m < 2; ++m) {
      CHECK(rule.pending_batch_size(m) >= prev[static_cast<size_t>(m)]);
      CHECK(rule.batch_size(m) <= 200);
      if (!sync) CHECK(rule.batch_size(m) == before[static_cast<size_t>(m)]);  // next_round
      prev[static_cast<size_t>(m)] = rule.pending_batch_size(m);
    }
    grew += rule.batch_size(0) > 4;
  }
  CHECK(grew > 0);
}

// docs/decisions.md §B13
TEST_CASE("tiny gradients and NaN ratios keep b") {
  // consistent least squares: y = A x*, so every per-sample gradient at x* is zero
  std::mt19937_64 rng(8);
  LeastSquares base = make_least_squares(3, 30, 8);
  const Vector xs = random_vector(3, rng);
  const LeastSquares obj(base.A, base.A.transpose() * xs);
  Harness<LeastSquares> h(obj, 1);
  h.X.col(0) = xs;
  h.set_batch(0, random_batch(6, 30, rng));
  REQUIRE(h.G.col(0).squaredNorm() < 1e-20);

  NormTestRule rule({.b0 = 6}, NormTest{0.1});
  rule.reset(1, 1);
  rule.after_gradients(h.ctx(0, false));
  CHECK(rule.pending_batch_size(0) == 6);
  CHECK(rule.tests_run(0) == 1);
  CHECK(rule.tests_skipped(0) == 1);
  CHECK(std::isnan(rule.last_ratio(0)));

  SUBCASE("with tiny = 0 an exactly zero gradient gives a NaN ratio, which keeps b") {
    h.X.col(0) = xs;
    Harness<LeastSquares> h0(obj, 1);
    h0.X.col(0) = xs;
    h0.set_batch(0, std::vector<Index>{0, 1, 2, 3});
    h0.G.col(0).setZero();  // exactly zero, as the test needs 0/0
    NormTestRule zero({.b0 = 4, .tiny_grad_norm_sq = 0.0}, NormTest{0.1});
    zero.reset(1, 1);
    zero.after_gradients(h0.ctx(0, false));
    CHECK(std::isnan(zero.last_ratio(0)));
    CHECK(zero.pending_batch_size(0) == 4);
    CHECK(zero.tests_skipped(0) == 1);
  }
}

// docs/batch_rules.md §micro_batch_means
TEST_CASE("local micro-batch-means estimator vs hand computation") {
  const LeastSquares obj = make_least_squares(4, 50, 9);
  std::mt19937_64 rng(9);
  Harness<LeastSquares> h(obj, 1);
  h.X.col(0) = random_vector(4, rng, 2.0);
  const std::vector<Index> batch = random_batch(11, 50, rng);  // 3 parts of sizes 3, 4, 4
  h.set_batch(0, batch);
  const std::vector<Vector> gi = per_sample_gradients(obj, h.X.col(0), batch);
  const Vector g = mean_of(gi);
  double dev = 0.0;
  for (auto [begin, end] : {std::pair{0, 3}, std::pair{3, 7}, std::pair{7, 11}}) {
    const Vector mu = mean_of(std::vector<Vector>(gi.begin() + begin, gi.begin() + end));
    dev += (end - begin) * (mu - g).squaredNorm();
  }
  const double r = dev / 2.0 / (0.05 * 0.05 * g.squaredNorm());
  NormTestRule rule({.b0 = 11, .b_min = 4, .estimator = Estimator::micro_batch_means, .micro_batches = 3},
                    NormTest{0.05});
  rule.validate();
  rule.reset(1, 1);
  rule.after_gradients(h.ctx(0, false));
  CHECK(rel_close(rule.last_ratio(0), r, 1e-10));
  CHECK(rule.pending_batch_size(0) == expected_size(r, 11, 1 << 20));
}

// ================================================================ exact local tests

// docs/batch_rules.md §Exact tests
TEST_CASE("exact local norm test: b* = ⌈σ²/(η²‖∇F‖²)⌉ with σ², ∇F in closed form") {
  std::mt19937_64 rng(10);
  MeanEstimation obj{Matrix(3, 40)};
  for (Index i = 0; i < 40; ++i) obj.C.col(i) = random_vector(3, rng) + Vector::Constant(3, 1.0);
  const Vector cbar = obj.C.rowwise().mean();
  double sigma2 = 0.0;
  for (Index i = 0; i < 40; ++i) sigma2 += (obj.C.col(i) - cbar).squaredNorm() / 40.0;
  Harness<MeanEstimation> h(obj, 2);
  h.X.col(0) = cbar + Vector::Constant(3, 0.3);
  h.X.col(1) = cbar + Vector::Constant(3, -0.8);
  h.set_batch(0, {0, 1, 2});
  h.set_batch(1, {3, 4, 5});
  NormTestRule rule({.b0 = 3, .variance = VarianceMode::exact, .harmonize = Harmonize::none}, NormTest{0.25});
  rule.validate();
  rule.reset(2, 2);
  rule.after_gradients(h.ctx(0, true));
  for (Index m = 0; m < 2; ++m) {
    const double grad_sq = (h.X.col(m) - cbar).squaredNorm();
    const double b_star = std::ceil(sigma2 / (0.0625 * grad_sq));
    CHECK(rel_close(rule.last_ratio(m), sigma2 / (0.0625 * grad_sq), 1e-10));
    CHECK(rule.pending_batch_size(m) == std::max<Index>(3, static_cast<Index>(b_star)));
  }
  rule.at_sync(h.ctx(0, true));
  CHECK(rule.batch_size(0) != rule.batch_size(1));  // harmonize = none

  SUBCASE("exact inner-product test: Var⟨c_i, ∇F⟩ / (θ²‖∇F‖⁴)") {
    InnerProductTestRule ip({.b0 = 3, .variance = VarianceMode::exact}, InnerProductTest{0.25});
    ip.reset(2, 2);
    ip.after_gradients(h.ctx(0, false));
    const Vector gF = h.X.col(0) - cbar;
    double var = 0.0;
    for (Index i = 0; i < 40; ++i) var += std::pow((h.X.col(0) - obj.C.col(i) - gF).dot(gF), 2) / 40.0;
    CHECK(rel_close(ip.last_ratio(0), var / (0.0625 * std::pow(gF.squaredNorm(), 2)), 1e-10));
  }
}

// ================================================================ global scope

TEST_CASE("global approximate test at H = 1 equals the local test of one worker on the union batch") {
  const LeastSquares obj = make_least_squares(5, 70, 11);
  std::mt19937_64 rng(11);
  const Index M = 3, b = 5;
  Harness<LeastSquares> h(obj, M);
  h.X.colwise() = random_vector(5, rng, 2.0);
  std::vector<Index> uni;
  for (Index m = 0; m < M; ++m) {
    const auto bm = random_batch(b, 70, rng);
    h.set_batch(m, bm);
    uni.insert(uni.end(), bm.begin(), bm.end());
  }
  Harness<LeastSquares> one(obj, 1);
  one.X.col(0) = h.X.col(0);
  one.set_batch(0, uni);

  auto check_identity = [&](auto global, auto local) {
    global.validate();
    global.reset(M, M);
    global.after_gradients(h.ctx(0, true));
    local.reset(1, 1);
    local.after_gradients(one.ctx(0, false));
    const double r_union = local.last_ratio(0);
    for (Index m = 0; m < M; ++m) {
      CHECK(rel_close(global.last_ratio(m) * M, r_union, 1e-10));  // required global batch ÷ M
      CHECK(global.pending_batch_size(m) == expected_size(r_union / M, b, 1 << 20));
    }
    CHECK(global.sync_payload_elements(5) == 0);  // charged at the sync
    global.at_sync(h.ctx(0, true));
    CHECK(global.sync_payload_elements(5) == 5 + 3 + 1);
  };
  check_identity(NormTestRule({.b0 = b, .scope = TestScope::global}, NormTest{0.05}),
                 NormTestRule({.b0 = M * b}, NormTest{0.05}));
  check_identity(InnerProductTestRule({.b0 = b, .scope = TestScope::global}, InnerProductTest{0.05}),
                 InnerProductTestRule({.b0 = M * b}, InnerProductTest{0.05}));
  check_identity(
      AugmentedInnerProductTestRule({.b0 = b, .scope = TestScope::global}, AugmentedInnerProductTest{0.05, 0.2}),
      AugmentedInnerProductTestRule({.b0 = M * b}, AugmentedInnerProductTest{0.05, 0.2}));
}

TEST_CASE("global approximate test with workers at different points vs hand computation") {
  const LeastSquares obj = make_least_squares(4, 50, 12);
  std::mt19937_64 rng(12);
  const Index M = 3;
  Harness<LeastSquares> h(obj, M);
  std::vector<Vector> pooled;
  Vector weighted = Vector::Zero(4);
  for (Index m = 0; m < M; ++m) {
    h.X.col(m) = random_vector(4, rng, 2.0);
    const auto bm = random_batch(6, 50, rng);
    h.set_batch(m, bm);
    const auto gi = per_sample_gradients(obj, h.X.col(m), bm);
    pooled.insert(pooled.end(), gi.begin(), gi.end());
  }
  const BatchStatistics ref = direct_statistics(pooled);  // around ḡ = Σ b_m g^m / B
  AugmentedInnerProductTestRule rule({.b0 = 6, .scope = TestScope::global}, AugmentedInnerProductTest{0.1, 0.3});
  rule.reset(M, M);
  rule.after_gradients(h.ctx(0, true));
  const double r = std::max(ref.ip_variance / (0.01 * ref.grad_norm_sq * ref.grad_norm_sq),
                            ref.orth_variance / (0.09 * ref.grad_norm_sq)) /
                   M;
  CHECK(rel_close(rule.last_ratio(1), r, 1e-10));
  CHECK(rule.pending_batch_size(2) == expected_size(r, 6, 1 << 20));
}

TEST_CASE("global exact test: (1/M²)Σ_m Var_m / b ≤ c²‖∇̄‖^{2|4} vs hand computation") {
  const LeastSquares obj = make_least_squares(4, 30, 13);
  std::mt19937_64 rng(13);
  const Index M = 3;
  Harness<LeastSquares> h(obj, M);
  for (Index m = 0; m < M; ++m) {
    h.X.col(m) = random_vector(4, rng, 1.5);
    h.set_batch(m, random_batch(4, 30, rng));
  }
  // population quantities by explicit loops over all N per-sample gradients
  std::vector<Index> all(30);
  for (Index i = 0; i < 30; ++i) all[static_cast<size_t>(i)] = i;
  std::vector<std::vector<Vector>> gi;
  std::vector<Vector> gF;
  Vector gbar = Vector::Zero(4);
  for (Index m = 0; m < M; ++m) {
    gi.push_back(per_sample_gradients(obj, h.X.col(m), all));
    gF.push_back(mean_of(gi.back()));
    gbar += gF.back() / M;
  }
  const Vector u = gbar.normalized();
  double var = 0.0, ip = 0.0, orth = 0.0;
  for (Index m = 0; m < M; ++m)
    for (const Vector& g : gi[static_cast<size_t>(m)]) {
      const Vector dev = g - gF[static_cast<size_t>(m)];
      var += dev.squaredNorm() / 30.0;
      ip += std::pow(dev.dot(gbar), 2) / 30.0;
      orth += (dev - dev.dot(u) * u).squaredNorm() / 30.0;
    }
  const double gns = gbar.squaredNorm();
  const double M2 = double(M * M);

  NormTestRule norm({.b0 = 4, .scope = TestScope::global, .variance = VarianceMode::exact}, NormTest{0.2});
  norm.validate();
  norm.reset(M, M);
  norm.after_gradients(h.ctx(0, true));
  CHECK(rel_close(norm.last_ratio(0), var / (M2 * 0.04 * gns), 1e-10));
  CHECK(norm.pending_batch_size(0) == expected_size(var / (M2 * 0.04 * gns), 4, 1 << 20));
  norm.at_sync(h.ctx(0, true));
  CHECK(norm.sync_payload_elements(4) == 4 + 3 + 1);

  AugmentedInnerProductTestRule aug({.b0 = 4, .scope = TestScope::global, .variance = VarianceMode::exact},
                                    AugmentedInnerProductTest{0.2, 0.4});
  aug.reset(M, M);
  aug.after_gradients(h.ctx(0, true));
  const double r = std::max(ip / (M2 * 0.04 * gns * gns), orth / (M2 * 0.16 * gns));
  CHECK(rel_close(aug.last_ratio(2), r, 1e-10));

  // docs/batch_rules.md §Local vs global constant
  SUBCASE("at one point (H = 1) the global exact ratio is the local exact ratio ÷ M") {
    h.X.colwise() = h.X.col(0).eval();
    NormTestRule global({.b0 = 4, .scope = TestScope::global, .variance = VarianceMode::exact}, NormTest{0.2});
    NormTestRule local({.b0 = 4, .variance = VarianceMode::exact}, NormTest{0.2});
    global.reset(M, M);
    local.reset(M, M);
    global.after_gradients(h.ctx(0, true));
    local.after_gradients(h.ctx(0, true));
    CHECK(rel_close(global.last_ratio(0) * M, local.last_ratio(0), 1e-10));
  }
}

TEST_CASE("global tests run only at steps that end with a global sync") {
  const LeastSquares obj = make_least_squares(3, 40, 14);
  std::mt19937_64 rng(14);
  Harness<LeastSquares> h(obj, 2);
  h.X.colwise() = random_vector(3, rng, 2.0);
  NormTestRule rule({.b0 = 4, .scope = TestScope::global}, NormTest{0.05});
  rule.reset(2, 2);
  h.draw(rule, rng);
  rule.after_gradients(h.ctx(0, false));
  rule.after_gradients(h.ctx(1, true, SyncScope::group));
  CHECK(rule.tests_run(0) == 0);
  rule.after_gradients(h.ctx(2, true, SyncScope::global));
  CHECK(rule.tests_run(0) == 1);
  CHECK(rule.tests_run(1) == 1);
}

// ================================================================ cross-worker

// docs/batch_rules.md §cross_worker
TEST_CASE("cross-worker norm test vs hand computation (AdLoCo)") {
  const LeastSquares obj = make_least_squares(4, 60, 15);
  std::mt19937_64 rng(15);
  const Index M = 4, b = 8;
  Harness<LeastSquares> h(obj, M);
  for (Index m = 0; m < M; ++m) h.X.col(m) = random_vector(4, rng, 1.0) + Vector::Constant(4, 2.0);
  NormTestRule rule({.b0 = b, .estimator = Estimator::cross_worker}, NormTest{0.1});
  rule.validate();
  rule.reset(M, M);
  h.draw(rule, rng);
  std::vector<Vector> gm;
  for (Index m = 0; m < M; ++m) gm.push_back(h.G.col(m));
  const Vector gbar = mean_of(gm);
  double dev = 0.0;
  for (const Vector& g : gm) dev += (g - gbar).squaredNorm();
  const double sigma2 = double(b) / (M - 1) * dev;
  const double r = sigma2 / (M * 0.01 * gbar.squaredNorm());

  rule.after_gradients(h.ctx(0, false));  // not a sync step: nothing
  CHECK(rule.tests_run(0) == 0);
  rule.after_gradients(h.ctx(0, true));
  rule.at_sync(h.ctx(0, true));
  for (Index m = 0; m < M; ++m) {
    CHECK(rel_close(rule.last_ratio(m), r, 1e-10));
    CHECK(rule.batch_size(m) == expected_size(r, b, 1 << 20));
  }
  CHECK(rule.sync_payload_elements(4) == 4 + 2 + 1);

  SUBCASE("M = 1 and non-norm tests are rejected") {
    const std::string m1 = error_of([] { NormTestRule({.estimator = Estimator::cross_worker}).reset(1, 1); });
    CHECK(contains(m1, "M (with estimator = cross_worker) = 1"));
    CHECK(contains(m1, ">= 2"));
    const std::string ip = error_of([] { InnerProductTestRule({.estimator = Estimator::cross_worker}).validate(); });
    CHECK(contains(ip, "estimator = cross_worker"));
    CHECK(contains(ip, "inner_product"));
    CHECK_THROWS_WITH_AS(AugmentedInnerProductTestRule({.estimator = Estimator::cross_worker}).validate(),
                         doctest::Contains("estimator"), ConfigError);
  }
}

// ================================================================ harmonization, apply_at, η target

namespace {
/// Two workers at different points with different fixed batches: their local tests ask for different sizes.
template <class Rule>
void diverging_step(Harness<LeastSquares>& h, Rule& rule, SyncScope scope) {
  h.set_batch(0, {0, 1, 2, 3, 4, 5});
  h.set_batch(1, {6, 7, 8, 9, 10, 11});
  h.set_batch(2, {12, 13, 14, 15, 16, 17});
  rule.after_gradients(h.ctx(0, true, scope));
}
}  // namespace

// docs/batch_rules.md §Harmonization; docs/decisions.md §B2
TEST_CASE("harmonization at a global sync: none, max, mean") {
  const LeastSquares obj = make_least_squares(3, 40, 16);
  std::mt19937_64 rng(16);
  Harness<LeastSquares> h(obj, 3);
  for (Index m = 0; m < 3; ++m) h.X.col(m) = random_vector(3, rng, 2.0);

  auto pendings = [&](Harmonize how, SyncScope scope, NormTestRule* out = nullptr) {
    NormTestRule rule({.b0 = 6, .harmonize = how}, NormTest{0.05});
    rule.reset(3, 3);
    diverging_step(h, rule, scope);
    std::vector<Index> before;
    for (Index m = 0; m < 3; ++m) before.push_back(rule.pending_batch_size(m));
    rule.at_sync(h.ctx(0, true, scope));
    if (out) *out = rule;
    return before;
  };
  NormTestRule none, max, mean, group;
  const auto before = pendings(Harmonize::none, SyncScope::global, &none);
  REQUIRE(*std::max_element(before.begin(), before.end()) != *std::min_element(before.begin(), before.end()));
  pendings(Harmonize::max, SyncScope::global, &max);
  pendings(Harmonize::mean, SyncScope::global, &mean);
  pendings(Harmonize::max, SyncScope::group, &group);
  const Index hi = *std::max_element(before.begin(), before.end());
  const Index avg = static_cast<Index>(std::ceil(double(before[0] + before[1] + before[2]) / 3.0));
  for (Index m = 0; m < 3; ++m) {
    CHECK(none.batch_size(m) == before[static_cast<size_t>(m)]);
    CHECK(max.batch_size(m) == hi);
    CHECK(mean.batch_size(m) == avg);
    CHECK(group.batch_size(m) == before[static_cast<size_t>(m)]);  // no harmonization within a group sync
  }
  CHECK(none.sync_payload_elements(3) == 0);
  CHECK(max.sync_payload_elements(3) == 1);
  CHECK(group.sync_payload_elements(3) == 0);
}

// docs/batch_rules.md §Apply; docs/decisions.md §B3
TEST_CASE("apply_at: next_step applies after the test, next_round at the sync") {
  const LeastSquares obj = make_least_squares(3, 40, 17);
  std::mt19937_64 rng(17);
  Harness<LeastSquares> h(obj, 3);
  for (Index m = 0; m < 3; ++m) h.X.col(m) = random_vector(3, rng, 2.0);
  NormTestRule step_rule({.b0 = 6, .apply_at = ApplyAt::next_step}, NormTest{0.05});
  NormTestRule round_rule({.b0 = 6, .apply_at = ApplyAt::next_round}, NormTest{0.05});
  step_rule.reset(3, 3);
  round_rule.reset(3, 3);
  diverging_step(h, step_rule, SyncScope::global);
  diverging_step(h, round_rule, SyncScope::global);
  Index hi = 0;
  for (Index m = 0; m < 3; ++m) {
    REQUIRE(step_rule.pending_batch_size(m) > 6);
    CHECK(step_rule.batch_size(m) == step_rule.pending_batch_size(m));
    CHECK(round_rule.batch_size(m) == 6);
    CHECK(round_rule.pending_batch_size(m) == step_rule.pending_batch_size(m));
    hi = std::max(hi, step_rule.pending_batch_size(m));
  }
  step_rule.at_sync(h.ctx(0, true));
  round_rule.at_sync(h.ctx(0, true));
  for (Index m = 0; m < 3; ++m) {
    CHECK(step_rule.batch_size(m) == hi);  // harmonization still happens at the sync
    CHECK(round_rule.batch_size(m) == hi);
  }
}

// docs/batch_rules.md §Local vs global constant; docs/decisions.md §B11
TEST_CASE("eta_is_global_target: a local test with √M·η") {
  const LeastSquares obj = make_least_squares(3, 40, 18);
  std::mt19937_64 rng(18);
  Harness<LeastSquares> h(obj, 3);
  for (Index m = 0; m < 3; ++m) h.X.col(m) = random_vector(3, rng, 2.0);
  NormTestRule target({.b0 = 6, .eta_is_global_target = true}, NormTest{0.02});
  NormTestRule scaled({.b0 = 6}, NormTest{0.02 * std::sqrt(3.0)});
  NormTestRule plain({.b0 = 6}, NormTest{0.02});
  for (auto* r : {&target, &scaled, &plain}) {
    r->reset(3, 3);
    diverging_step(h, *r, SyncScope::global);
  }
  for (Index m = 0; m < 3; ++m) {
    CHECK(rel_close(target.last_ratio(m), scaled.last_ratio(m), 1e-12));
    CHECK(rel_close(target.last_ratio(m), plain.last_ratio(m) / 3.0, 1e-12));
    CHECK(target.pending_batch_size(m) == expected_size(plain.last_ratio(m) / 3.0, 6, 1 << 20));
  }
}

// docs/batch_rules.md §When the test runs; docs/decisions.md §B1
TEST_CASE("when the test runs: every_step with test_interval, sync_steps") {
  const LeastSquares obj = make_least_squares(3, 40, 19);
  std::mt19937_64 rng(19);
  Harness<LeastSquares> h(obj, 1);
  h.X.col(0) = random_vector(3, rng, 2.0);
  auto count_tests = [&](AdaptiveBatchOptions o) {
    NormTestRule rule(o, NormTest{0.5});
    rule.reset(1, 1);
    std::vector<Index> tested;
    for (Index k = 0; k < 12; ++k) {
      const Index before = rule.tests_run(0);
      h.step(rule, k, (k + 1) % 3 == 0, rng, 0.0);
      if (rule.tests_run(0) > before) tested.push_back(k);
    }
    return tested;
  };
  CHECK(count_tests({.b0 = 4}) == std::vector<Index>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  CHECK(count_tests({.b0 = 4, .test_interval = 4}) == std::vector<Index>{3, 7, 11});
  CHECK(count_tests({.b0 = 4, .when = TestWhen::sync_steps}) == std::vector<Index>{2, 5, 8, 11});
  CHECK(count_tests({.b0 = 4, .when = TestWhen::sync_steps, .test_interval = 2}) == std::vector<Index>{5, 11});
}

namespace {
/// Checks A4 (docs/theory.md §A4) at every step and worker of a driver run: b_k^m ≥ σ²(x_k^m)/(η²‖∇F(x_k^m)‖²),
/// with σ² and ∇F from an explicit loop over all samples. on_step reports the sizes step k used (this_step
/// changes no size after the draw) and the points after it; x_k^m is the point kept from the previous call.
struct A4Observer {
  const LeastSquares& obj;
  double eta;
  Index b_max;
  Matrix prev;  // x_k^m
  std::vector<Index> last, sizes;
  Index checks = 0, capped = 0, failures = 0, not_minimal = 0, shrunk = 0;

  void on_step(const RunState& s) {
    for (Index m = 0; m < prev.cols(); ++m) {
      std::vector<Index> all(static_cast<size_t>(obj.num_samples()));
      for (Index i = 0; i < obj.num_samples(); ++i) all[static_cast<size_t>(i)] = i;
      const std::vector<Vector> gi = per_sample_gradients(obj, prev.col(m), all);
      const Vector grad = mean_of(gi);
      double var = 0.0;
      for (const Vector& g : gi) var += (g - grad).squaredNorm();
      var /= static_cast<double>(gi.size());
      const double required = var / (eta * eta * grad.squaredNorm());
      const Index b = s.batch_sizes[static_cast<size_t>(m)];
      const Index before = last.empty() ? 2 : last[static_cast<size_t>(m)];
      ++checks;
      if (b < before) ++shrunk;
      if (b >= b_max && required > static_cast<double>(b_max)) {
        ++capped;
      } else if (static_cast<double>(b) < required * (1.0 - 1e-12)) {
        ++failures;
      }
      // the smallest size that passes, unless the size was already larger (never shrink)
      if (b != before && static_cast<double>(b) > std::ceil(required * (1.0 + 1e-12)) && b < b_max) ++not_minimal;
      sizes.push_back(b);
    }
    last.assign(s.batch_sizes.begin(), s.batch_sizes.end());
    prev = s.X;
  }
  void on_sync(const RunState& s) { prev = s.X; }  // the averaged point is x_k^m of the next step
};

using ThisStepMethod = LocalMethod<SGD, ConstantSync, NormTestRule>;

RunResult run_this_step(const LeastSquares& obj, A4Observer& obs, int threads, AdaptiveBatchOptions o,
                        double eta = 0.5) {
  ThisStepMethod method(RunOptions{.workers = 3, .max_steps = 30, .threads = threads}, SGD{}, ConstantSync{4},
                        NormTestRule(o, NormTest{eta}), ConstantLr{.lr = 0.05}, IidSampler(42));
  Vector x0 = Vector::Constant(obj.dim(), 1.5);
  obs.prev = Matrix(obj.dim(), 3);
  for (Index m = 0; m < 3; ++m) obs.prev.col(m) = x0;
  return method.run(obj, x0, obs);
}
}  // namespace

// docs/theory.md §A4; docs/batch_rules.md §Apply
TEST_CASE("apply_at: this_step sizes every step before its draw, so A4 holds at every step") {
  const LeastSquares obj = make_least_squares(4, 60, 21);
  // harmonize = none: every size is the worker's own requirement (max would raise it to the others')
  const AdaptiveBatchOptions o{
      .b_max = 1 << 16, .variance = VarianceMode::exact, .harmonize = Harmonize::none, .apply_at = ApplyAt::this_step};
  A4Observer one{obj, 0.5, o.b_max, {}, {}, {}};
  const RunResult r1 = run_this_step(obj, one, 1, o);
  CHECK(one.checks == 3 * 30);
  CHECK(one.failures == 0);
  CHECK(one.capped == 0);
  CHECK(one.shrunk == 0);
  CHECK(one.not_minimal == 0);
  CHECK(*std::max_element(one.sizes.begin(), one.sizes.end()) > 2);  // the test did raise the sizes

  SUBCASE("identical results with 1 and 2 threads") {
    A4Observer two{obj, 0.5, o.b_max, {}, {}, {}};
    const RunResult r2 = run_this_step(obj, two, 2, o);
    CHECK(two.sizes == one.sizes);
    CHECK(r2.metrics.samples == r1.metrics.samples);
    CHECK(std::memcmp(r1.x.data(), r2.x.data(), sizeof(double) * static_cast<size_t>(r1.x.size())) == 0);
    AdaptiveBatchOptions global = o;  // the pooled exact test, at the steps that end with a global sync
    global.scope = TestScope::global;
    A4Observer g1{obj, 0.5, o.b_max, {}, {}, {}}, g2{obj, 0.5, o.b_max, {}, {}, {}};
    const RunResult q1 = run_this_step(obj, g1, 1, global), q2 = run_this_step(obj, g2, 2, global);
    CHECK(g1.sizes == g2.sizes);
    CHECK(*std::max_element(g1.sizes.begin(), g1.sizes.end()) > 2);
    CHECK(std::memcmp(q1.x.data(), q2.x.data(), sizeof(double) * static_cast<size_t>(q1.x.size())) == 0);
  }
  SUBCASE("capped at b_max: A4 then fails only where the required size exceeds the cap") {
    AdaptiveBatchOptions capped = o;
    capped.b_max = 8;
    capped.b_min = 2;
    A4Observer obs{obj, 0.1, capped.b_max, {}, {}, {}};
    run_this_step(obj, obs, 1, capped, 0.1);
    CHECK(obs.capped > 0);
    CHECK(obs.failures == 0);
    CHECK(*std::max_element(obs.sizes.begin(), obs.sizes.end()) == 8);
  }
  SUBCASE("with harmonize = max and test_interval = 2 sizes still only grow") {
    AdaptiveBatchOptions every2 = o;
    every2.test_interval = 2;
    every2.harmonize = Harmonize::max;
    A4Observer obs{obj, 0.5, o.b_max, {}, {}, {}};
    run_this_step(obj, obs, 1, every2);
    CHECK(obs.shrunk == 0);
  }
}

TEST_CASE("apply_at: this_step on the rule alone sets the size before the draw, after_gradients keeps it") {
  const LeastSquares obj = make_least_squares(3, 40, 22);
  std::mt19937_64 rng(22);
  Harness<LeastSquares> h(obj, 2);
  for (Index m = 0; m < 2; ++m) h.X.col(m) = random_vector(3, rng, 2.0);
  NormTestRule exact_next({.variance = VarianceMode::exact, .apply_at = ApplyAt::next_step}, NormTest{0.05});
  NormTestRule exact_this({.variance = VarianceMode::exact, .apply_at = ApplyAt::this_step}, NormTest{0.05});
  exact_next.reset(2, 2);
  exact_this.reset(2, 2);
  exact_next.before_gradients(h.ctx(0, false));  // no-op for other apply_at values
  CHECK(exact_next.tests_run() == 0);
  exact_this.before_gradients(h.ctx(0, false));
  h.draw(exact_this, rng);
  exact_next.after_gradients(h.ctx(0, false));  // the same points: the same size, one step later
  for (Index m = 0; m < 2; ++m) {
    REQUIRE(exact_this.batch_size(m) > 2);
    CHECK(exact_this.batch_size(m) == exact_next.batch_size(m));
    CHECK(static_cast<Index>(h.batches[static_cast<size_t>(m)].size()) == exact_this.batch_size(m));
    CHECK(exact_this.last_ratio(m) == exact_next.last_ratio(m));
  }
  const Index tests = exact_this.tests_run();
  exact_this.after_gradients(h.ctx(0, false));
  CHECK(exact_this.tests_run() == tests);
  CHECK(to_string(ApplyAt::this_step) == "this_step");
}

TEST_CASE("apply_at: this_step needs variance = exact") {
  const std::string msg = error_of([] { NormTestRule({.apply_at = ApplyAt::this_step}).validate(); });
  CHECK(contains(msg, "apply_at = this_step"));
  CHECK(contains(msg, "next_round or next_step"));
  CHECK(error_of([] { NormTestRule({.variance = VarianceMode::exact, .apply_at = ApplyAt::this_step}).validate(); }) ==
        "no error");
  CHECK(error_of([] {
          NormTestRule({.scope = TestScope::global, .variance = VarianceMode::exact, .apply_at = ApplyAt::this_step})
              .validate();
        }) == "no error");
}

// ================================================================ determinism

TEST_CASE("pending sizes are bitwise identical with 1, 2 and 4 threads") {
  const LeastSquares obj = make_least_squares(6, 100, 20);
  auto run = [&](int threads, AdaptiveBatchOptions o) {
    std::mt19937_64 rng(20);
    Harness<LeastSquares> h(obj, 4, threads);
    for (Index m = 0; m < 4; ++m) h.X.col(m) = random_vector(6, rng, 2.0);
    AugmentedInnerProductTestRule rule(o, AugmentedInnerProductTest{0.3, 0.6});
    rule.reset(4, 4);
    std::vector<double> trace;
    for (Index k = 0; k < 12; ++k) {
      h.step(rule, k, (k + 1) % 3 == 0, rng, 0.05);
      for (Index m = 0; m < 4; ++m) {
        trace.push_back(static_cast<double>(rule.pending_batch_size(m)));
        trace.push_back(rule.last_ratio(m));
      }
    }
    return trace;
  };
  for (AdaptiveBatchOptions o :
       {AdaptiveBatchOptions{.b0 = 4, .harmonize = Harmonize::none},
        AdaptiveBatchOptions{.b0 = 4, .b_min = 4, .estimator = Estimator::micro_batch_means, .micro_batches = 3},
        AdaptiveBatchOptions{.b0 = 4, .variance = VarianceMode::exact},
        AdaptiveBatchOptions{.b0 = 4, .scope = TestScope::global},
        AdaptiveBatchOptions{.b0 = 4, .scope = TestScope::global, .variance = VarianceMode::exact}}) {
    const auto one = run(1, o);
    const auto two = run(2, o);
    const auto four = run(4, o);
    // NaN ≠ NaN: compare the bit patterns
    auto same = [](const std::vector<double>& a, const std::vector<double>& b) {
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i)
        if (std::memcmp(&a[i], &b[i], sizeof(double)) != 0) return false;
      return true;
    };
    CHECK(same(one, two));
    CHECK(same(one, four));
  }
}

// ================================================================ validation

TEST_CASE("validate(): every bad option names the parameter, the value and the range") {
  auto msg = [](AdaptiveBatchOptions o) { return error_of([&] { NormTestRule(o).validate(); }); };
  CHECK(error_of([] { NormTestRule().validate(); }) == "no error");
  CHECK(error_of([] { AugmentedInnerProductTestRule().validate(); }) == "no error");

  const std::string b_min = msg({.b_min = 1});
  CHECK(contains(b_min, "b_min = 1"));
  CHECK(contains(b_min, ">= 2"));
  const std::string b_max = msg({.b_min = 8, .b_max = 4});
  CHECK(contains(b_max, "b_max = 4"));
  CHECK(contains(b_max, "[b_min = 8, 2^53]"));
  const std::string b0 = msg({.b0 = 1, .b_min = 2, .b_max = 10});
  CHECK(contains(b0, "b0 = 1"));
  CHECK(contains(b0, "[2, 10]"));
  CHECK(contains(msg({.b0 = 11, .b_max = 10}), "b0 = 11"));
  const std::string mb = msg({.b_min = 3, .estimator = Estimator::micro_batch_means, .micro_batches = 4});
  CHECK(contains(mb, "micro_batches = 4"));
  CHECK(contains(mb, "[2, b_min = 3]"));
  CHECK(contains(msg({.estimator = Estimator::micro_batch_means, .micro_batches = 1}), "micro_batches = 1"));
  CHECK(msg({.b_min = 2, .micro_batches = 4}) == "no error");  // only checked for micro_batch_means
  const std::string ti = msg({.test_interval = 0});
  CHECK(contains(ti, "test_interval = 0"));
  CHECK(contains(ti, ">= 1"));
  const std::string tiny = msg({.tiny_grad_norm_sq = -1.0});
  CHECK(contains(tiny, "tiny_grad_norm_sq = -1"));
  CHECK(contains(tiny, ">= 0"));
  const std::string exact = msg({.variance = VarianceMode::exact, .estimator = Estimator::cross_worker});
  CHECK(contains(exact, "estimator = cross_worker"));
  CHECK(contains(exact, "per_sample when variance = exact"));
  const std::string glob = msg({.b_min = 4, .scope = TestScope::global, .estimator = Estimator::micro_batch_means});
  CHECK(contains(glob, "estimator = micro_batch_means"));

  const std::string eta = error_of([] { NormTestRule({}, NormTest{0.0}).validate(); });
  CHECK(contains(eta, "eta = 0"));
  CHECK(contains(eta, "> 0"));
  CHECK(contains(error_of([] { NormTestRule({}, NormTest{std::nan("")}).validate(); }), "eta = nan"));
  CHECK(contains(error_of([] { InnerProductTestRule({}, InnerProductTest{-1.0}).validate(); }), "theta = -1"));
  CHECK(contains(error_of([] {
                   AugmentedInnerProductTestRule({}, AugmentedInnerProductTest{0.1, 0.0}).validate();
                 }),
                 "nu = 0"));
  CHECK(contains(error_of([] {
                   AugmentedInnerProductTestRule({}, AugmentedInnerProductTest{INFINITY, 0.1}).validate();
                 }),
                 "theta = inf"));
  CHECK_THROWS_WITH_AS(NormTestRule().reset(4, 2), doctest::Contains("M = 2"), ConfigError);
}

TEST_CASE("initial sizes and accessors before any test") {
  NormTestRule rule({.b_min = 5});
  CHECK(rule.batch_size(0) == 5);  // b0 = 0: b_min
  rule.reset(2, 2);
  CHECK(rule.batch_size(1) == 5);
  CHECK(rule.pending_batch_size(1) == 5);
  CHECK(std::isnan(rule.last_ratio(0)));
  CHECK(rule.tests_run() == 0);
  CHECK(rule.max_batch_size() == Index{1} << 20);
  NormTestRule b0({.b0 = 9, .b_min = 5, .b_max = 64});
  b0.reset(1, 1);
  CHECK(b0.batch_size(0) == 9);
  CHECK(b0.max_batch_size() == 64);
}
