// Binary logistic regression with labels y_i ∈ {−1, +1} and an L2 term:
//   f_i(x) = log(1 + exp(−y_i a_iᵀx)) + (λ/2)‖x‖².
// ∇²F(x) = (1/N) Σ σ'(a_iᵀx) a_i a_iᵀ + λI with 0 < σ' ≤ ¼ and σ'(0) = ¼, so
//   L = λ_max(AAᵀ)/(4N) + λ  (exact: the supremum of ‖∇²F‖, attained at x = 0),
//   μ = λ                    (exact: the infimum of λ_min(∇²F), approached as ‖x‖ → ∞).
// x* (when λ > 0) is computed at construction by damped Newton's method to rounding accuracy.
#pragma once

#include <Eigen/Cholesky>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/problems/dataset.hpp"
#include "lgm/problems/linear_model.hpp"

namespace lgm {

/// Options of Logistic::synthetic: a_i ~ N(0, I_d), y_i = +1 with probability σ(a_iᵀw), w uniform on the sphere
/// of radius `signal` (make_binary_teacher).
struct LogisticOptions {
  Index N = 1000;               ///< samples
  Index d = 10;                 ///< features
  double lambda = 1e-2;         ///< L2 parameter λ >= 0
  double signal = 2.0;          ///< ‖w_teacher‖: larger means cleaner labels
  bool compute_optimum = true;  ///< solve for x* by Newton's method (only when λ > 0)
  std::uint64_t seed = 0;

  void validate() const {
    detail::require_nonnegative("lambda", lambda);
    BinaryTeacherOptions{N, d, signal, seed}.validate();
  }
};

/// Binary logistic regression; models lgm::HasClosedFormMoments, HasSmoothness, HasStrongConvexity and
/// HasKnownOptimum (optimum() throws ConfigError when x* was not computed: λ = 0 or compute_optimum = false).
class Logistic : public detail::LinearModel<detail::LogisticLoss, detail::L2Regularizer> {
  using Base = detail::LinearModel<detail::LogisticLoss, detail::L2Regularizer>;

 public:
  /// `features` d × N (column i = a_i); `labels` N entries, each −1 or +1; λ = `lambda` >= 0. With λ > 0 and
  /// `compute_optimum`, x* is found by Newton's method here (cost O(N d²) per iteration, ~10 iterations).
  /// Throws DataError for non-finite data, mismatched sizes or labels other than ±1; ConfigError for λ < 0.
  Logistic(Matrix features, Vector labels, double lambda = 0.0, bool compute_optimum = true)
      : Base(std::move(features), std::move(labels), detail::L2Regularizer{lambda}) {
    detail::require_nonnegative("lambda", lambda);
    detail::check_binary_labels(m_targets, num_samples());
    m_smoothness = detail::gram_max_eigenvalue(m_features) / 4.0 + lambda;
    if (lambda > 0.0 && compute_optimum) solve_optimum();
  }

  static Logistic synthetic(const LogisticOptions& opt = {}) {
    opt.validate();
    BinaryData data = make_binary_teacher({opt.N, opt.d, opt.signal, opt.seed});
    return Logistic(std::move(data.features), std::move(data.labels), opt.lambda, opt.compute_optimum);
  }

  /// y_i ∈ {−1, +1}.
  const Vector& labels() const noexcept { return m_targets; }
  double lambda() const noexcept { return m_reg.lambda; }

  /// L = λ_max(AAᵀ)/(4N) + λ (exact, attained at x = 0).
  double smoothness() const noexcept { return m_smoothness; }
  /// μ = λ (exact; 0 means convex but not strongly convex).
  double strong_convexity() const noexcept { return m_reg.lambda; }

  /// Whether x* was computed (λ > 0 and compute_optimum).
  bool has_optimum() const noexcept { return m_has_optimum; }
  /// x*, the unique minimizer (λ > 0); throws ConfigError when it was not computed.
  const Vector& optimum() const {
    require_optimum();
    return m_optimum;
  }
  /// f* = F(x*); throws ConfigError when x* was not computed.
  double optimal_value() const {
    require_optimum();
    return m_optimal_value;
  }
  /// Newton iterations used for x* (0 when not computed).
  int newton_iterations() const noexcept { return m_newton_iterations; }

 private:
  void require_optimum() const {
    if (!m_has_optimum)
      throw ConfigError("optimum", "not computed (lambda = " + detail::to_text(m_reg.lambda) + ")",
                        "a Logistic built with lambda > 0 and compute_optimum = true");
  }

  /// Damped Newton from x = 0: Armijo backtracking on F while far from x*, full steps once the Newton decrement
  /// is below 1e-12(1 + |F|) (deep in the region of quadratic convergence). It stops there when a step is shorter
  /// than 1e-14(1 + ‖x‖) or no shorter than half the previous one: quadratic convergence has then reached the
  /// rounding floor of ∇F, so ‖x − x*‖ is of the order of that rounding divided by λ.
  void solve_optimum() {
    const Index d = dim(), n = num_samples();
    const double lambda = m_reg.lambda;
    Vector x = Vector::Zero(d), grad(d), step(d), trial(d);
    Matrix weighted(d, n), hess(d, d);
    double f = full_data_loss(x);
    double previous_step = std::numeric_limits<double>::infinity();
    constexpr int max_iterations = 200;
    for (int it = 1; it <= max_iterations; ++it) {
      full_data_gradient(x, grad);
      for (Index i = 0; i < n; ++i) {
        const double z = m_features.col(i).dot(x);
        weighted.col(i) = std::sqrt(detail::sigmoid(z) * detail::sigmoid(-z)) * m_features.col(i);
      }
      hess.setZero();
      hess.selfadjointView<Eigen::Lower>().rankUpdate(weighted, 1.0 / static_cast<double>(n));
      hess.diagonal().array() += lambda;
      step = hess.selfadjointView<Eigen::Lower>().llt().solve(grad);
      const double decrement = grad.dot(step);  // Newton decrement², ≈ 2(F(x) − f*)
      const double step_norm = step.norm();
      const bool polishing = decrement <= 1e-12 * (1.0 + std::abs(f));
      double t = 1.0, f_trial = 0.0;
      for (;;) {
        trial = x - t * step;
        f_trial = full_data_loss(trial);
        if (polishing || f_trial <= f - 0.25 * t * decrement || t < 1e-12) break;
        t *= 0.5;
      }
      x = trial;
      f = f_trial;
      if (polishing && (step_norm <= 1e-14 * (1.0 + x.norm()) || step_norm > 0.5 * previous_step)) {
        m_optimum = std::move(x);
        m_optimal_value = full_data_loss(m_optimum);
        m_has_optimum = true;
        m_newton_iterations = it;
        return;
      }
      previous_step = step_norm;
    }
    throw DataError("Logistic: Newton's method for x* did not converge in " + detail::to_text(max_iterations) +
                    " iterations (lambda = " + detail::to_text(lambda) +
                    "); construct with compute_optimum = false or a larger lambda");
  }

  double m_smoothness = 0.0;
  Vector m_optimum;
  double m_optimal_value = 0.0;
  bool m_has_optimum = false;
  int m_newton_iterations = 0;
};

}  // namespace lgm
