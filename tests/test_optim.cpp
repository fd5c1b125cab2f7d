// Tests of the local optimizers (SGD, HeavyBall, Nesterov, AdamW) and the outer optimizers (Averaging,
// OuterSGD, DiLoCoOuter): every update is checked against an independent scalar loop written here from the
// formulas of docs/optimizers.md §Local optimizers and §Outer optimizers.
//
// Eigen's runtime allocation check, for the "no allocation per step" tests. It must be defined before
// Eigen is first included; in the other test files it is absent, where Eigen's check is a no-op.
#define EIGEN_RUNTIME_NO_MALLOC

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <lgm/core/concepts.hpp>
#include <lgm/optim/optim.hpp>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using lgm::Index;
using lgm::Matrix;
using lgm::Vector;

using Columns = std::vector<std::vector<double>>;  // [worker][coordinate], the scalar references' layout

Matrix random_matrix(Index rows, Index cols, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  Matrix A(rows, cols);
  for (Index j = 0; j < cols; ++j)
    for (Index i = 0; i < rows; ++i) A(i, j) = u(rng);
  return A;
}

Columns to_columns(const Matrix& A) {
  Columns c(static_cast<size_t>(A.cols()), std::vector<double>(static_cast<size_t>(A.rows())));
  for (Index j = 0; j < A.cols(); ++j)
    for (Index i = 0; i < A.rows(); ++i) c[static_cast<size_t>(j)][static_cast<size_t>(i)] = A(i, j);
  return c;
}

// |a − b| ≤ tol·max(1, |a|, |b|) for every entry.
bool near(const Matrix& A, const Columns& B, double tol) {
  for (Index j = 0; j < A.cols(); ++j)
    for (Index i = 0; i < A.rows(); ++i) {
      const double a = A(i, j), b = B[static_cast<size_t>(j)][static_cast<size_t>(i)];
      if (!(std::abs(a - b) <= tol * std::max({1.0, std::abs(a), std::abs(b)}))) return false;
    }
  return true;
}

bool near(const Vector& a, const std::vector<double>& b, double tol) {
  for (Index i = 0; i < a.size(); ++i) {
    const double bi = b[static_cast<size_t>(i)];
    if (!(std::abs(a(i) - bi) <= tol * std::max({1.0, std::abs(a(i)), std::abs(bi)}))) return false;
  }
  return true;
}

bool bitwise_equal(const Matrix& A, const Matrix& B) {
  if (A.rows() != B.rows() || A.cols() != B.cols()) return false;
  for (Index j = 0; j < A.cols(); ++j)
    for (Index i = 0; i < A.rows(); ++i)
      if (A(i, j) != B(i, j)) return false;
  return true;
}

constexpr Index kDim = 7;
constexpr Index kWorkers = 3;
const std::vector<double> kLrs = {0.1, 0.05, 0.2, 0.01, 0.3, 0.07};  // one lr a step, changing

// The gradient of worker m at step k: fixed random numbers (the optimizers never see an objective).
Matrix gradients(Index k) { return random_matrix(kDim, kWorkers, 1000 + static_cast<std::uint64_t>(k), -2.0, 2.0); }

// Runs every step of kLrs on every worker, the workers in the order given, the way the driver calls step.
template <class Opt>
void run_steps(const Opt& opt, typename Opt::State& state, Matrix& X, const std::vector<Index>& order) {
  for (size_t k = 0; k < kLrs.size(); ++k) {
    const Matrix G = gradients(static_cast<Index>(k));
    for (Index m : order) opt.step(state, m, X.col(m), G.col(m), kLrs[k]);
  }
}

const std::vector<Index> kInOrder = {0, 1, 2};

// ---------------------------------------------------------------- independent scalar references

// docs/optimizers.md §SGD, coupled L2: x ← x − lr·(g + λx)
Columns sgd_loop(Columns x, double wd) {
  for (size_t k = 0; k < kLrs.size(); ++k) {
    const Columns g = to_columns(gradients(static_cast<Index>(k)));
    for (size_t m = 0; m < x.size(); ++m)
      for (size_t i = 0; i < x[m].size(); ++i) {
        const double d = g[m][i] + wd * x[m][i];
        x[m][i] = x[m][i] - kLrs[k] * d;
      }
  }
  return x;
}

// docs/optimizers.md §HeavyBall and §Nesterov, PyTorch SGD:
// d = g + λx; b = d at the first step, else b = βb + d; HeavyBall x ← x − lr·b, Nesterov x ← x − lr·(d + βb).
struct MomentumLoopResult {
  Columns x, buf;
};
MomentumLoopResult momentum_loop(Columns x, double beta, double wd, bool nesterov) {
  Columns buf(x.size(), std::vector<double>(x[0].size(), 0.0));
  for (size_t k = 0; k < kLrs.size(); ++k) {
    const Columns g = to_columns(gradients(static_cast<Index>(k)));
    for (size_t m = 0; m < x.size(); ++m)
      for (size_t i = 0; i < x[m].size(); ++i) {
        const double d = g[m][i] + wd * x[m][i];
        buf[m][i] = k == 0 ? d : beta * buf[m][i] + d;  // PyTorch's first step: buf = clone(d)
        const double dir = nesterov ? d + beta * buf[m][i] : buf[m][i];
        x[m][i] -= kLrs[k] * dir;
      }
  }
  return {x, buf};
}

