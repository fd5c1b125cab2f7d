// Test problems with known constants (lgm/problems/): every loss is recomputed here by a naive scalar loop,
// every gradient by central differences, every closed-form moment by lgm::sample_moments_by_loop, every L and μ
// from the eigenvalues of a finite-difference Hessian, and every x* by plain gradient descent.
//
// Eigen's runtime allocation check, for the "loss, gradient and moments do not allocate" checks. It must be
// defined before Eigen is first included; in the other test files it is absent, where Eigen's check is a no-op.
#define EIGEN_RUNTIME_NO_MALLOC

#include <doctest/doctest.h>

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <lgm/core/concepts.hpp>
#include <lgm/core/moments.hpp>
#include <lgm/problems/problems.hpp>
#include <limits>
#include <numbers>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using lgm::Index;
using lgm::IndexSpan;
using lgm::Matrix;
using lgm::Vector;

static_assert(lgm::HasClosedFormMoments<lgm::Quadratic> && lgm::HasSmoothness<lgm::Quadratic> &&
              lgm::HasStrongConvexity<lgm::Quadratic> && lgm::HasKnownOptimum<lgm::Quadratic>);
static_assert(lgm::HasClosedFormMoments<lgm::LeastSquares> && lgm::HasSmoothness<lgm::LeastSquares> &&
              lgm::HasStrongConvexity<lgm::LeastSquares> && lgm::HasKnownOptimum<lgm::LeastSquares>);
static_assert(lgm::HasClosedFormMoments<lgm::Logistic> && lgm::HasSmoothness<lgm::Logistic> &&
              lgm::HasStrongConvexity<lgm::Logistic> && lgm::HasKnownOptimum<lgm::Logistic>);
// Softmax's L is only an upper bound: it must not pass for an exact one.
static_assert(lgm::HasClosedFormMoments<lgm::Softmax> && !lgm::HasSmoothness<lgm::Softmax> &&
              lgm::HasStrongConvexity<lgm::Softmax> && !lgm::HasKnownOptimum<lgm::Softmax>);
static_assert(lgm::HasClosedFormMoments<lgm::NonconvexLogistic> && lgm::HasSmoothness<lgm::NonconvexLogistic> &&
              !lgm::HasStrongConvexity<lgm::NonconvexLogistic> && !lgm::HasKnownOptimum<lgm::NonconvexLogistic>);
static_assert(lgm::HasClosedFormMoments<lgm::Mlp> && !lgm::HasSmoothness<lgm::Mlp> &&
              !lgm::HasStrongConvexity<lgm::Mlp> && !lgm::HasKnownOptimum<lgm::Mlp>);

// ---------------------------------------------------------------- helpers

std::vector<Index> all_indices(Index n) {
  std::vector<Index> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), Index{0});
  return v;
}

Vector random_vector(Index n, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> n01;
  Vector v(n);
  for (Index j = 0; j < n; ++j) v[j] = scale * n01(rng);
  return v;
}

/// b indices drawn with replacement (duplicates are allowed, as the i.i.d. sampler produces them).
std::vector<Index> random_batch(Index n, Index b, std::mt19937_64& rng) {
  std::uniform_int_distribution<Index> pick(0, n - 1);
  std::vector<Index> batch(static_cast<std::size_t>(b));
  for (Index& i : batch) i = pick(rng);
  return batch;
}

double rel_diff(double a, double b) {
  const double s = std::max({std::abs(a), std::abs(b), 1e-300});
  return std::abs(a - b) / s;
}

double rel_diff(const Vector& a, const Vector& b) {
  const double s = std::max({a.norm(), b.norm(), 1e-300});
  return (a - b).norm() / s;
}

/// Central differences of the mean loss over `batch`, step h·max(1, |x_j|).
template <class Obj>
Vector fd_gradient(const Obj& obj, const Vector& x, IndexSpan batch, double h = 1e-5) {
  auto ws = obj.make_workspace();
  Vector g(x.size()), xp = x, xm = x;
  for (Index j = 0; j < x.size(); ++j) {
    const double step = h * std::max(1.0, std::abs(x[j]));
    xp[j] = x[j] + step;
    xm[j] = x[j] - step;
    g[j] = (obj.loss(xp, batch, ws) - obj.loss(xm, batch, ws)) / (2.0 * step);
    xp[j] = xm[j] = x[j];
  }
  return g;
}

/// Hessian of F by central differences of the full gradient, symmetrized.
template <class Obj>
Matrix fd_hessian(const Obj& obj, const Vector& x, double h = 1e-4) {
  const auto all = all_indices(obj.num_samples());
  auto ws = obj.make_workspace();
  const Index d = obj.dim();
  Matrix hess(d, d);
  Vector gp(d), gm(d), xp = x, xm = x;
  for (Index j = 0; j < d; ++j) {
    xp[j] = x[j] + h;
    xm[j] = x[j] - h;
    obj.gradient(xp, all, gp, ws);
    obj.gradient(xm, all, gm, ws);
    hess.col(j) = (gp - gm) / (2.0 * h);
    xp[j] = xm[j] = x[j];
  }
  return 0.5 * (hess + hess.transpose());
}

Vector eigenvalues(const Matrix& sym) { return Eigen::SelfAdjointEigenSolver<Matrix>(sym).eigenvalues(); }

