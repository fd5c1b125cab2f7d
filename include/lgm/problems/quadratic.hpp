// A noisy quadratic with every constant known exactly (docs/problems.md §Quadratic):
//   f_i(x) = ½(x − x*)ᵀA(x − x*) + ⟨ξ_i, x − x*⟩,  Σ_i ξ_i = 0,
// so F(x) = ½(x − x*)ᵀA(x − x*), its minimizer is x*, f* = 0, L = λ_max(A), μ = λ_min(A), and
//   ∇f_i(x) − ∇F(x) = ξ_i  ⇒  σ²(x) = (1/N) Σ_i ‖ξ_i‖²  for every x.
#pragma once

#include <Eigen/Eigenvalues>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/problems/dataset.hpp"

namespace lgm {

/// Options of Quadratic::synthetic: A = Q diag(s) Qᵀ with s spread log-uniformly from μ to L (both included)
/// and Q Haar-random; x* ~ N(0, I); ξ_i Gaussian, centered, then scaled so that σ² = noise² exactly.
struct QuadraticOptions {
  Index d = 10;        ///< dimension
  double mu = 0.1;     ///< μ = λ_min(A) > 0
  double L = 1.0;      ///< L = λ_max(A) >= μ
  Index N = 100;       ///< samples (noise vectors)
  double noise = 1.0;  ///< σ = √σ²: the root-mean-square norm of the centered ξ_i
  std::uint64_t seed = 0;

  void validate() const {
    detail::require_at_least("d", d, Index{1});
    detail::require_positive("mu", mu);
    detail::require(std::isfinite(L) && L >= mu, "L", L, "a finite number >= mu = " + detail::to_text(mu));
    detail::require(d > 1 || L == mu, "L", L, "L = mu = " + detail::to_text(mu) + " when d = 1 (one eigenvalue)");
    detail::require_at_least("N", N, Index{1});
    detail::require_nonnegative("noise", noise);
    detail::require(noise == 0.0 || N >= 2, "N", N, "an integer >= 2 when noise > 0 (one centered ξ is 0)");
  }
};

/// The noisy quadratic; models lgm::HasClosedFormMoments, HasSmoothness, HasStrongConvexity, HasKnownOptimum.
class Quadratic {
 public:
  /// Scratch: x − x* and A(x − x*).
  struct Workspace {
    Vector diff;
    Vector hess_diff;
  };

  /// `hessian` A: symmetric positive semidefinite d × d; `optimum` x*: d entries; `noise`: d × N, column i = ξ_i.
  /// The noise is centered here (ξ_i ← ξ_i − ξ̄) so that x* minimizes F whatever the caller passes.
  /// Throws DataError for non-finite entries, mismatched shapes, an asymmetric or indefinite A.
  Quadratic(Matrix hessian, Vector optimum, Matrix noise)
      : m_hessian(std::move(hessian)), m_optimum(std::move(optimum)), m_noise(std::move(noise)) {
    const Index d = m_hessian.rows();
    if (d < 1 || m_hessian.cols() != d)
      throw detail::data_error("hessian (shape)", detail::to_text(d) + " x " + detail::to_text(m_hessian.cols()),
                               "a square d x d matrix with d >= 1");
    detail::check_finite(m_hessian, "hessian");
    const double scale = m_hessian.cwiseAbs().maxCoeff();
    for (Index c = 0; c < d; ++c)
      for (Index r = c + 1; r < d; ++r)
        if (std::abs(m_hessian(r, c) - m_hessian(c, r)) > 1e-12 * scale)
          throw detail::data_error("hessian entry (row " + detail::to_text(r) + ", column " + detail::to_text(c) + ")",
                                   detail::to_text(m_hessian(r, c)),
                                   "a symmetric matrix: entry (row " + detail::to_text(c) + ", column " +
                                       detail::to_text(r) + ") = " + detail::to_text(m_hessian(c, r)));
    m_hessian = (0.5 * (m_hessian + m_hessian.transpose())).eval();  // exactly symmetric
    if (m_optimum.size() != d)
      throw detail::data_error("optimum (size)", detail::to_text(m_optimum.size()),
                               "d = " + detail::to_text(d) + " entries (the hessian's size)");
    detail::check_finite(m_optimum, "optimum");
    if (m_noise.rows() != d || m_noise.cols() < 1)
      throw detail::data_error("noise (shape)",
                               detail::to_text(m_noise.rows()) + " x " + detail::to_text(m_noise.cols()),
                               "d x N with d = " + detail::to_text(d) + " rows and N >= 1 samples (columns)");
    detail::check_finite(m_noise, "noise", "finite numbers; row = coordinate, column = sample");

    const Eigen::SelfAdjointEigenSolver<Matrix> es(m_hessian, Eigen::EigenvaluesOnly);
    m_spectrum = es.eigenvalues();
    const double tol =
        static_cast<double>(d) * std::numeric_limits<double>::epsilon() * m_spectrum.cwiseAbs().maxCoeff();
    if (m_spectrum[0] < -tol)
      throw detail::data_error("hessian (smallest eigenvalue)", detail::to_text(m_spectrum[0]),
                               "a positive semidefinite matrix (eigenvalues >= 0)");
    m_spectrum = detail::clamp_rounding_eigenvalues(m_spectrum, d);  // −tol ≤ λ_min ≤ tol becomes exactly 0

    m_noise.colwise() -= m_noise.rowwise().mean();  // Σ ξ_i = 0 (up to rounding): x* minimizes F
    m_noise_sq_norms = m_noise.colwise().squaredNorm().transpose();
    m_variance = m_noise_sq_norms.mean();
  }