// docs/optimizers.md §AdamW, written exactly as the formula: x ← x(1 − lr·λ) − lr·(s1/(1−β1^t)) / (√(s2/(1−β2^t)) + ε)
struct AdamLoopState {
  std::vector<double> x, s1, s2;
  int t = 0;
};
void adam_loop_step(AdamLoopState& s, const std::vector<double>& g, double lr, double b1, double b2, double eps,
                    double wd) {
  s.t += 1;
  double b1t = 1.0, b2t = 1.0;
  for (int j = 0; j < s.t; ++j) {  // β^t by repeated multiplication, independently of std::pow
    b1t *= b1;
    b2t *= b2;
  }
  for (size_t i = 0; i < s.x.size(); ++i) {
    s.s1[i] = b1 * s.s1[i] + (1.0 - b1) * g[i];
    s.s2[i] = b2 * s.s2[i] + (1.0 - b2) * g[i] * g[i];
    const double m_hat = s.s1[i] / (1.0 - b1t);
    const double v_hat = s.s2[i] / (1.0 - b2t);
    s.x[i] = s.x[i] * (1.0 - lr * wd) - lr * m_hat / (std::sqrt(v_hat) + eps);
  }
}

// Field data pointers that for_each_averaged_field visits, in order.
template <class Opt>
std::vector<const double*> visited_fields(const Opt& opt, typename Opt::State& state) {
  std::vector<const double*> seen;
  opt.for_each_averaged_field(state, [&](lgm::MatrixRef F) { seen.push_back(F.data()); });
  return seen;
}

}  // namespace

// ================================================================ concepts and names

TEST_CASE("the optimizers model the concepts and carry their names") {
  static_assert(lgm::LocalOptimizer<lgm::SGD>);
  static_assert(lgm::LocalOptimizer<lgm::HeavyBall>);
  static_assert(lgm::LocalOptimizer<lgm::Nesterov>);
  static_assert(lgm::LocalOptimizer<lgm::AdamW>);
  static_assert(lgm::OuterOptimizer<lgm::Averaging>);
  static_assert(lgm::OuterOptimizer<lgm::OuterSGD>);
  static_assert(lgm::OuterOptimizer<lgm::DiLoCoOuter>);
  static_assert(lgm::Averaging::is_plain_average);
  static_assert(!lgm::OuterSGD::is_plain_average);
  static_assert(!lgm::DiLoCoOuter::is_plain_average);

  CHECK(lgm::SGD::name == "sgd");
  CHECK(lgm::HeavyBall::name == "shb");
  CHECK(lgm::Nesterov::name == "nesterov");
  CHECK(lgm::AdamW::name == "adamw");
  CHECK(lgm::SGD::state_fields.empty());
  CHECK(lgm::HeavyBall::state_fields[0] == "momentum");
  CHECK(lgm::Nesterov::state_fields[0] == "momentum");
  CHECK(lgm::AdamW::state_fields.size() == 2);
  CHECK(lgm::AdamW::state_fields[0] == "exp_avg");
  CHECK(lgm::AdamW::state_fields[1] == "exp_avg_sq");
}

TEST_CASE("defaults are the documented ones") {
  CHECK(lgm::SGD{}.weight_decay == 0.0);
  const lgm::HeavyBall hb;
  CHECK(hb.momentum == 0.9);
  CHECK(hb.weight_decay == 0.0);
  CHECK_FALSE(hb.average_momentum);
  const lgm::Nesterov nag;
  CHECK(nag.momentum == 0.9);
  CHECK(nag.weight_decay == 0.0);
  CHECK_FALSE(nag.average_momentum);
  const lgm::AdamW adamw;
  CHECK(adamw.beta1 == 0.9);
  CHECK(adamw.beta2 == 0.999);
  CHECK(adamw.eps == 1e-8);
  CHECK(adamw.weight_decay == 0.01);
  CHECK_FALSE(adamw.average_first_moment);
  CHECK_FALSE(adamw.average_second_moment);
  const lgm::OuterSGD outer;
  CHECK(outer.options().lr == 1.0);
  CHECK(outer.options().momentum == 0.0);
  CHECK_FALSE(outer.options().nesterov);
  for (const lgm::OuterSGDOptions& o : {lgm::OuterSGD::diloco().options(), lgm::DiLoCoOuter{}.options()}) {
    CHECK(o.lr == 0.7);
    CHECK(o.momentum == 0.9);
    CHECK(o.nesterov);
  }
  // the driver default-constructs its policies with `Opt opt = {}`, `Outer outer = {}` (copy-list-init)
  const lgm::OuterSGD braced_outer = {};
  const lgm::DiLoCoOuter braced_diloco = {};
  const lgm::Averaging braced_avg = {};
  const lgm::AdamW braced_adamw = {};
  CHECK(braced_outer.options().lr == 1.0);
  CHECK(braced_diloco.options().lr == 0.7);
  CHECK(braced_avg.is_plain_average);
  CHECK(braced_adamw.beta1 == 0.9);
  CHECK_NOTHROW(hb.validate());
  CHECK_NOTHROW(nag.validate());
  CHECK_NOTHROW(adamw.validate());
  CHECK_NOTHROW(outer.validate());
  CHECK_NOTHROW(lgm::DiLoCoOuter{}.validate());
}