/// Deterministic full-batch gradient descent x ← x − step ∇F(x).
template <class Obj>
Vector gradient_descent(const Obj& obj, Vector x, double step, int iterations) {
  const auto all = all_indices(obj.num_samples());
  auto ws = obj.make_workspace();
  Vector g(x.size());
  for (int k = 0; k < iterations; ++k) {
    obj.gradient(x, all, g, ws);
    x -= step * g;
  }
  return x;
}

/// The Objective contract at x: gradient and sample_gradient against central differences (1e-6), the mean of
/// sample gradients against gradient (1e-12), returned losses against loss(), closed-form moments against the
/// per-sample loop (1e-10), and no Eigen heap allocation in loss, gradient, sample_gradient, sample_moments.
template <class Obj>
void check_objective(const Obj& obj, const Vector& x, std::mt19937_64& rng, Index b = 9) {
  const Index d = obj.dim();
  REQUIRE(x.size() == d);
  auto ws = obj.make_workspace();
  const auto batch = random_batch(obj.num_samples(), b, rng);
  const Vector v = random_vector(d, rng);
  Vector g(d), gi(d), scratch(d), mean = Vector::Zero(d);

  Eigen::internal::set_is_malloc_allowed(false);
  const double f_batch = obj.loss(x, batch, ws);
  const double f_grad = obj.gradient(x, batch, g, ws);
  const double f_sample = obj.sample_gradient(x, batch[0], gi, ws);
  const lgm::SampleMoments closed = obj.sample_moments(x, batch, v, ws);
  Eigen::internal::set_is_malloc_allowed(true);

  CHECK(rel_diff(f_grad, f_batch) <= 1e-14);
  CHECK(rel_diff(g, fd_gradient(obj, x, batch)) <= 1e-6);
  const std::vector<Index> one{batch[0]};
  CHECK(rel_diff(f_sample, obj.loss(x, one, ws)) <= 1e-14);
  CHECK(rel_diff(gi, fd_gradient(obj, x, one)) <= 1e-6);

  for (Index i : batch) {
    obj.sample_gradient(x, i, gi, ws);
    mean += gi / static_cast<double>(batch.size());
  }
  CHECK(rel_diff(mean, g) <= 1e-12);

  const lgm::SampleMoments loop = lgm::sample_moments_by_loop(obj, x, batch, v, ws, scratch);
  CHECK(closed.count == b);
  CHECK(loop.count == b);
  CHECK(rel_diff(closed.sum_sq_norm, loop.sum_sq_norm) <= 1e-10);
  CHECK(rel_diff(closed.sum_proj, loop.sum_proj) <= 1e-10);
  CHECK(rel_diff(closed.sum_proj_sq, loop.sum_proj_sq) <= 1e-10);
  // the dispatcher of core/moments.hpp takes the closed form
  const lgm::SampleMoments dispatched = lgm::sample_moments(obj, x, batch, v, ws, scratch);
  CHECK(dispatched.sum_sq_norm == closed.sum_sq_norm);
}

/// Mean of per-sample losses computed by `f(i)`, over all samples.
template <class F>
double naive_mean(Index n, F f) {
  double s = 0.0;
  for (Index i = 0; i < n; ++i) s += f(i);
  return s / static_cast<double>(n);
}

template <class Obj>
double total_loss(const Obj& obj, const Vector& x) {
  auto ws = obj.make_workspace();
  return obj.loss(x, all_indices(obj.num_samples()), ws);
}

template <class Obj>
Vector total_gradient(const Obj& obj, const Vector& x) {
  auto ws = obj.make_workspace();
  Vector g(obj.dim());
  obj.gradient(x, all_indices(obj.num_samples()), g, ws);
  return g;
}

Matrix small_features(Index d, Index n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n01;
  Matrix a(d, n);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < d; ++j) a(j, i) = n01(rng);
  return a;
}

// ---------------------------------------------------------------- data generators

TEST_CASE("DataRng: mt19937_64 with a Box-Muller transform written out here; generators are seeded") {
  lgm::detail::DataRng rng(42);
  std::mt19937_64 ref(42);
  for (int k = 0; k < 50; ++k) {
    const double u1 = 1.0 - static_cast<double>(ref() >> 11) * std::pow(2.0, -53);
    const double u2 = static_cast<double>(ref() >> 11) * std::pow(2.0, -53);
    const double r = std::sqrt(-2.0 * std::log(u1));
    CHECK(rng.normal() == r * std::cos(2.0 * std::numbers::pi * u2));
    CHECK(rng.normal() == r * std::sin(2.0 * std::numbers::pi * u2));
  }
  for (int k = 0; k < 1000; ++k) {
    const Index j = rng.below(7);
    CHECK(j >= 0);
    CHECK(j < 7);
  }

  // the same seed gives the same data, another seed other data
  const lgm::ClassificationData a = lgm::make_gaussian_mixture({.N = 50, .d = 4, .classes = 3, .seed = 9});
  const lgm::ClassificationData b = lgm::make_gaussian_mixture({.N = 50, .d = 4, .classes = 3, .seed = 9});
  const lgm::ClassificationData c = lgm::make_gaussian_mixture({.N = 50, .d = 4, .classes = 3, .seed = 10});
  CHECK(a.features == b.features);
  CHECK(a.labels == b.labels);
  CHECK(a.features != c.features);
  CHECK(lgm::LeastSquares::synthetic({.seed = 3}).features() == lgm::LeastSquares::synthetic({.seed = 3}).features());
  CHECK(lgm::Quadratic::synthetic({.seed = 3}).hessian() == lgm::Quadratic::synthetic({.seed = 3}).hessian());

  // labels of the binary teacher are ±1, of the mixture in [0, C)
  const lgm::BinaryData t = lgm::make_binary_teacher({.N = 200, .d = 3, .signal = 3.0, .seed = 1});
  for (Index i = 0; i < 200; ++i) CHECK(std::abs(t.labels[i]) == 1.0);
  for (Index y : a.labels) CHECK((y >= 0 && y < 3));

  // random_orthogonal is orthogonal
  lgm::detail::DataRng r2(5);
  const Matrix q = lgm::detail::random_orthogonal(6, r2);
  CHECK((q.transpose() * q - Matrix::Identity(6, 6)).norm() <= 1e-13);
}

