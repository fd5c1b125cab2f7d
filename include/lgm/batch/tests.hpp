// The three batch-size tests of adaptive sampling: each turns the batch statistics into the ratio r whose
// ceiling is the smallest batch that passes (docs/batch_rules.md §The adaptive tests): the norm test of
// Byrd, Chin, Nocedal, Wu (2012) and the inner-product and augmented inner-product tests of Bollapragada,
// Byrd, Nocedal (2018).
#pragma once

#include <algorithm>
#include <cmath>
#include <string_view>

#include "lgm/batch/statistics.hpp"
#include "lgm/core/error.hpp"

namespace lgm {

/// Norm test: pass iff S²/b ≤ η²‖g‖²;  r = S²/(η²‖g‖²)   (docs/batch_rules.md §NormTest).
struct NormTest {
  double eta = 0.1;  ///< η > 0

  static constexpr std::string_view name = "norm";
  /// The ratio needs only S²: the cross-worker estimator (which gives only σ̂²) can drive it
  /// (docs/batch_rules.md §cross_worker).
  static constexpr bool variance_only = true;

  double ratio(const BatchStatistics& s) const noexcept { return s.variance / (eta * eta * s.grad_norm_sq); }
  void validate() const { detail::require_positive("eta", eta); }
};

/// Inner-product test: pass iff V_ip/b ≤ θ²‖g‖⁴;  r = V_ip/(θ²‖g‖⁴)   (docs/batch_rules.md §InnerProductTest).
struct InnerProductTest {
  double theta = 0.1;  ///< θ > 0

  static constexpr std::string_view name = "inner_product";
  static constexpr bool variance_only = false;

  double ratio(const BatchStatistics& s) const noexcept {
    return s.ip_variance / (theta * theta * s.grad_norm_sq * s.grad_norm_sq);
  }
  void validate() const { detail::require_positive("theta", theta); }
};

/// Augmented inner-product test = inner-product test and orthogonality test together
/// (docs/batch_rules.md §AugmentedInnerProductTest):
/// r = max(V_ip/(θ²‖g‖⁴), V⊥/(ν²‖g‖²)); NaN if either part is NaN (a NaN keeps b, docs/decisions.md §B13).
struct AugmentedInnerProductTest {
  double theta = 0.1;  ///< θ > 0 (inner-product part)
  double nu = 0.1;     ///< ν > 0 (orthogonality part)

  static constexpr std::string_view name = "augmented_inner_product";
  static constexpr bool variance_only = false;

  double ratio(const BatchStatistics& s) const noexcept {
    const double ip = s.ip_variance / (theta * theta * s.grad_norm_sq * s.grad_norm_sq);
    const double orth = s.orth_variance / (nu * nu * s.grad_norm_sq);
    if (std::isnan(ip) || std::isnan(orth)) return detail::kNaN;
    return std::max(ip, orth);
  }
  void validate() const {
    detail::require_positive("theta", theta);
    detail::require_positive("nu", nu);
  }
};

}  // namespace lgm