  /// Seeded synthetic problem with spectrum between μ and L (see QuadraticOptions).
  static Quadratic synthetic(const QuadraticOptions& opt = {}) {
    opt.validate();
    detail::DataRng rng(opt.seed);
    const Matrix q = detail::random_orthogonal(opt.d, rng);
    const Vector s = detail::log_spaced(opt.d, opt.mu, opt.L);
    Matrix hessian = q * s.asDiagonal() * q.transpose();
    Vector optimum = rng.normal_vector(opt.d);
    Matrix noise = rng.normal_matrix(opt.d, opt.N);
    noise.colwise() -= noise.rowwise().mean();
    const double rms = std::sqrt(noise.colwise().squaredNorm().mean());
    if (rms > 0.0) noise *= opt.noise / rms;
    return Quadratic(std::move(hessian), std::move(optimum), std::move(noise));
  }

  Index dim() const noexcept { return m_hessian.rows(); }
  Index num_samples() const noexcept { return m_noise.cols(); }
  Workspace make_workspace() const { return Workspace{Vector::Zero(dim()), Vector::Zero(dim())}; }

  /// (1/b) Σ_{i∈batch} f_i(x).
  double loss(ConstVectorRef x, IndexSpan batch, Workspace& ws) const {
    assert(x.size() == dim() && !batch.empty());
    ws.diff = x - m_optimum;
    ws.hess_diff.noalias() = m_hessian * ws.diff;
    double lin = 0.0;
    for (Index i : batch) lin += m_noise.col(i).dot(ws.diff);
    return 0.5 * ws.diff.dot(ws.hess_diff) + lin / static_cast<double>(batch.size());
  }

  /// g = A(x − x*) + (1/b) Σ_{i∈batch} ξ_i; returns the mean loss.
  double gradient(ConstVectorRef x, IndexSpan batch, VectorRef g, Workspace& ws) const {
    assert(x.size() == dim() && g.size() == dim() && !batch.empty());
    ws.diff = x - m_optimum;
    g.noalias() = m_hessian * ws.diff;
    const double quad = 0.5 * ws.diff.dot(g);
    const double inv_b = 1.0 / static_cast<double>(batch.size());
    double lin = 0.0;
    for (Index i : batch) {
      lin += m_noise.col(i).dot(ws.diff);
      g += inv_b * m_noise.col(i);
    }
    return quad + lin * inv_b;
  }

  /// g = A(x − x*) + ξ_i; returns f_i(x).
  double sample_gradient(ConstVectorRef x, Index i, VectorRef g, Workspace& ws) const {
    assert(x.size() == dim() && g.size() == dim() && i >= 0 && i < num_samples());
    ws.diff = x - m_optimum;
    g.noalias() = m_hessian * ws.diff;
    const double f = 0.5 * ws.diff.dot(g) + m_noise.col(i).dot(ws.diff);
    g += m_noise.col(i);
    return f;
  }

  /// With u = A(x − x*): ‖∇f_i‖² = ‖u‖² + 2⟨u, ξ_i⟩ + ‖ξ_i‖², ⟨∇f_i, v⟩ = ⟨u, v⟩ + ⟨ξ_i, v⟩
  /// (docs/batch_rules.md §Cheap forms).
  SampleMoments sample_moments(ConstVectorRef x, IndexSpan batch, ConstVectorRef v, Workspace& ws) const {
    assert(x.size() == dim() && v.size() == dim());
    ws.diff = x - m_optimum;
    ws.hess_diff.noalias() = m_hessian * ws.diff;
    const double uu = ws.hess_diff.squaredNorm();
    const double uv = ws.hess_diff.dot(v);
    SampleMoments s;
    for (Index i : batch) {
      const auto xi = m_noise.col(i);
      const double p = uv + xi.dot(v);
      s.sum_sq_norm += uu + 2.0 * ws.hess_diff.dot(xi) + m_noise_sq_norms[i];
      s.sum_proj += p;
      s.sum_proj_sq += p * p;
    }
    s.count = static_cast<Index>(batch.size());
    return s;
  }

  /// L = λ_max(A).
  double smoothness() const noexcept { return m_spectrum[dim() - 1]; }
  /// μ = λ_min(A) (0 for a singular A).
  double strong_convexity() const noexcept { return m_spectrum[0]; }
  /// x*.
  const Vector& optimum() const noexcept { return m_optimum; }
  /// f* = F(x*) = 0.
  double optimal_value() const noexcept { return 0.0; }
  /// σ²(x) = E_i‖∇f_i(x) − ∇F(x)‖² = (1/N) Σ_i ‖ξ_i‖², the same at every x.
  double variance() const noexcept { return m_variance; }

  /// A (exactly symmetric).
  const Matrix& hessian() const noexcept { return m_hessian; }
  /// Eigenvalues of A, ascending.
  const Vector& spectrum() const noexcept { return m_spectrum; }
  /// d × N, column i = ξ_i (centered).
  const Matrix& noise() const noexcept { return m_noise; }

 private:
  Matrix m_hessian;
  Vector m_optimum;
  Matrix m_noise;
  Vector m_noise_sq_norms;
  Vector m_spectrum;
  double m_variance = 0.0;
};

}  // namespace lgm