// ---------------------------------------------------------------- Quadratic

TEST_CASE("Quadratic: loss, gradients, moments, constants, optimum, variance") {
  const lgm::QuadraticOptions opt{.d = 6, .mu = 0.2, .L = 3.0, .N = 40, .noise = 0.7, .seed = 1};
  const lgm::Quadratic q = lgm::Quadratic::synthetic(opt);
  const Index d = q.dim(), n = q.num_samples();
  REQUIRE(d == 6);
  REQUIRE(n == 40);
  std::mt19937_64 rng(11);

  // the noise is centered and scaled so that σ² = noise² exactly
  for (Index j = 0; j < d; ++j) CHECK(std::abs(q.noise().row(j).sum()) <= 1e-13);
  double sq = 0.0;
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < d; ++j) sq += q.noise()(j, i) * q.noise()(j, i);
  CHECK(rel_diff(q.variance(), sq / static_cast<double>(n)) <= 1e-14);
  CHECK(rel_diff(q.variance(), 0.49) <= 1e-13);

  // spectrum: log-uniform from μ to L, both ends included
  for (Index j = 0; j < d; ++j) {
    const double expected = 0.2 * std::pow(3.0 / 0.2, static_cast<double>(j) / 5.0);
    CHECK(rel_diff(q.spectrum()[j], expected) <= 1e-12);
  }
  CHECK(rel_diff(q.smoothness(), 3.0) <= 1e-13);
  CHECK(rel_diff(q.strong_convexity(), 0.2) <= 1e-13);
  CHECK(q.optimal_value() == 0.0);

  // loss by a naive double loop
  const Vector x = random_vector(d, rng);
  const Vector& xs = q.optimum();
  const double naive = naive_mean(n, [&](Index i) {
    double f = 0.0;
    for (Index j = 0; j < d; ++j) {
      for (Index k = 0; k < d; ++k) f += 0.5 * (x[j] - xs[j]) * q.hessian()(j, k) * (x[k] - xs[k]);
      f += q.noise()(j, i) * (x[j] - xs[j]);
    }
    return f;
  });
  CHECK(rel_diff(total_loss(q, x), naive) <= 1e-12);
  CHECK(std::abs(total_loss(q, xs)) <= 1e-15);

  for (int rep = 0; rep < 3; ++rep) check_objective(q, random_vector(d, rng, 2.0), rng);

  // L and μ from the eigenvalues of a finite-difference Hessian
  const Vector ev = eigenvalues(fd_hessian(q, random_vector(d, rng)));
  CHECK(rel_diff(ev[d - 1], q.smoothness()) <= 1e-6);
  CHECK(rel_diff(ev[0], q.strong_convexity()) <= 1e-6);

  // full-batch gradient descent at 1/L reaches x*
  const Vector x_gd = gradient_descent(q, Vector::Zero(d), 1.0 / q.smoothness(), 400);
  CHECK((x_gd - xs).norm() <= 1e-8);

  // population σ²(x) of core/moments.hpp is the closed form at every x
  const auto all = all_indices(n);
  auto ws = q.make_workspace();
  Vector full(d), scratch(d);
  for (int rep = 0; rep < 3; ++rep) {
    const lgm::PopulationMoments pm = lgm::population_moments(q, random_vector(d, rng, 3.0), all, ws, full, scratch);
    CHECK(rel_diff(pm.variance, q.variance()) <= 1e-10);
  }
}

TEST_CASE("Quadratic: the constructor centers the noise and reads L, mu from any PSD matrix") {
  Matrix a(2, 2);
  a << 2.0, 1.0, 1.0, 2.0;  // eigenvalues 1 and 3
  Matrix noise(2, 3);
  noise << 1.0, 2.0, 3.0, 0.0, 0.0, 3.0;  // row means 2 and 1
  const lgm::Quadratic q(a, Vector::Constant(2, 1.0), noise);
  CHECK(rel_diff(q.smoothness(), 3.0) <= 1e-15);
  CHECK(rel_diff(q.strong_convexity(), 1.0) <= 1e-15);
  CHECK(q.noise()(0, 0) == -1.0);
  CHECK(q.noise()(1, 2) == 2.0);
  // σ² = (1/3)[(1 + 1) + (0 + 1) + (1 + 4)] = 8/3
  CHECK(rel_diff(q.variance(), 8.0 / 3.0) <= 1e-15);

  // a singular A gives μ = 0 exactly
  Matrix s(2, 2);
  s << 1.0, 1.0, 1.0, 1.0;
  const lgm::Quadratic qs(s, Vector::Zero(2), Matrix::Zero(2, 1));
  CHECK(qs.strong_convexity() == 0.0);
  CHECK(rel_diff(qs.smoothness(), 2.0) <= 1e-15);
  CHECK(qs.variance() == 0.0);
}

