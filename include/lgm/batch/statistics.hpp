// The statistics behind the adaptive batch-size tests, as pure functions: the cheap per-sample forms
// (docs/batch_rules.md §Cheap forms), the variance estimators (§Estimators) and the batch-size update with its
// cap and rounding (docs/batch_rules.md §Batch-size update; docs/decisions.md §B6, §B7, §B13).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>

#include "lgm/core/moments.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// What a batch-size test turns into a ratio (docs/batch_rules.md §The adaptive tests): the squared norm of
/// the reference gradient (the minibatch gradient g, or ∇F for exact tests) and three per-sample variances.
struct BatchStatistics {
  double grad_norm_sq = 0.0;                                        ///< ‖g‖²
  double variance = std::numeric_limits<double>::quiet_NaN();       ///< S² (or σ²): norm test
  double ip_variance = std::numeric_limits<double>::quiet_NaN();    ///< V_ip: inner-product test
  double orth_variance = std::numeric_limits<double>::quiet_NaN();  ///< V⊥: orthogonality test
};

namespace detail {
inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace detail

// ---------------------------------------------------------------- docs/batch_rules.md §Cheap forms
// All three take the moments along v = g (sum_proj_sq = Σ⟨g_i, g⟩²) and ‖g‖²; they return NaN for b < 2,
// where the sample variance is undefined (docs/decisions.md §B13).

/// S² = (1/(b−1)) Σ‖g_i − g‖² = (Σ‖g_i‖² − b‖g‖²)/(b−1)   (docs/batch_rules.md §Cheap forms).
inline double sample_variance(const SampleMoments& s, double g_norm_sq) noexcept {
  if (s.count < 2) return detail::kNaN;
  const double b = static_cast<double>(s.count);
  return (s.sum_sq_norm - b * g_norm_sq) / (b - 1.0);
}

/// V_ip = (1/(b−1)) Σ(⟨g_i,g⟩ − ‖g‖²)² = (Σp_i² − b‖g‖⁴)/(b−1), the mean of p_i being ‖g‖²
/// (docs/batch_rules.md §Cheap forms).
inline double inner_product_variance(const SampleMoments& s, double g_norm_sq) noexcept {
  if (s.count < 2) return detail::kNaN;
  const double b = static_cast<double>(s.count);
  return (s.sum_proj_sq - b * g_norm_sq * g_norm_sq) / (b - 1.0);
}

/// V⊥ = (1/(b−1)) Σ‖g_i − (⟨g_i,g⟩/‖g‖²) g‖² = (Σ‖g_i‖² − Σp_i²/‖g‖²)/(b−1)
/// (docs/batch_rules.md §Cheap forms).
/// NaN when ‖g‖² = 0 (no direction to project on).
inline double orthogonality_variance(const SampleMoments& s, double g_norm_sq) noexcept {
  if (s.count < 2 || !(g_norm_sq > 0.0)) return detail::kNaN;
  const double b = static_cast<double>(s.count);
  return (s.sum_sq_norm - s.sum_proj_sq / g_norm_sq) / (b - 1.0);
}

/// All three cheap forms at once.
inline BatchStatistics sample_statistics(const SampleMoments& s, double g_norm_sq) noexcept {
  return BatchStatistics{g_norm_sq, sample_variance(s, g_norm_sq), inner_product_variance(s, g_norm_sq),
                         orthogonality_variance(s, g_norm_sq)};
}

/// The population statistics of the exact-variance tests (docs/batch_rules.md §Exact tests):
/// ‖∇F‖², σ², Var⟨∇f_i,∇F⟩, V⊥.
inline BatchStatistics population_statistics(const PopulationMoments& p) noexcept {
  return BatchStatistics{p.grad_norm_sq, p.variance, p.ip_variance, p.orth_variance};
}

// ---------------------------------------------------------------- docs/batch_rules.md §Pooled micro-batches

/// The exact pooled unbiased S² of a batch of b = Σ_j n_j samples split into micro-batches j with n_j samples,
/// unbiased within-part variance s_j² and mean μ_j (column j of `means`):
///   S² = (Σ_j (n_j − 1) s_j² + Σ_j n_j‖μ_j − g‖²)/(b − 1),   g = Σ_j n_j μ_j / b
/// (docs/batch_rules.md §Pooled micro-batches).
/// The between-part sum is evaluated as (1/b) Σ_{j<k} n_j n_k ‖μ_j − μ_k‖² (the same number; no temporary
/// vector and no cancellation). Parts with n_j = 1 contribute no within-part term and their s_j² is not read.
/// NaN when b < 2.
inline double pooled_sample_variance(std::span<const Index> counts, std::span<const double> variances,
                                     ConstMatrixRef means) noexcept {
  const auto parts = static_cast<Index>(counts.size());
  double within = 0.0, between = 0.0;
  Index b = 0;
  for (Index j = 0; j < parts; ++j) {
    const Index nj = counts[static_cast<size_t>(j)];
    b += nj;
    if (nj > 1) within += static_cast<double>(nj - 1) * variances[static_cast<size_t>(j)];
    for (Index k = j + 1; k < parts; ++k)
      between += static_cast<double>(nj) * static_cast<double>(counts[static_cast<size_t>(k)]) *
                 (means.col(j) - means.col(k)).squaredNorm();
  }
  if (b < 2) return detail::kNaN;
  const double bd = static_cast<double>(b);
  return (within + between / bd) / (bd - 1.0);
}

// ---------------------------------------------------------------- docs/batch_rules.md §micro_batch_means

/// Running sums of the micro-batch-means estimator along the batch gradient g = Σ_j n_j μ_j / b
/// (docs/batch_rules.md §micro_batch_means, with unequal micro-batch sizes n_j):
///   sum_sq_dev      = Σ_j n_j ‖μ_j − g‖²
///   sum_proj_dev_sq = Σ_j n_j (⟨μ_j, g⟩ − ‖g‖²)²
/// Deviations from g are accumulated directly (not Σ n_j‖μ_j‖² − b‖g‖²), which avoids the cancellation
/// of the cheap form at the same cost.
struct MicroBatchDeviations {
  double sum_sq_dev = 0.0;
  double sum_proj_dev_sq = 0.0;
  Index parts = 0;  ///< n_a, the number of micro-batches
  Index count = 0;  ///< b = Σ_j n_j

