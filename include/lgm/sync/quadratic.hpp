// Quadratic Synchronization Rule (Gu, Lyu, Arora, Zhang, Huang, ICLR 2024) and its power-γ family:
// the period of a round grows as the learning rate at the round's start decays,
//   H = max(H_base, ⌊(α/η_{t_s})^γ⌋)      (docs/sync_rules.md §QuadraticSyncRule; γ = 2: QSR, γ = 1: linear)
// with the exact semantics of the reference code's adjust_h (docs/sync_rules.md §Reference semantics), warmup
// (docs/decisions.md §A4), end-of-training cap (§A5) and rounding (§A3).
#pragma once

#include <cmath>
#include <limits>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// Period returned when neither the remaining steps nor a finite (α/η)^γ bound a round: the round then
/// lasts until the budget (in samples) ends it.
inline constexpr Index kUnboundedPeriod = std::numeric_limits<Index>::max();

namespace detail {

/// ⌊v⌋ of a non-negative double as an Index; +∞, NaN and values beyond Index's range give kUnboundedPeriod.
inline Index floor_to_period(double v) noexcept {
  // 2^62: far beyond any step budget, and exactly representable, so the comparison is exact
  constexpr double limit = 4611686018427387904.0;
  if (!(v < limit)) return kUnboundedPeriod;
  return static_cast<Index>(std::floor(v));  // truncation of a positive double, as Python's int() (A3)
}

}  // namespace detail

/// The power-γ synchronization rule; `QuadraticSyncRule` (γ = 2, QSR) and `LinearSyncRule` (γ = 1) are its
/// two named forms. At the start of a round at step t_s with η = lr_at_start (docs/decisions.md §A1):
///   t_s < warmup_steps or α = 0:  H = init_H                             (docs/decisions.md §A4)
///   otherwise:                    H = max(min(max(⌊(α/η)^γ⌋, min_H), T − t_s), 1)
/// (docs/sync_rules.md §Reference semantics),
/// where T − t_s is the number of remaining steps: `total_steps − t_s` when total_steps is given, else
/// RoundInfo::remaining_steps (no cap when that is −1, i.e. a budget in samples). The cap makes the last
/// round end exactly at T, so the final model is an average (A5). η ≤ 0 (or NaN) caps H to the remaining
/// steps (A20). ⌊·⌋ is computed exactly as std::floor(std::pow(α/η, γ)), as the reference does (Python's
/// `**` is C pow), never with fast-math, so that every rank gets the same H and the golden values of
/// docs/sync_rules.md §Golden values hold (docs/decisions.md §A3). (For γ = 2, x·x gives the same periods on
/// those configurations; pow is kept for fidelity.)
template <double DefaultGamma>
struct PowerSyncRule {
  double alpha = std::numeric_limits<double>::quiet_NaN();  ///< α ≥ 0, required (0: constant init_H)
  double gamma = DefaultGamma;                              ///< γ > 0 (the reference's --power)
  Index H_base = 4;        ///< sets init_H and min_H unless those are given (docs/decisions.md §A4)
  Index init_H = 0;        ///< period during warmup and when α = 0 (0: H_base)
  Index min_H = 0;         ///< floor of the period after warmup (0: H_base)
  Index warmup_steps = 0;  ///< rounds starting before this step use init_H
  Index total_steps = -1;  ///< T for the cap; −1: use RoundInfo::remaining_steps

  Index initial_period() const noexcept { return init_H > 0 ? init_H : H_base; }
  Index minimum_period() const noexcept { return min_H > 0 ? min_H : H_base; }

  SyncPlan plan(const RoundInfo& info) const noexcept {
    return SyncPlan{period(info.start_step, info.lr_at_start, info.remaining_steps), SyncScope::global, 0, false};
  }

  /// The reference's adjust_h for a round starting at `start_step` with learning rate `lr`;
  /// `remaining_steps` (−1: unknown) is used only when total_steps = −1.
  Index period(Index start_step, double lr, Index remaining_steps = -1) const noexcept {
    if (start_step < warmup_steps || alpha == 0.0) return initial_period();
    const Index cap = total_steps >= 0 ? total_steps - start_step : remaining_steps;
    const bool capped = total_steps >= 0 || remaining_steps >= 0;
    if (!(lr > 0.0)) return capped ? (cap > 1 ? cap : 1) : kUnboundedPeriod;  // A20
    Index h = detail::floor_to_period(std::pow(alpha / lr, gamma));
    if (h < minimum_period()) h = minimum_period();
    if (capped && h > cap) h = cap;
    return h > 1 ? h : 1;
  }

  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  void validate() const {
    detail::require_nonnegative("alpha", alpha);
    detail::require_positive("gamma", gamma);
    detail::require_at_least("H_base", H_base, Index{1});
    detail::require_at_least("init_H", init_H, Index{0});
    detail::require_at_least("min_H", min_H, Index{0});
    detail::require_at_least("warmup_steps", warmup_steps, Index{0});
    detail::require(total_steps == -1 || total_steps >= 1, "total_steps", total_steps,
                    "-1 (use the run's remaining steps) or an integer >= 1");
  }
};

/// QSR: H = max(H_base, ⌊(α/η)²⌋) (docs/sync_rules.md §QuadraticSyncRule).
using QuadraticSyncRule = PowerSyncRule<2.0>;
/// The linear rule H ∝ η⁻¹: H = max(H_base, ⌊α/η⌋) (docs/sync_rules.md §QuadraticSyncRule;
/// docs/decisions.md §A20).
using LinearSyncRule = PowerSyncRule<1.0>;

}  // namespace lgm