// ---------------------------------------------------------------- LeastSquares

TEST_CASE("LeastSquares: loss, gradients, moments, constants and optimum (ridge)") {
  const lgm::LeastSquares ls = lgm::LeastSquares::synthetic(
      {.N = 120, .d = 5, .cov_max = 2.0, .condition = 4.0, .noise = 0.3, .lambda = 0.05, .seed = 2});
  const Index d = ls.dim(), n = ls.num_samples();
  std::mt19937_64 rng(12);
  const Vector x = random_vector(d, rng);
  const double naive = naive_mean(n, [&](Index i) {
    double z = 0.0, reg = 0.0;
    for (Index j = 0; j < d; ++j) z += ls.features()(j, i) * x[j];
    for (Index j = 0; j < d; ++j) reg += 0.025 * x[j] * x[j];
    return 0.5 * (z - ls.targets()[i]) * (z - ls.targets()[i]) + reg;
  });
  CHECK(rel_diff(total_loss(ls, x), naive) <= 1e-12);
  for (int rep = 0; rep < 3; ++rep) check_objective(ls, random_vector(d, rng), rng);

  const Vector ev = eigenvalues(fd_hessian(ls, x));
  CHECK(rel_diff(ev[d - 1], ls.smoothness()) <= 1e-6);
  CHECK(rel_diff(ev[0], ls.strong_convexity()) <= 1e-6);

  // x* solves the normal equations (1/N) Σ a_i(a_iᵀx − y_i) + λx = 0, written out here
  Vector normal = 0.05 * ls.optimum();
  for (Index i = 0; i < n; ++i)
    normal +=
        ls.features().col(i) * (ls.features().col(i).dot(ls.optimum()) - ls.targets()[i]) / static_cast<double>(n);
  CHECK(normal.norm() <= 1e-13);
  CHECK(rel_diff(ls.optimal_value(), total_loss(ls, ls.optimum())) <= 1e-15);

  const Vector x_gd = gradient_descent(ls, Vector::Zero(d), 1.0 / ls.smoothness(), 400);
  CHECK((x_gd - ls.optimum()).norm() <= 1e-8);
}

TEST_CASE("LeastSquares: rank-deficient data give mu = 0 and the minimum-norm optimum") {
  const lgm::LeastSquares ls =
      lgm::LeastSquares::synthetic({.N = 80, .d = 6, .condition = 3.0, .rank = 3, .noise = 0.2, .seed = 4});
  const Index d = ls.dim();
  CHECK(ls.strong_convexity() == 0.0);
  CHECK(ls.covariance_spectrum()[2] == 0.0);
  CHECK(ls.covariance_spectrum()[3] > 0.0);
  const Vector ev = eigenvalues(fd_hessian(ls, Vector::Zero(d)));
  CHECK(rel_diff(ev[d - 1], ls.smoothness()) <= 1e-6);
  CHECK(std::abs(ev[0]) <= 1e-8);
  std::mt19937_64 rng(13);
  check_objective(ls, random_vector(d, rng), rng);

  // gradient descent from 0 stays in the data's span and converges to the minimum-norm solution
  const Vector x_gd = gradient_descent(ls, Vector::Zero(d), 1.0 / ls.smoothness(), 600);
  CHECK((x_gd - ls.optimum()).norm() <= 1e-8);
  CHECK(total_gradient(ls, ls.optimum()).norm() <= 1e-13);
  // adding a null-space direction keeps F but lengthens x: the optimum has the smallest norm
  const Vector null_dir = Eigen::SelfAdjointEigenSolver<Matrix>(fd_hessian(ls, Vector::Zero(d))).eigenvectors().col(0);
  CHECK(std::abs(ls.optimum().dot(null_dir)) <= 1e-7);
  CHECK(rel_diff(total_loss(ls, ls.optimum() + null_dir), ls.optimal_value()) <= 1e-10);

  // more features than samples is rank-deficient too
  const lgm::LeastSquares wide(small_features(5, 3, 7), Vector::Ones(3));
  CHECK(wide.strong_convexity() == 0.0);
  CHECK(total_loss(wide, wide.optimum()) <= 1e-28);  // interpolation
}

// ---------------------------------------------------------------- Logistic