TEST_CASE("init allocates one zero column per worker") {
  const auto hb = lgm::HeavyBall{}.init(kDim, kWorkers);
  CHECK(hb.momentum.rows() == kDim);
  CHECK(hb.momentum.cols() == kWorkers);
  CHECK(hb.momentum.isZero(0.0));
  const auto adam = lgm::AdamW{}.init(kDim, kWorkers);
  CHECK(adam.exp_avg.rows() == kDim);
  CHECK(adam.exp_avg.cols() == kWorkers);
  CHECK(adam.exp_avg_sq.rows() == kDim);
  CHECK(adam.exp_avg_sq.cols() == kWorkers);
  CHECK(adam.exp_avg.isZero(0.0));
  CHECK(adam.exp_avg_sq.isZero(0.0));
  CHECK(adam.step == std::vector<Index>(kWorkers, 0));
  CHECK_THROWS_WITH_AS(lgm::AdamW{}.init(kDim, 0), doctest::Contains("workers = 0"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::HeavyBall{}.init(0, 2), doctest::Contains("dim = 0"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::SGD{}.init(-1, 2), doctest::Contains("dim = -1"), lgm::ConfigError);
  lgm::OuterSGD outer;
  CHECK_THROWS_WITH_AS(outer.init(0), doctest::Contains("dim = 0"), lgm::ConfigError);
}

// ================================================================ SGD

TEST_CASE("SGD equals the scalar loop, with and without weight decay") {
  for (double wd : {0.0, 0.1}) {
    CAPTURE(wd);
    const lgm::SGD opt{.weight_decay = wd};
    Matrix X = random_matrix(kDim, kWorkers, 7);
    const Columns expected = sgd_loop(to_columns(X), wd);
    auto state = opt.init(kDim, kWorkers);
    run_steps(opt, state, X, kInOrder);
    CHECK(near(X, expected, 1e-15));
  }
}

// ================================================================ HeavyBall and Nesterov

TEST_CASE("HeavyBall equals the PyTorch-convention scalar loop") {
  for (double wd : {0.0, 0.05}) {
    for (double beta : {0.0, 0.5, 0.9}) {
      CAPTURE(wd);
      CAPTURE(beta);
      const lgm::HeavyBall opt{.momentum = beta, .weight_decay = wd};
      Matrix X = random_matrix(kDim, kWorkers, 11);
      const MomentumLoopResult expected = momentum_loop(to_columns(X), beta, wd, false);
      auto state = opt.init(kDim, kWorkers);
      run_steps(opt, state, X, kInOrder);
      CHECK(near(X, expected.x, 1e-14));
      CHECK(near(state.momentum, expected.buf, 1e-14));
    }
  }
}

TEST_CASE("HeavyBall's first step stores u = d = g + λx") {
  const lgm::HeavyBall opt{.momentum = 0.9, .weight_decay = 0.1};
  Matrix X = random_matrix(kDim, kWorkers, 3);
  const Matrix X0 = X;
  const Matrix G = gradients(0);
  auto state = opt.init(kDim, kWorkers);
  for (Index m = 0; m < kWorkers; ++m) opt.step(state, m, X.col(m), G.col(m), 0.5);
  for (Index m = 0; m < kWorkers; ++m)
    for (Index i = 0; i < kDim; ++i) {
      const double d = G(i, m) + 0.1 * X0(i, m);
      CHECK(state.momentum(i, m) == doctest::Approx(d).epsilon(1e-15));
      CHECK(X(i, m) == doctest::Approx(X0(i, m) - 0.5 * d).epsilon(1e-15));
    }
}

TEST_CASE("HeavyBall with momentum 0 equals SGD bitwise") {
  for (double wd : {0.0, 0.2}) {
    CAPTURE(wd);
    const lgm::SGD sgd{.weight_decay = wd};
    const lgm::HeavyBall hb{.momentum = 0.0, .weight_decay = wd};
    Matrix X_sgd = random_matrix(kDim, kWorkers, 5);
    Matrix X_hb = X_sgd;
    auto s_sgd = sgd.init(kDim, kWorkers);
    auto s_hb = hb.init(kDim, kWorkers);
    run_steps(sgd, s_sgd, X_sgd, kInOrder);
    run_steps(hb, s_hb, X_hb, kInOrder);
    CHECK(bitwise_equal(X_sgd, X_hb));
  }
}

TEST_CASE("Nesterov equals the PyTorch-convention scalar loop") {
  for (double wd : {0.0, 0.05}) {
    for (double beta : {0.0, 0.5, 0.9}) {
      CAPTURE(wd);
      CAPTURE(beta);
      const lgm::Nesterov opt{.momentum = beta, .weight_decay = wd};
      Matrix X = random_matrix(kDim, kWorkers, 13);
      const MomentumLoopResult expected = momentum_loop(to_columns(X), beta, wd, true);
      auto state = opt.init(kDim, kWorkers);
      run_steps(opt, state, X, kInOrder);
      CHECK(near(X, expected.x, 1e-14));
      CHECK(near(state.momentum, expected.buf, 1e-14));
    }
  }
}

TEST_CASE("Nesterov and HeavyBall differ exactly by the look-ahead lr·β·u") {
  const double beta = 0.8, lr = 0.25;
  const lgm::HeavyBall hb{.momentum = beta};
  const lgm::Nesterov nag{.momentum = beta};
  Matrix X_hb = random_matrix(kDim, kWorkers, 17);
  Matrix X_nag = X_hb;
  const Matrix X0 = X_hb;
  auto s_hb = hb.init(kDim, kWorkers);
  auto s_nag = nag.init(kDim, kWorkers);

  // First step from u = 0: heavy ball moves by lr·g, Nesterov by lr·(1 + β)·g.
  const Matrix G0 = gradients(0);
  for (Index m = 0; m < kWorkers; ++m) {
    hb.step(s_hb, m, X_hb.col(m), G0.col(m), lr);
    nag.step(s_nag, m, X_nag.col(m), G0.col(m), lr);
  }
  for (Index m = 0; m < kWorkers; ++m)
    for (Index i = 0; i < kDim; ++i) {
      CHECK(X0(i, m) - X_hb(i, m) == doctest::Approx(lr * G0(i, m)).epsilon(1e-12));
      CHECK(X0(i, m) - X_nag(i, m) == doctest::Approx(lr * (1.0 + beta) * G0(i, m)).epsilon(1e-12));
    }

  // Without weight decay the buffers see the same gradients, so they stay equal; from one common point the
  // two steps then differ by lr·(d + βu) − lr·u = lr·(g − (1 − β)u) with the updated u.
  CHECK(bitwise_equal(s_hb.momentum, s_nag.momentum));
  const Matrix G1 = gradients(1);
  Matrix Y_hb = X_hb, Y_nag = X_hb;
  auto t_nag = s_hb;  // same state for both
  for (Index m = 0; m < kWorkers; ++m) {
    hb.step(s_hb, m, Y_hb.col(m), G1.col(m), lr);
    nag.step(t_nag, m, Y_nag.col(m), G1.col(m), lr);
  }
  CHECK(bitwise_equal(s_hb.momentum, t_nag.momentum));
  for (Index m = 0; m < kWorkers; ++m)
    for (Index i = 0; i < kDim; ++i) {
      const double u = s_hb.momentum(i, m);
      CHECK(Y_hb(i, m) - Y_nag(i, m) == doctest::Approx(lr * (G1(i, m) - (1.0 - beta) * u)).epsilon(1e-12));
    }
}

// ================================================================ AdamW

TEST_CASE("AdamW equals the reference-formula scalar loop") {
  for (double wd : {0.0, 0.01, 0.3}) {
    for (double b1 : {0.0, 0.9}) {
      CAPTURE(wd);
      CAPTURE(b1);
      const lgm::AdamW opt{.beta1 = b1, .beta2 = 0.99, .eps = 1e-6, .weight_decay = wd};
      Matrix X = random_matrix(kDim, kWorkers, 19);
      const Columns x0 = to_columns(X);
      std::vector<AdamLoopState> ref;
      for (Index m = 0; m < kWorkers; ++m)
        ref.push_back({x0[static_cast<size_t>(m)], std::vector<double>(kDim, 0.0), std::vector<double>(kDim, 0.0)});
      for (size_t k = 0; k < kLrs.size(); ++k) {
        const Columns g = to_columns(gradients(static_cast<Index>(k)));
        for (size_t m = 0; m < ref.size(); ++m) adam_loop_step(ref[m], g[m], kLrs[k], b1, 0.99, 1e-6, wd);
      }
      auto state = opt.init(kDim, kWorkers);
      run_steps(opt, state, X, kInOrder);
      Columns expected, s1, s2;
      for (const auto& r : ref) {
        expected.push_back(r.x);
        s1.push_back(r.s1);
        s2.push_back(r.s2);
      }
      CHECK(near(X, expected, 1e-13));
      CHECK(near(state.exp_avg, s1, 1e-14));
      CHECK(near(state.exp_avg_sq, s2, 1e-14));
      CHECK(state.step == std::vector<Index>(kWorkers, static_cast<Index>(kLrs.size())));
    }
  }
}

TEST_CASE("AdamW's bias correction: the first step moves each coordinate by about lr·sign(g)") {
  const double lr = 0.01;
  const lgm::AdamW opt{.weight_decay = 0.0};
  Matrix X = random_matrix(kDim, kWorkers, 23);
  const Matrix X0 = X;
  Matrix G = random_matrix(kDim, kWorkers, 29, -3.0, 3.0);
  G(2, 1) = 0.0;   // a zero gradient coordinate does not move: s1 = 0
  G(4, 0) = 1e-3;  // small gradients move by lr·sign(g) as well, the scale cancels
  auto state = opt.init(kDim, kWorkers);
  for (Index m = 0; m < kWorkers; ++m) opt.step(state, m, X.col(m), G.col(m), lr);
  for (Index m = 0; m < kWorkers; ++m)
    for (Index i = 0; i < kDim; ++i) {
      const double g = G(i, m);
      const double sign = g > 0 ? 1.0 : (g < 0 ? -1.0 : 0.0);
      // exact value lr·g/(|g| + ε): within lr·ε/|g| of lr·sign(g)
      CHECK(X0(i, m) - X(i, m) == doctest::Approx(lr * sign).epsilon(1e-4));
      CHECK(std::abs(X0(i, m) - X(i, m) - lr * sign) <= lr * opt.eps / std::max(std::abs(g), 1e-300) + 1e-15);
    }
  CHECK(X(2, 1) == X0(2, 1));
}

TEST_CASE("AdamW keeps one step count per worker and decays x decoupled from g") {
  const lgm::AdamW opt{.weight_decay = 0.1};
  Matrix X = random_matrix(kDim, 2, 31);
  const Columns x0 = to_columns(X);
  auto state = opt.init(kDim, 2);
  AdamLoopState r0{x0[0], std::vector<double>(kDim, 0.0), std::vector<double>(kDim, 0.0)};
  AdamLoopState r1{x0[1], std::vector<double>(kDim, 0.0), std::vector<double>(kDim, 0.0)};
  // worker 0 takes four steps, worker 1 one step: their bias corrections differ
  for (Index k = 0; k < 4; ++k) {
    const Matrix G = random_matrix(kDim, 2, 40 + static_cast<std::uint64_t>(k));
    const Columns g = to_columns(G);
    opt.step(state, 0, X.col(0), G.col(0), 0.02);
    adam_loop_step(r0, g[0], 0.02, opt.beta1, opt.beta2, opt.eps, opt.weight_decay);
    if (k == 3) {
      opt.step(state, 1, X.col(1), G.col(1), 0.02);
      adam_loop_step(r1, g[1], 0.02, opt.beta1, opt.beta2, opt.eps, opt.weight_decay);
    }
  }
  CHECK(state.step[0] == 4);
  CHECK(state.step[1] == 1);
  CHECK(near(X, Columns{r0.x, r1.x}, 1e-13));

  // zero gradient on fresh state: only the decoupled decay acts, x ← x(1 − lr·λ)
  const lgm::AdamW decay_only{.weight_decay = 0.5};
  auto s = decay_only.init(kDim, 1);
  Vector x = Vector::Constant(kDim, 2.0);
  const Vector zero = Vector::Zero(kDim);
  decay_only.step(s, 0, x, zero, 0.1);
  for (Index i = 0; i < kDim; ++i) CHECK(x(i) == doctest::Approx(2.0 * (1.0 - 0.1 * 0.5)).epsilon(1e-15));
}

TEST_CASE("AdamW's decay mask decays exactly the masked coordinates; clipping scales g by min(1, c/(|g| + 1e-6))") {
  Vector mask(kDim);
  for (Index i = 0; i < kDim; ++i) mask(i) = i % 2 == 0 ? 1.0 : 0.0;
  const lgm::AdamW masked{.weight_decay = 0.2, .decay_mask = mask};
  const lgm::AdamW all{.weight_decay = 0.2}, none{.weight_decay = 0.0};
  masked.validate();
  Matrix Xm = random_matrix(kDim, 1, 51), Xa = Xm, Xn = Xm;
  auto sm = masked.init(kDim, 1), sa = all.init(kDim, 1), sn = none.init(kDim, 1);
  for (Index k = 0; k < 3; ++k) {
    const Matrix G = random_matrix(kDim, 1, 60 + static_cast<std::uint64_t>(k));
    masked.step(sm, 0, Xm.col(0), G.col(0), 0.05);
    all.step(sa, 0, Xa.col(0), G.col(0), 0.05);
    none.step(sn, 0, Xn.col(0), G.col(0), 0.05);
  }
  for (Index i = 0; i < kDim; ++i) CHECK(Xm(i, 0) == (i % 2 == 0 ? Xa(i, 0) : Xn(i, 0)));  // elementwise: exact

  // clipping to c = 0.5 is the unclipped step on g · c/(‖g‖ + 1e-6); a gradient below c is left alone
  const lgm::AdamW clipped{.weight_decay = 0.0, .max_grad_norm = 0.5};
  for (double scale : {10.0, 0.01}) {
    CAPTURE(scale);
    const Matrix G = scale * random_matrix(kDim, 1, 70);
    const double factor = std::min(1.0, 0.5 / (G.col(0).norm() + 1e-6));
    CHECK((scale > 1.0 ? factor < 1.0 : factor == 1.0));
    Matrix Xc = random_matrix(kDim, 1, 71), Xh = Xc;
    auto sc = clipped.init(kDim, 1), sh = none.init(kDim, 1);
    clipped.step(sc, 0, Xc.col(0), G.col(0), 0.05);
    const Vector g = factor * G.col(0);
    none.step(sh, 0, Xh.col(0), g, 0.05);
    CHECK((Xc - Xh).cwiseAbs().maxCoeff() <= 1e-15);
  }
  // a mask of another dimension, or with values other than 0 and 1, is refused naming the field
  CHECK_THROWS_WITH_AS((void)masked.init(kDim + 1, 1), doctest::Contains("decay_mask (size)"), lgm::ConfigError);
  Vector half = mask;
  half(1) = 0.5;
  CHECK_THROWS_WITH_AS(lgm::AdamW{.decay_mask = half}.validate(), doctest::Contains("decay_mask[1]"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::AdamW{.max_grad_norm = -1.0}.validate(), doctest::Contains("max_grad_norm"),
                       lgm::ConfigError);
}

// ================================================================ properties shared by all optimizers

TEST_CASE_TEMPLATE("the result does not depend on the order in which workers step", Opt, lgm::SGD, lgm::HeavyBall,
                   lgm::Nesterov, lgm::AdamW) {
  Opt opt;
  opt.weight_decay = 0.05;
  const Matrix X0 = random_matrix(kDim, kWorkers, 37);
  Matrix A = X0, B = X0, C = X0;
  auto sa = opt.init(kDim, kWorkers);
  auto sb = opt.init(kDim, kWorkers);
  auto sc = opt.init(kDim, kWorkers);
  run_steps(opt, sa, A, {0, 1, 2});
  run_steps(opt, sb, B, {2, 1, 0});
  run_steps(opt, sc, C, {1, 2, 0});
  CHECK(bitwise_equal(A, B));
  CHECK(bitwise_equal(A, C));
  if constexpr (requires { sa.momentum; }) {
    CHECK(bitwise_equal(sa.momentum, sb.momentum));
    CHECK(bitwise_equal(sa.momentum, sc.momentum));
  }
  if constexpr (requires { sa.exp_avg; }) {
    CHECK(bitwise_equal(sa.exp_avg_sq, sb.exp_avg_sq));
    CHECK(bitwise_equal(sa.exp_avg, sc.exp_avg));
  }

  // a worker's column is untouched by the other workers' steps
  Matrix D = X0;
  auto sd = opt.init(kDim, kWorkers);
  run_steps(opt, sd, D, {1});
  CHECK(bitwise_equal(D.col(0), X0.col(0)));
  CHECK(bitwise_equal(D.col(2), X0.col(2)));
  CHECK(bitwise_equal(D.col(1), A.col(1)));
}

TEST_CASE_TEMPLATE("a step does not allocate", Opt, lgm::SGD, lgm::HeavyBall, lgm::Nesterov, lgm::AdamW) {
  for (double wd : {0.0, 0.05}) {  // both branches of every step
    CAPTURE(wd);
    Opt opt;
    opt.weight_decay = wd;
    if constexpr (std::is_same_v<Opt, lgm::AdamW>) {  // and the language-model options
      opt.max_grad_norm = 1.0;
      opt.decay_mask = Vector::Ones(kDim);
    }
    Matrix X = random_matrix(kDim, kWorkers, 41);
    const Matrix G = gradients(0);
    auto state = opt.init(kDim, kWorkers);
    Eigen::internal::set_is_malloc_allowed(false);  // Eigen asserts on any heap allocation from here
    for (int k = 0; k < 3; ++k)
      for (Index m = 0; m < kWorkers; ++m) opt.step(state, m, X.col(m), G.col(m), 0.1);
    Eigen::internal::set_is_malloc_allowed(true);
    CHECK(X.allFinite());
  }
}

TEST_CASE("for_each_averaged_field visits exactly the selected fields") {
  {
    lgm::SGD sgd;
    auto s = sgd.init(kDim, kWorkers);
    CHECK(visited_fields(sgd, s).empty());
    CHECK(sgd.averaged_field_count() == 0);
  }
  for (bool avg : {false, true}) {
    CAPTURE(avg);
    const lgm::HeavyBall hb{.average_momentum = avg};
    auto s = hb.init(kDim, kWorkers);
    const auto seen = visited_fields(hb, s);
    CHECK(static_cast<Index>(seen.size()) == hb.averaged_field_count());
    CHECK(seen == (avg ? std::vector<const double*>{s.momentum.data()} : std::vector<const double*>{}));
    const lgm::Nesterov nag{.average_momentum = avg};
    auto t = nag.init(kDim, kWorkers);
    const auto seen_nag = visited_fields(nag, t);
    CHECK(static_cast<Index>(seen_nag.size()) == nag.averaged_field_count());
    CHECK(seen_nag == (avg ? std::vector<const double*>{t.momentum.data()} : std::vector<const double*>{}));
  }
  for (bool m1 : {false, true})
    for (bool m2 : {false, true}) {
      CAPTURE(m1);
      CAPTURE(m2);
      const lgm::AdamW adamw{.average_first_moment = m1, .average_second_moment = m2};
      auto s = adamw.init(kDim, kWorkers);
      std::vector<const double*> expected;
      if (m1) expected.push_back(s.exp_avg.data());
      if (m2) expected.push_back(s.exp_avg_sq.data());
      const auto seen = visited_fields(adamw, s);
      CHECK(seen == expected);
      CHECK(adamw.averaged_field_count() == static_cast<Index>(expected.size()));
    }

  // the visitor can write the field, as the driver's averaging does
  const lgm::HeavyBall hb{.average_momentum = true};
  auto s = hb.init(kDim, kWorkers);
  s.momentum = random_matrix(kDim, kWorkers, 43);
  const Vector mean = s.momentum.rowwise().mean();
  hb.for_each_averaged_field(s, [](lgm::MatrixRef F) {
    const Vector mu = F.rowwise().mean();
    F.colwise() = mu;
  });
  for (Index m = 0; m < kWorkers; ++m) CHECK(s.momentum.col(m).isApprox(mean, 1e-15));
}

// ================================================================ outer optimizers

TEST_CASE("Averaging and OuterSGD(lr = 1, momentum = 0) give the mean, bitwise") {
  const Vector x0 = random_matrix(kDim, 1, 47);
  lgm::Averaging avg;
  lgm::OuterSGD outer;
  avg.init(kDim);
  outer.init(kDim);
  Vector a = x0, b = x0;
  for (std::uint64_t round = 0; round < 4; ++round) {
    const Vector mean = random_matrix(kDim, kWorkers, 50 + round).rowwise().mean();
    avg.apply(a, mean);
    outer.apply(b, mean);
    CHECK(bitwise_equal(a, mean));
    CHECK(bitwise_equal(b, mean));
  }
}

TEST_CASE("the general outer-SGD formula at lr = 1, momentum = 0 agrees with the mean to 1e-15") {
  // x − 1·(x − mean) computed the long way, as the general branch would: equal up to the last bit.
  const Vector x = random_matrix(kDim, 1, 53);
  const Vector mean = random_matrix(kDim, 1, 59);
  for (Index i = 0; i < kDim; ++i) {
    const double delta = x(i) - mean(i);
    const double v = 0.0 * 0.0 + delta;
    const double general = x(i) - 1.0 * v;
    CHECK(std::abs(general - mean(i)) <= 1e-15 * std::max(std::abs(x(i)), std::abs(mean(i))));
  }
  // and a tiny deviation from lr = 1 takes the general branch, which is continuous in lr
  lgm::OuterSGD outer({.lr = 1.0 - 1e-12});
  outer.init(kDim);
  Vector y = x;
  outer.apply(y, mean);
  CHECK(y.isApprox(mean, 1e-11));
  CHECK(outer.velocity().isApprox(x - mean, 1e-15));
}

TEST_CASE("Lookahead's slow-weight update equals OuterSGD(lr = α, momentum = 0) on one worker") {
  // Lookahead (Zhang et al. 2019): k fast SGD steps from φ, then φ ← φ + α(θ − φ), θ ← φ.
  const double alpha = 0.5, lr = 0.1;
  const Index k_fast = 3;
  const lgm::SGD sgd;
  lgm::OuterSGD outer({.lr = alpha});
  outer.init(kDim);
  auto state = sgd.init(kDim, 1);

  Vector phi_lib = random_matrix(kDim, 1, 61);
  std::vector<double> phi_ref(phi_lib.data(), phi_lib.data() + kDim);
  for (Index round = 0; round < 4; ++round) {
    Vector theta_lib = phi_lib;
    std::vector<double> theta_ref = phi_ref;
    for (Index j = 0; j < k_fast; ++j) {
      // gradient of ½‖x − c‖² with c fixed per step: g = x − c
      const Vector c = random_matrix(kDim, 1, 70 + static_cast<std::uint64_t>(round * k_fast + j));
      const Vector g = theta_lib - c;
      sgd.step(state, 0, theta_lib, g, lr);
      for (Index i = 0; i < kDim; ++i) {
        const auto ui = static_cast<size_t>(i);
        theta_ref[ui] -= lr * (theta_ref[ui] - c(i));
      }
    }
    outer.apply(phi_lib, theta_lib);  // one worker: the mean is θ
    for (size_t i = 0; i < phi_ref.size(); ++i) phi_ref[i] = phi_ref[i] + alpha * (theta_ref[i] - phi_ref[i]);
    CHECK(near(phi_lib, phi_ref, 1e-15));
  }
}

TEST_CASE("OuterSGD with momentum, plain and Nesterov, equals a hand loop") {
  for (bool nesterov : {false, true}) {
    CAPTURE(nesterov);
    const double lr = 0.7, mu = 0.9;
    lgm::OuterSGD outer({.lr = lr, .momentum = mu, .nesterov = nesterov});
    outer.init(kDim);
    Vector x = random_matrix(kDim, 1, 83);
    std::vector<double> x_ref(x.data(), x.data() + kDim), v_ref(kDim, 0.0);
    for (std::uint64_t round = 0; round < 5; ++round) {
      // the new worker mean: the shared point moved by a random local displacement
      const Vector mean = x + 0.1 * random_matrix(kDim, 1, 90 + round);
      const std::vector<double> mean_ref(mean.data(), mean.data() + kDim);
      outer.apply(x, mean);
      for (size_t i = 0; i < x_ref.size(); ++i) {
        const double delta = x_ref[i] - mean_ref[i];  // pseudo-gradient, docs/optimizers.md §OuterSGD
        v_ref[i] = mu * v_ref[i] + delta;
        const double dir = nesterov ? delta + mu * v_ref[i] : v_ref[i];
        x_ref[i] -= lr * dir;
      }
      CHECK(near(x, x_ref, 1e-14));
      CHECK(near(outer.velocity(), v_ref, 1e-14));
    }
  }
}

TEST_CASE("DiLoCoOuter is outer Nesterov with lr 0.7 and momentum 0.9") {
  lgm::DiLoCoOuter diloco;
  lgm::OuterSGD explicit_outer({.lr = 0.7, .momentum = 0.9, .nesterov = true});
  diloco.init(kDim);
  explicit_outer.init(kDim);
  Vector a = random_matrix(kDim, 1, 97), b = a;
  for (std::uint64_t round = 0; round < 3; ++round) {
    const Vector mean = random_matrix(kDim, 1, 100 + round);
    diloco.apply(a, mean);
    explicit_outer.apply(b, mean);
  }
  CHECK(bitwise_equal(a, b));
  // the first sync from v = 0 moves by lr·(1 + μ)·Δ
  lgm::DiLoCoOuter first;
  first.init(kDim);
  const Vector x0 = Vector::Constant(kDim, 1.0), mean = Vector::Constant(kDim, 0.5);
  Vector x = x0;
  first.apply(x, mean);
  for (Index i = 0; i < kDim; ++i) CHECK(x(i) == doctest::Approx(1.0 - 0.7 * 1.9 * 0.5).epsilon(1e-15));
}

TEST_CASE("outer apply does not allocate and checks the dimension") {
  lgm::OuterSGD outer = lgm::OuterSGD::diloco();
  outer.init(kDim);
  Vector x = random_matrix(kDim, 1, 101);
  const Vector mean = random_matrix(kDim, 1, 103);
  Eigen::internal::set_is_malloc_allowed(false);
  outer.apply(x, mean);
  outer.apply(x, mean);
  Eigen::internal::set_is_malloc_allowed(true);
  CHECK(x.allFinite());

  Vector wrong(kDim + 1);
  wrong.setZero();
  const Vector wrong_mean = Vector::Zero(kDim + 1);
  CHECK_THROWS_WITH_AS(outer.apply(wrong, wrong_mean), doctest::Contains("dim = 8"), lgm::ConfigError);
  lgm::OuterSGD uninitialized;
  CHECK_THROWS_WITH_AS(uninitialized.apply(x, mean), doctest::Contains("init"), lgm::ConfigError);
}

// ================================================================ validation

TEST_CASE("validate() names the parameter, the value and the accepted range") {
  using doctest::Contains;
  const std::string half_open = "a number in [0, 1)";
  const std::string nonneg = "a finite number >= 0";
  const std::string positive = "a finite number > 0";
  auto message = [](auto&& validatable) -> std::string {
    try {
      validatable.validate();
    } catch (const lgm::ConfigError& e) {
      return e.what();
    }
    return "no error";
  };

  CHECK(message(lgm::SGD{.weight_decay = -0.1}) ==
        "invalid weight_decay = -0.10000000000000001 (accepted: " + nonneg + ")");
  CHECK(message(lgm::SGD{.weight_decay = 0.0}) == "no error");

  for (double bad : {-0.5, 1.0, 1.5, std::nan("")}) {
    CAPTURE(bad);
    const std::string m1 = message(lgm::HeavyBall{.momentum = bad});
    CHECK(m1.find("momentum = " + lgm::detail::to_text(bad)) != std::string::npos);
    CHECK(m1.find(half_open) != std::string::npos);
    const std::string m2 = message(lgm::Nesterov{.momentum = bad});
    CHECK(m2.find("momentum = " + lgm::detail::to_text(bad)) != std::string::npos);
    CHECK(m2.find(half_open) != std::string::npos);
    const std::string b1 = message(lgm::AdamW{.beta1 = bad});
    CHECK(b1.find("beta1 = " + lgm::detail::to_text(bad)) != std::string::npos);
    CHECK(b1.find(half_open) != std::string::npos);
    const std::string b2 = message(lgm::AdamW{.beta2 = bad});
    CHECK(b2.find("beta2 = " + lgm::detail::to_text(bad)) != std::string::npos);
    CHECK(b2.find(half_open) != std::string::npos);
    const std::string om = message(lgm::OuterSGD({.momentum = bad}));
    CHECK(om.find("outer_momentum = " + lgm::detail::to_text(bad)) != std::string::npos);
    CHECK(om.find(half_open) != std::string::npos);
  }
  CHECK(message(lgm::HeavyBall{.momentum = 0.0}) == "no error");
  CHECK(message(lgm::AdamW{.beta1 = 0.0, .beta2 = 0.0}) == "no error");

  CHECK_THROWS_WITH_AS(lgm::HeavyBall{.weight_decay = -1.0}.validate(), Contains("weight_decay = -1"),
                       lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::Nesterov{.weight_decay = -1.0}.validate(), Contains(nonneg.c_str()), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::AdamW{.weight_decay = -0.01}.validate(), Contains("weight_decay = -0.01"),
                       lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::AdamW{.weight_decay = std::numeric_limits<double>::infinity()}.validate(),
                       Contains("weight_decay = inf"), lgm::ConfigError);

  CHECK(message(lgm::AdamW{.eps = 0.0}) == "invalid eps = 0 (accepted: " + positive + ")");
  CHECK_THROWS_WITH_AS(lgm::AdamW{.eps = -1e-8}.validate(), Contains("eps = -1e-08"), lgm::ConfigError);

  CHECK(message(lgm::OuterSGD({.lr = 0.0})) == "invalid outer_lr = 0 (accepted: " + positive + ")");
  CHECK_THROWS_WITH_AS(lgm::OuterSGD({.lr = -0.7}).validate(), Contains("outer_lr = -0.69999999999999996"),
                       lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::DiLoCoOuter({.lr = 0.7, .momentum = 1.0, .nesterov = true}).validate(),
                       Contains("outer_momentum = 1"), lgm::ConfigError);
  CHECK(message(lgm::OuterSGD({.lr = 2.0, .momentum = 0.99})) == "no error");

  // the error carries the parameter name for programs that map it back to a config key
  try {
    lgm::AdamW{.beta2 = 1.0}.validate();
    FAIL("no error");
  } catch (const lgm::ConfigError& e) {
    CHECK(e.parameter() == "beta2");
  }
}
