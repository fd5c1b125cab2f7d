// Ridge / ordinary least squares, the toy of docs/theory.md §Toy problem:
//   f_i(x) = ½(a_iᵀx − y_i)² + (λ/2)‖x‖²,   F(x) = (1/N) Σ_i f_i(x),
// with exact constants from the eigen-decomposition of the second-moment matrix S = AAᵀ/N (A = d × N):
//   L = λ_max(S) + λ,  μ = λ_min(S) + λ,  x* = (S + λI)⁺ (A y / N)  (minimum-norm when μ = 0),  f* = F(x*).
#pragma once

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/problems/dataset.hpp"
#include "lgm/problems/linear_model.hpp"

namespace lgm {

/// Options of LeastSquares::synthetic. Features a_i = Q diag(√s) z_i with z_i ~ N(0, I) and Q Haar-random, so
/// the feature covariance is Q diag(s) Qᵀ; s has `rank` entries spread log-uniformly from cov_max/condition to
/// cov_max and d − rank zeros. Targets y_i = a_iᵀw + noise·ε_i with w, ε_i standard normal.
struct LeastSquaresOptions {
  Index N = 1000;           ///< samples
  Index d = 10;             ///< features
  double cov_max = 1.0;     ///< largest eigenvalue of the feature covariance
  double condition = 10.0;  ///< cov_max / smallest nonzero covariance eigenvalue, >= 1
  Index rank = 0;           ///< nonzero covariance eigenvalues; 0 means d (full rank). rank < d gives μ = 0 at λ = 0
  double noise = 0.1;       ///< standard deviation of the target noise
  double lambda = 0.0;      ///< ridge parameter λ
  std::uint64_t seed = 0;

  void validate() const {
    detail::require_at_least("N", N, Index{1});
    detail::require_at_least("d", d, Index{1});
    detail::require_positive("cov_max", cov_max);
    detail::require(std::isfinite(condition) && condition >= 1.0, "condition", condition, "a finite number >= 1");
    detail::require_in_range("rank", rank, Index{0}, d);
    detail::require_nonnegative("noise", noise);
    detail::require_nonnegative("lambda", lambda);
  }
};

/// Least squares with optional ridge term; models lgm::HasClosedFormMoments, HasSmoothness, HasStrongConvexity
/// and HasKnownOptimum (all exact up to rounding; μ = 0 when the data are rank-deficient and λ = 0).
class LeastSquares : public detail::LinearModel<detail::SquaredLoss, detail::L2Regularizer> {
  using Base = detail::LinearModel<detail::SquaredLoss, detail::L2Regularizer>;

 public:
  /// `features` is d × N (column i = a_i), `targets` has N entries, λ = `lambda` >= 0.
  /// Throws DataError for non-finite data or mismatched sizes, ConfigError for λ < 0.
  LeastSquares(Matrix features, Vector targets, double lambda = 0.0)
      : Base(std::move(features), std::move(targets), detail::L2Regularizer{lambda}) {
    detail::require_nonnegative("lambda", lambda);
    detail::check_targets(m_targets, num_samples());
    compute_constants();
  }

  /// Seeded synthetic problem with a chosen covariance spectrum (see LeastSquaresOptions).
  static LeastSquares synthetic(const LeastSquaresOptions& opt = {}) {
    opt.validate();
    detail::DataRng rng(opt.seed);
    const Index rank = opt.rank == 0 ? opt.d : opt.rank;
    const Matrix q = detail::random_orthogonal(opt.d, rng);
    const Vector s = detail::log_spaced(rank, opt.cov_max / opt.condition, opt.cov_max);
    // only the first `rank` directions carry variance: a_i = Q_{:,1:rank} diag(√s) z_i
    const Matrix factor = q.leftCols(rank) * s.cwiseSqrt().asDiagonal();
    const Matrix z = rng.normal_matrix(rank, opt.N);
    Matrix features = factor * z;
    const Vector w = rng.normal_vector(opt.d);
    Vector targets = features.transpose() * w;
    for (Index i = 0; i < opt.N; ++i) targets[i] += opt.noise * rng.normal();
    return LeastSquares(std::move(features), std::move(targets), opt.lambda);
  }

  const Vector& targets() const noexcept { return m_targets; }
  double lambda() const noexcept { return m_reg.lambda; }

  /// L = λ_max(AAᵀ/N) + λ (exact: ∇²F is constant).
  double smoothness() const noexcept { return m_smoothness; }
  /// μ = λ_min(AAᵀ/N) + λ (exact; eigenvalues within rounding of 0 are taken as 0).
  double strong_convexity() const noexcept { return m_strong_convexity; }
  /// A minimizer of F: the unique one when μ > 0, else the minimum-norm one (where gradient descent from 0 goes).
  const Vector& optimum() const noexcept { return m_optimum; }
  /// f* = F(x*).
  double optimal_value() const noexcept { return m_optimal_value; }
  /// Eigenvalues of AAᵀ/N, ascending (without λ).
  const Vector& covariance_spectrum() const noexcept { return m_spectrum; }

 private:
  void compute_constants() {
    const Index d = dim();
    const auto es = detail::gram_eigensystem(m_features);
    m_spectrum = detail::clamp_rounding_eigenvalues(es.eigenvalues(), std::max(d, num_samples()));
    const double lambda = m_reg.lambda;
    m_smoothness = m_spectrum[d - 1] + lambda;
    m_strong_convexity = m_spectrum[0] + lambda;

    // x* = V diag(1/(s_j + λ)) Vᵀ b on the range of S + λI, b = A y / N, then one step of iterative refinement
    // (the residual is computed from the data, not from the Gram matrix, to recover the digits it lost).
    const Matrix& v = es.eigenvectors();
    Vector inv(d);
    for (Index j = 0; j < d; ++j) {
      const double e = m_spectrum[j] + lambda;
      inv[j] = e > 0.0 ? 1.0 / e : 0.0;
    }
    const Vector b = m_features * m_targets / static_cast<double>(num_samples());
    m_optimum = v * inv.asDiagonal() * (v.transpose() * b);
    Vector grad(d);
    full_data_gradient(m_optimum, grad);
    m_optimum -= v * inv.asDiagonal() * (v.transpose() * grad);
    m_optimal_value = full_data_loss(m_optimum);
  }

  Vector m_spectrum;
  double m_smoothness = 0.0;
  double m_strong_convexity = 0.0;
  Vector m_optimum;
  double m_optimal_value = 0.0;
};

}  // namespace lgm