TEST_CASE("Logistic: loss, gradients, moments, constants and the Newton optimum") {
  const lgm::Logistic lr = lgm::Logistic::synthetic({.N = 150, .d = 5, .lambda = 0.1, .signal = 2.0, .seed = 3});
  const Index d = lr.dim(), n = lr.num_samples();
  std::mt19937_64 rng(14);
  const Vector x = random_vector(d, rng);
  const double naive = naive_mean(n, [&](Index i) {
    double z = 0.0, reg = 0.0;
    for (Index j = 0; j < d; ++j) z += lr.features()(j, i) * x[j];
    for (Index j = 0; j < d; ++j) reg += 0.05 * x[j] * x[j];
    return std::log(1.0 + std::exp(-lr.labels()[i] * z)) + reg;
  });
  CHECK(rel_diff(total_loss(lr, x), naive) <= 1e-12);
  for (int rep = 0; rep < 3; ++rep) check_objective(lr, random_vector(d, rng, 2.0), rng);

  // L is attained at x = 0; elsewhere the Hessian stays in [λ, L]
  CHECK(rel_diff(eigenvalues(fd_hessian(lr, Vector::Zero(d)))[d - 1], lr.smoothness()) <= 1e-6);
  for (int rep = 0; rep < 3; ++rep) {
    const Vector ev = eigenvalues(fd_hessian(lr, random_vector(d, rng)));
    CHECK(ev[d - 1] <= lr.smoothness() * (1.0 + 1e-6));
    CHECK(ev[0] >= lr.strong_convexity() * (1.0 - 1e-6));
  }
  // far from 0 the data term flattens and λ_min approaches μ = λ
  const Vector far = random_vector(d, rng, 1e4);
  CHECK(eigenvalues(fd_hessian(lr, far, 1e-3))[0] <= lr.strong_convexity() + 1e-3 * lr.smoothness());

  REQUIRE(lr.has_optimum());
  CHECK(lr.newton_iterations() < 30);
  CHECK(total_gradient(lr, lr.optimum()).norm() <= 1e-14);
  CHECK(rel_diff(lr.optimal_value(), total_loss(lr, lr.optimum())) <= 1e-15);
  const Vector x_gd = gradient_descent(lr, Vector::Zero(d), 1.0 / lr.smoothness(), 400);
  CHECK((x_gd - lr.optimum()).norm() <= 1e-8);

  // λ = 0 or compute_optimum = false: no optimum, and asking for it names the reason
  const lgm::Logistic plain(lr.features(), lr.labels(), 0.0);
  CHECK_FALSE(plain.has_optimum());
  CHECK(plain.strong_convexity() == 0.0);
  CHECK_THROWS_WITH_AS(plain.optimum(), doctest::Contains("lambda = 0"), lgm::ConfigError);
  const lgm::Logistic skipped(lr.features(), lr.labels(), 0.1, false);
  CHECK_FALSE(skipped.has_optimum());
  CHECK_THROWS_AS(skipped.optimal_value(), lgm::ConfigError);
}

TEST_CASE("Logistic: the loss is overflow-free and keeps its digits for confident predictions") {
  Matrix a(1, 1);
  a << 1000.0;
  const lgm::Logistic lr(a, Vector::Ones(1), 0.0);
  auto ws = lr.make_workspace();
  const std::vector<Index> one{0};
  Vector g(1);
  CHECK(lr.loss(Vector::Constant(1, -1.0), one, ws) == 1000.0);
  CHECK(lr.gradient(Vector::Constant(1, -1.0), one, g, ws) == 1000.0);
  CHECK(g[0] == -1000.0);
  const double tiny = lr.loss(Vector::Constant(1, 1.0), one, ws);
  CHECK((tiny >= 0.0 && tiny < 1e-300));
  // z = 30: log(1 + e^{−30}) = e^{−30} − e^{−60}/2 + …, which log(1 + exp(−30)) would round to 3 digits
  CHECK(rel_diff(lr.loss(Vector::Constant(1, 0.03), one, ws), std::exp(-30.0) - 0.5 * std::exp(-60.0)) <= 1e-14);
}

// ---------------------------------------------------------------- Softmax

TEST_CASE("Softmax: loss, gradients, moments and constants") {
  const lgm::Softmax sm =
      lgm::Softmax::synthetic({.N = 90, .d = 4, .classes = 3, .lambda = 0.02, .separation = 2.0, .seed = 5});
  const Index d = sm.num_features(), C = sm.classes(), n = sm.num_samples();
  REQUIRE(sm.dim() == C * d);
  std::mt19937_64 rng(15);
  const Vector x = random_vector(sm.dim(), rng);
  // layout x[c·d + j] = W_{c,j}
  const double naive = naive_mean(n, [&](Index i) {
    std::vector<double> z(static_cast<std::size_t>(C), 0.0);
    for (Index c = 0; c < C; ++c)
      for (Index j = 0; j < d; ++j) z[static_cast<std::size_t>(c)] += x[c * d + j] * sm.features()(j, i);
    double s = 0.0;
    for (double zc : z) s += std::exp(zc);
    return std::log(s) - z[static_cast<std::size_t>(sm.labels()[static_cast<std::size_t>(i)])] + 0.01 * x.squaredNorm();
  });
  CHECK(rel_diff(total_loss(sm, x), naive) <= 1e-12);
  for (int rep = 0; rep < 3; ++rep) check_objective(sm, random_vector(sm.dim(), rng), rng);

  // λ_max of the Hessian never exceeds the bound; λ_min is exactly λ (the direction W = 1uᵀ is flat)
  for (int rep = 0; rep < 3; ++rep) {
    const Vector ev = eigenvalues(fd_hessian(sm, random_vector(sm.dim(), rng)));
    CHECK(ev[sm.dim() - 1] <= sm.smoothness_bound() * (1.0 + 1e-6));
    CHECK(std::abs(ev[0] - sm.strong_convexity()) <= 1e-7);
  }
  // C = 2: the bound is attained at x = 0
  const lgm::Softmax two = lgm::Softmax::synthetic({.N = 60, .d = 3, .classes = 2, .lambda = 0.01, .seed = 6});
  const Vector ev2 = eigenvalues(fd_hessian(two, Vector::Zero(two.dim())));
  CHECK(rel_diff(ev2[two.dim() - 1], two.smoothness_bound()) <= 1e-6);
}