  /// Adds micro-batch j with mean `mean` over `n` samples; g is the whole batch's mean gradient.
  void add(ConstVectorRef mean, Index n, ConstVectorRef g, double g_norm_sq) noexcept {
    const double w = static_cast<double>(n);
    const double dev_proj = mean.dot(g) - g_norm_sq;
    sum_sq_dev += w * (mean - g).squaredNorm();
    sum_proj_dev_sq += w * dev_proj * dev_proj;
    ++parts;
    count += n;
  }

  /// add() from the scalars a device computes: ‖μ_j‖², ⟨μ_j, g⟩ and ‖g‖² (all accumulated in double), with
  /// ‖μ_j − g‖² = ‖μ_j‖² − 2⟨μ_j, g⟩ + ‖g‖² (clamped at 0). The products of float entries are exact in double,
  /// so the cancellation costs ~1e-16 ‖g‖², not float's 1e-7.
  void add_moments(Index n, double mean_sq_norm, double mean_dot_g, double g_norm_sq) noexcept {
    const double w = static_cast<double>(n);
    const double dev_proj = mean_dot_g - g_norm_sq;
    sum_sq_dev += w * std::max(0.0, mean_sq_norm - 2.0 * mean_dot_g + g_norm_sq);
    sum_proj_dev_sq += w * dev_proj * dev_proj;
    ++parts;
    count += n;
  }
};

/// σ̂² = (1/(n_a−1)) Σ_j n_j‖μ_j − g‖²; V̂_ip = (1/(n_a−1)) Σ_j n_j(⟨μ_j,g⟩ − ‖g‖²)²;
/// V̂⊥ = (1/(n_a−1)) Σ_j n_j‖μ_j − (⟨μ_j,g⟩/‖g‖²) g‖² = (sum_sq_dev − sum_proj_dev_sq/‖g‖²)/(n_a−1)
/// (the part of g orthogonal to g is 0, so the orthogonal part of μ_j is that of μ_j − g). Each is unbiased
/// for the per-sample variance (E n_j‖μ_j − g‖² = σ²(1 − n_j/b), summing to σ²(n_a − 1)); with n_j = 1 they
/// are the per-sample S², V_ip, V⊥. NaN when n_a < 2.
inline BatchStatistics micro_batch_means_statistics(const MicroBatchDeviations& d, double g_norm_sq) noexcept {
  BatchStatistics s;
  s.grad_norm_sq = g_norm_sq;
  if (d.parts < 2) return s;
  const double denom = static_cast<double>(d.parts - 1);
  s.variance = d.sum_sq_dev / denom;
  s.ip_variance = d.sum_proj_dev_sq / denom;
  if (g_norm_sq > 0.0) s.orth_variance = (d.sum_sq_dev - d.sum_proj_dev_sq / g_norm_sq) / denom;
  return s;
}

// ---------------------------------------------------------------- docs/batch_rules.md §cross_worker

/// σ̂² = b/(M−1)·(Σ_m‖g^m‖² − M‖ḡ‖²) = b/(M−1)·Σ_m‖g^m − ḡ‖², ḡ = (1/M)Σ_m g^m
/// (docs/batch_rules.md §cross_worker).
/// `batch` is the local batch size b; when the workers' sizes b_m differ, pass their harmonic mean
/// M/Σ_m(1/b_m), which keeps the estimator unbiased (E Σ_m‖g^m − ḡ‖² = σ²(M−1)/M · Σ_m 1/b_m).
/// NaN when M < 2.
inline double cross_worker_variance(double sum_sq_norms, double mean_norm_sq, Index workers, double batch) noexcept {
  if (workers < 2) return detail::kNaN;
  const double M = static_cast<double>(workers);
  return batch / (M - 1.0) * (sum_sq_norms - M * mean_norm_sq);
}

// ---------------------------------------------------------------- docs/batch_rules.md §Batch-size update

/// min(b_max, max(b, ⌈min(ratio, b_max)⌉)): grow to the ratio, never shrink (docs/decisions.md §B6), never beyond
/// the cap.
/// The ratio is clamped to [0, b_max] before the ceil so that the conversion to an integer cannot overflow
/// (docs/decisions.md §B7). A NaN or infinite ratio keeps b unchanged (§B13).
/// Caps above 2^53 (beyond exact doubles) are treated as 2^53 for the ratio.
inline Index next_batch_size(double ratio, Index b, Index b_max) noexcept {
  if (!std::isfinite(ratio)) return b;
  constexpr double exact_limit = 9007199254740992.0;  // 2^53: every integer below is a double
  const double clamped = std::clamp(ratio, 0.0, std::min(static_cast<double>(b_max), exact_limit));
  const auto wanted = static_cast<Index>(std::ceil(clamped));
  return std::min(b_max, std::max(b, wanted));
}

}  // namespace lgm
