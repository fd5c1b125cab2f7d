// Binary logistic regression with a smooth nonconvex regularizer, a common nonconvex test problem in the
// stochastic-optimization literature:
//   f_i(x) = log(1 + exp(−y_i a_iᵀx)) + λ Σ_j x_j²/(1 + x_j²),   y_i ∈ {−1, +1}.
// With h(t) = t²/(1 + t²): h'' = (2 − 6t²)/(1 + t²)³ ∈ [−½, 2] and h''(0) = 2, so
//   ∇²F(x) = (1/N) Σ σ'(a_iᵀx) a_i a_iᵀ + λ diag(h''(x_j)),   −(λ/2) I ≼ ∇²F(x) ≼ (λ_max(AAᵀ)/(4N) + 2λ) I,
// and the upper bound is attained at x = 0: L = λ_max(AAᵀ)/(4N) + 2λ is the exact smoothness constant.
// The regularizer is deterministic, so every ∇f_i is shifted by the same vector ∇R(x) (closed-form moments).
#pragma once

#include <cstdint>
#include <utility>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/problems/dataset.hpp"
#include "lgm/problems/linear_model.hpp"

namespace lgm {

/// Options of NonconvexLogistic::synthetic (same data as LogisticOptions: make_binary_teacher).
struct NonconvexLogisticOptions {
  Index N = 1000;       ///< samples
  Index d = 10;         ///< features
  double lambda = 0.1;  ///< weight λ >= 0 of the nonconvex regularizer
  double signal = 2.0;  ///< ‖w_teacher‖
  std::uint64_t seed = 0;

  void validate() const {
    detail::require_nonnegative("lambda", lambda);
    BinaryTeacherOptions{N, d, signal, seed}.validate();
  }
};

/// Logistic loss + λ Σ_j x_j²/(1 + x_j²); models lgm::HasClosedFormMoments and HasSmoothness (exact L).
/// Nonconvex for λ > 0: no strong convexity, no known optimum.
class NonconvexLogistic : public detail::LinearModel<detail::LogisticLoss, detail::NonconvexRegularizer> {
  using Base = detail::LinearModel<detail::LogisticLoss, detail::NonconvexRegularizer>;

 public:
  /// `features` d × N (column i = a_i); `labels` N entries, each −1 or +1; λ = `lambda` >= 0.
  /// Throws DataError for non-finite data, mismatched sizes or labels other than ±1; ConfigError for λ < 0.
  NonconvexLogistic(Matrix features, Vector labels, double lambda = 0.1)
      : Base(std::move(features), std::move(labels), detail::NonconvexRegularizer{lambda}) {
    detail::require_nonnegative("lambda", lambda);
    detail::check_binary_labels(m_targets, num_samples());
    m_smoothness = detail::gram_max_eigenvalue(m_features) / 4.0 + 2.0 * lambda;
  }

  static NonconvexLogistic synthetic(const NonconvexLogisticOptions& opt = {}) {
    opt.validate();
    BinaryData data = make_binary_teacher({opt.N, opt.d, opt.signal, opt.seed});
    return NonconvexLogistic(std::move(data.features), std::move(data.labels), opt.lambda);
  }

  /// y_i ∈ {−1, +1}.
  const Vector& labels() const noexcept { return m_targets; }
  double lambda() const noexcept { return m_reg.lambda; }

  /// L = λ_max(AAᵀ)/(4N) + 2λ = sup_x ‖∇²F(x)‖ (exact, attained at x = 0).
  double smoothness() const noexcept { return m_smoothness; }
  /// ρ = λ/2: ∇²F ≽ −ρI everywhere, i.e. F + (ρ/2)‖x‖² is convex (a bound; the data term only adds curvature).
  double weak_convexity_bound() const noexcept { return 0.5 * m_reg.lambda; }

 private:
  double m_smoothness = 0.0;
};

}  // namespace lgm