TEST_CASE("Softmax: large logits give finite losses with their digits") {
  Matrix a(1, 2);
  a << 1.0, 1.0;
  const lgm::Softmax sm(a, {0, 1}, 3, 0.0);
  auto ws = sm.make_workspace();
  Vector x(3);  // W = (800, 0, −5)ᵀ: logits (800, 0, −5)
  x << 800.0, 0.0, -5.0;
  CHECK(sm.loss(x, std::vector<Index>{1}, ws) == 800.0 + std::log1p(std::exp(-800.0) + std::exp(-805.0)));
  x << 30.0, 0.0, -5.0;
  CHECK(rel_diff(sm.loss(x, std::vector<Index>{0}, ws), std::log1p(std::exp(-30.0) + std::exp(-35.0))) <= 1e-14);
  Vector g(3);
  sm.gradient(x, std::vector<Index>{1}, g, ws);
  CHECK(g.allFinite());
}

// ---------------------------------------------------------------- NonconvexLogistic

TEST_CASE("NonconvexLogistic: loss, gradients, moments and the exact L") {
  const lgm::NonconvexLogistic nl = lgm::NonconvexLogistic::synthetic({.N = 100, .d = 5, .lambda = 0.3, .seed = 7});
  const Index d = nl.dim(), n = nl.num_samples();
  std::mt19937_64 rng(16);
  const Vector x = random_vector(d, rng);
  const double naive = naive_mean(n, [&](Index i) {
    double z = 0.0, reg = 0.0;
    for (Index j = 0; j < d; ++j) z += nl.features()(j, i) * x[j];
    for (Index j = 0; j < d; ++j) reg += 0.3 * x[j] * x[j] / (1.0 + x[j] * x[j]);
    return std::log(1.0 + std::exp(-nl.labels()[i] * z)) + reg;
  });
  CHECK(rel_diff(total_loss(nl, x), naive) <= 1e-12);
  for (int rep = 0; rep < 3; ++rep) check_objective(nl, random_vector(d, rng, 1.5), rng);

  // L attained at 0; elsewhere −λ/2 ≤ eigenvalues ≤ L; near |x_j| = 1 the Hessian is indefinite
  CHECK(rel_diff(eigenvalues(fd_hessian(nl, Vector::Zero(d)))[d - 1], nl.smoothness()) <= 1e-6);
  for (int rep = 0; rep < 3; ++rep) {
    const Vector ev = eigenvalues(fd_hessian(nl, random_vector(d, rng, 2.0)));
    CHECK(ev[d - 1] <= nl.smoothness() * (1.0 + 1e-6));
    CHECK(ev[0] >= -nl.weak_convexity_bound() - 1e-7);
  }
  // with a_i = 0 only R(x) is left: at x_j = 1, h''(1) = −½, so the bound ρ = λ/2 is attained
  const lgm::NonconvexLogistic reg_only(Matrix::Zero(3, 2), Vector::Ones(2), 0.3);  // a_i = 0: only R(x)
  const Vector ev_reg = eigenvalues(fd_hessian(reg_only, Vector::Ones(3)));
  CHECK(rel_diff(ev_reg[0], -reg_only.weak_convexity_bound()) <= 1e-6);
}

// ---------------------------------------------------------------- float32 features, huge-page storage

/// The float32 path of a linear model: a consistent objective of its own (check_objective), equal within rounding
/// to the double path on the float-rounded data, within float tolerance of the double path, and off again bit
/// for bit.
template <class Obj>
void check_float_features(Obj obj, const Obj& rounded, std::mt19937_64& rng, double x_scale) {
  const Index d = obj.dim();
  const auto batch = random_batch(obj.num_samples(), 11, rng);
  const Vector x = random_vector(d, rng, x_scale), v = random_vector(d, rng);
  auto ws = obj.make_workspace();
  Vector g64(d), g32(d), g_rounded(d);
  const double f64 = obj.gradient(x, batch, g64, ws);
  const lgm::SampleMoments m64 = obj.sample_moments(x, batch, v, ws);

  CHECK_FALSE(obj.float_features());
  obj.use_float_features();
  REQUIRE(obj.float_features());
  for (int rep = 0; rep < 2; ++rep) check_objective(obj, random_vector(d, rng, x_scale), rng);
  const double f32 = obj.gradient(x, batch, g32, ws);
  // the norm test's statistic from the gradient's cached terms, bit for bit the closed form's
  const double cached = obj.sample_sq_norm_sum(x, batch, ws);
  const lgm::SampleMoments m32 = obj.sample_moments(x, batch, v, ws);
  CHECK(cached == m32.sum_sq_norm);
  // same data as the double path on float-rounded features: only the summation order differs
  const double f_rounded = rounded.gradient(x, batch, g_rounded, ws);
  CHECK(rel_diff(f32, f_rounded) <= 1e-13);
  CHECK(rel_diff(g32, g_rounded) <= 1e-12);
  CHECK(rel_diff(m32.sum_sq_norm, rounded.sample_moments(x, batch, v, ws).sum_sq_norm) <= 1e-12);
  // against the double path: the features' float rounding (2^-24 relative) and no more
  CHECK(rel_diff(f32, f64) <= 1e-6);
  CHECK(rel_diff(g32, g64) <= 1e-6);
  CHECK(rel_diff(m32.sum_proj, m64.sum_proj) <= 1e-6);
  // features() stays the double data; switching back restores the double path exactly
  obj.use_float_features(false);
  CHECK_FALSE(obj.float_features());
  Vector g_back(d);
  CHECK(obj.gradient(x, batch, g_back, ws) == f64);
  CHECK(g_back == g64);
}

Matrix float_rounded(const Matrix& a) { return a.cast<float>().cast<double>(); }

TEST_CASE("float32 features: gradients, losses and moments within float rounding of the double path") {
  std::mt19937_64 rng(21);
  // d = 37: the widened kernels' 16-lane blocks and their tail
  const lgm::Logistic lr = lgm::Logistic::synthetic({.N = 120, .d = 37, .lambda = 0.1, .seed = 5});
  check_float_features(lr, lgm::Logistic(float_rounded(lr.features()), lr.labels(), 0.1, false), rng, 0.5);

  const lgm::NonconvexLogistic nl = lgm::NonconvexLogistic::synthetic({.N = 90, .d = 21, .lambda = 0.3, .seed = 8});
  check_float_features(nl, lgm::NonconvexLogistic(float_rounded(nl.features()), nl.labels(), 0.3), rng, 1.0);

  const Matrix a = small_features(19, 80, 4);
  const Vector y = random_vector(80, rng);
  check_float_features(lgm::LeastSquares(a, y, 0.05), lgm::LeastSquares(float_rounded(a), y, 0.05), rng, 1.0);

  // copies share the float copy and keep the mode
  lgm::Logistic on = lr;
  on.use_float_features();
  const lgm::Logistic copy = on;
  CHECK(copy.float_features());
  CHECK(lr.features() == copy.features());
}

TEST_CASE("huge-page storage of large feature matrices keeps every value") {
  // 64 × 8192 doubles = 4 MiB: large enough to be copied into huge-page-advised storage
  lgm::detail::DataRng rng(9);
  const Matrix a = rng.normal_matrix(64, 8192);
  const Matrix backed = lgm::detail::huge_page_backed(a);
  CHECK(backed.rows() == a.rows());
  CHECK(backed.cols() == a.cols());
  CHECK(backed == a);
  CHECK(backed.data() != a.data());
  Vector labels(8192);
  for (Index i = 0; i < labels.size(); ++i) labels[i] = i % 3 == 0 ? 1.0 : -1.0;
  lgm::Logistic lr(a, labels, 1e-3, false);
  CHECK(lr.features() == a);
  lr.use_float_features();
  CHECK(lr.features() == a);
  auto ws = lr.make_workspace();
  const std::vector<Index> batch{0, 8191, 4096};
  Vector g(64);
  CHECK(std::isfinite(lr.gradient(Vector::Zero(64), batch, g, ws)));
}

// ---------------------------------------------------------------- Mlp

TEST_CASE("Mlp: loss by naive loops over the layout, gradients by backprop, dense-layer moments") {
  const lgm::Mlp mlp = lgm::Mlp::synthetic({.N = 60, .d = 4, .classes = 3, .hidden = 5, .lambda = 0.01, .seed = 8});
  const Index d = 4, h = 5, C = 3, n = mlp.num_samples();
  REQUIRE(mlp.dim() == h * d + h + C * h + C);
  CHECK(mlp.offset_b1() == h * d);
  CHECK(mlp.offset_w2() == h * d + h);
  CHECK(mlp.offset_b2() == h * d + h + C * h);

  const Vector x0 = mlp.initial_point(3);
  CHECK(x0 == mlp.initial_point(3));
  CHECK(x0 != mlp.initial_point(4));
  CHECK(x0.segment(mlp.offset_b1(), h).isZero());
  CHECK(x0.segment(mlp.offset_b2(), C).isZero());
  CHECK(x0.segment(0, h * d).cwiseAbs().maxCoeff() <= std::sqrt(6.0 / (d + h)));
  CHECK(x0.segment(mlp.offset_w2(), C * h).cwiseAbs().maxCoeff() <= std::sqrt(6.0 / (h + C)));

  std::mt19937_64 rng(17);
  const Vector x = random_vector(mlp.dim(), rng, 0.7);
  const double naive = naive_mean(n, [&](Index i) {
    std::vector<double> s(static_cast<std::size_t>(h)), z(static_cast<std::size_t>(C));
    for (Index k = 0; k < h; ++k) {
      double u = x[h * d + k];                                                 // b₁
      for (Index j = 0; j < d; ++j) u += x[j * h + k] * mlp.features()(j, i);  // W₁ column-major h × d
      s[static_cast<std::size_t>(k)] = std::tanh(u);
    }
    double sum = 0.0;
    for (Index c = 0; c < C; ++c) {
      double zc = x[h * d + h + C * h + c];  // b₂
      for (Index k = 0; k < h; ++k) zc += x[h * d + h + k * C + c] * s[static_cast<std::size_t>(k)];
      z[static_cast<std::size_t>(c)] = zc;
      sum += std::exp(zc);
    }
    return std::log(sum) - z[static_cast<std::size_t>(mlp.labels()[static_cast<std::size_t>(i)])] +
           0.005 * x.squaredNorm();
  });
  CHECK(rel_diff(total_loss(mlp, x), naive) <= 1e-12);
  for (int rep = 0; rep < 3; ++rep) check_objective(mlp, random_vector(mlp.dim(), rng, 0.7), rng);
  check_objective(mlp, x0, rng);
  const lgm::Mlp plain(mlp.features(), mlp.labels(), 3, 5, 0.0);
  check_objective(plain, x, rng);
}

// ---------------------------------------------------------------- bad input

TEST_CASE("bad data and parameters are rejected with the field, the value and the accepted range") {
  Matrix a = small_features(3, 10, 1);
  const Vector y = Vector::Ones(10);

  Matrix nan_a = a;
  nan_a(2, 5) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(lgm::LeastSquares(nan_a, y), doctest::Contains("features entry (row 2, column 5) = nan"),
                       lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::LeastSquares(a, Vector::Ones(9)), doctest::Contains("targets (size) = 9"), lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::LeastSquares(a, Vector::Ones(9)), doctest::Contains("N = 10"), lgm::DataError);
  Vector inf_y = y;
  inf_y[3] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(lgm::LeastSquares(a, inf_y), doctest::Contains("targets[3] = inf"), lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::LeastSquares(a, y, -1.0), doctest::Contains("lambda = -1 (accepted: a finite number >= 0)"),
                       lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::LeastSquares(Matrix(3, 0), Vector(0)), doctest::Contains("features (shape) = 3 x 0"),
                       lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::LeastSquares::synthetic({.condition = 0.5}),
                       doctest::Contains("condition = 0.5 (accepted: a finite number >= 1)"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::LeastSquares::synthetic({.d = 4, .rank = 5}), doctest::Contains("rank = 5"),
                       lgm::ConfigError);

  Vector bad_labels = y;
  bad_labels[4] = 0.0;
  CHECK_THROWS_WITH_AS(lgm::Logistic(a, bad_labels, 0.1), doctest::Contains("labels[4] = 0 (accepted: -1 or +1"),
                       lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::Logistic(a, y, -0.5), doctest::Contains("lambda = -0.5"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::NonconvexLogistic(a, bad_labels), doctest::Contains("labels[4] = 0"), lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::NonconvexLogistic(a, y, -2.0), doctest::Contains("lambda = -2"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::Logistic::synthetic({.N = 0}), doctest::Contains("N = 0 (accepted: an integer >= 1)"),
                       lgm::ConfigError);

  std::vector<Index> cl(10, 0);
  cl[7] = 3;
  CHECK_THROWS_WITH_AS(lgm::Softmax(a, cl, 3), doctest::Contains("labels[7] = 3 (accepted: an integer in [0, 2]"),
                       lgm::DataError);
  cl[7] = -1;
  CHECK_THROWS_WITH_AS(lgm::Softmax(a, cl, 3), doctest::Contains("labels[7] = -1"), lgm::DataError);
  cl[7] = 0;
  CHECK_THROWS_WITH_AS(lgm::Softmax(a, cl, 1), doctest::Contains("classes = 1 (accepted: an integer >= 2)"),
                       lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::Softmax(a, std::vector<Index>(4, 0), 2), doctest::Contains("labels (size) = 4"),
                       lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::Softmax(a, cl, 2, -1.0), doctest::Contains("lambda = -1"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::Mlp(a, cl, 2, 0), doctest::Contains("hidden = 0 (accepted: an integer >= 1)"),
                       lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::Mlp(nan_a, cl, 2, 4), doctest::Contains("features entry (row 2, column 5)"),
                       lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::Mlp::synthetic({.classes = 1}), doctest::Contains("classes = 1"), lgm::ConfigError);

  // Quadratic
  Matrix h(2, 2);
  h << 2.0, 1.0, 0.5, 2.0;
  CHECK_THROWS_WITH_AS(lgm::Quadratic(h, Vector::Zero(2), Matrix::Zero(2, 3)),
                       doctest::Contains("hessian entry (row 1, column 0) = 0.5 (accepted: a symmetric matrix"),
                       lgm::DataError);
  h << -1.0, 0.0, 0.0, 2.0;
  CHECK_THROWS_WITH_AS(lgm::Quadratic(h, Vector::Zero(2), Matrix::Zero(2, 3)),
                       doctest::Contains("hessian (smallest eigenvalue) = -1 (accepted: a positive semidefinite"),
                       lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::Quadratic(Matrix::Identity(2, 3), Vector::Zero(2), Matrix::Zero(2, 3)),
                       doctest::Contains("hessian (shape) = 2 x 3"), lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::Quadratic(Matrix::Identity(2, 2), Vector::Zero(3), Matrix::Zero(2, 3)),
                       doctest::Contains("optimum (size) = 3"), lgm::DataError);
  Matrix nan_noise = Matrix::Zero(2, 3);
  nan_noise(1, 2) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(lgm::Quadratic(Matrix::Identity(2, 2), Vector::Zero(2), nan_noise),
                       doctest::Contains("noise entry (row 1, column 2) = nan"), lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::Quadratic(Matrix::Identity(2, 2), Vector::Zero(2), Matrix::Zero(3, 3)),
                       doctest::Contains("noise (shape) = 3 x 3"), lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::Quadratic::synthetic({.mu = 2.0, .L = 1.0}),
                       doctest::Contains("L = 1 (accepted: a finite number >= mu = 2)"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::Quadratic::synthetic({.mu = 0.0}),
                       doctest::Contains("mu = 0 (accepted: a finite number > 0)"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::Quadratic::synthetic({.d = 1, .mu = 0.5, .L = 1.0}), doctest::Contains("when d = 1"),
                       lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::Quadratic::synthetic({.N = 1, .noise = 1.0}), doctest::Contains("N = 1"), lgm::ConfigError);
  // d = 1 with μ = L, and N = 1 without noise, are fine
  CHECK(lgm::Quadratic::synthetic({.d = 1, .mu = 0.5, .L = 0.5}).smoothness() == 0.5);
  CHECK(lgm::Quadratic::synthetic({.N = 1, .noise = 0.0}).variance() == 0.0);
}

}  // namespace
