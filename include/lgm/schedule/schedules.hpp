// Learning-rate schedules: η as a function of the local-step count or of the samples processed
// (docs/schedules.md §Axis: by steps or, as the adaptive-batch authors do, by samples).
//
// Design: every schedule carries its own optional linear warmup (fields `warmup` and `min_lr`), exactly as
// the reference schedules do (docs/schedules.md §Warmup, starting at η_min, not 0). A separate
// LinearWarmup<Inner> wrapper would have to re-derive the inner schedule's peak and would change where the
// decay starts, so it is not provided. Each schedule is a plain aggregate:
//   lgm::WarmupCosineLr{.peak = 0.008, .warmup = 10'000, .total = 93'600}
//
// The formulas keep the reference code's order of floating-point operations, because the QSR periods
// derived from η are floor()ed and so are sensitive to the last bit (docs/decisions.md §A3;
// docs/sync_rules.md §Golden values).
#pragma once

#include <cmath>
#include <numbers>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// Which counter a schedule's t, `warmup`, `total` and decay points are measured in.
enum class ScheduleAxis {
  steps,   ///< t = local-step index k (every worker takes the same number of steps)
  samples  ///< t = samples processed by all workers so far (docs/decisions.md §B10)
};

namespace detail {

inline Index schedule_time(ScheduleAxis axis, Index step, Index samples) noexcept {
  return axis == ScheduleAxis::steps ? step : samples;
}

/// docs/schedules.md §Warmup: η_min + t·(η_max − η_min)/W, evaluated as the reference does
/// (`final_lr + step * (max_lr - final_lr) / warmup_steps`, left to right).
inline double linear_warmup_lr(double min_lr, double peak, Index t, Index warmup) noexcept {
  return min_lr + static_cast<double>(t) * (peak - min_lr) / static_cast<double>(warmup);
}

inline void validate_warmup(double peak, double min_lr, Index warmup) {
  require_positive("peak", peak);
  require(std::isfinite(min_lr) && min_lr >= 0.0 && min_lr <= peak, "min_lr", min_lr,
          "a number in [0, peak = " + to_text(peak) + "]");
  require_at_least("warmup", warmup, Index{0});
}

inline void validate_decay_length(Index warmup, Index total) {
  // T − W is a divisor in the decay formulas (docs/schedules.md §WarmupCosineLr)
  require(total > warmup, "total", total, "an integer > warmup = " + to_text(warmup));
}

}  // namespace detail

/// Constant η (after an optional linear warmup from min_lr).
struct ConstantLr {
  double lr = 0.01;                         ///< η
  Index warmup = 0;                         ///< W: length of the linear warmup (0: none)
  double min_lr = 1e-6;                     ///< η at t = 0 when warmup > 0 (reference default --min-lr)
  ScheduleAxis axis = ScheduleAxis::steps;  ///< unit of t and warmup

  double at(Index step, Index samples) const noexcept {
    const Index t = detail::schedule_time(axis, step, samples);
    return t < warmup ? detail::linear_warmup_lr(min_lr, lr, t, warmup) : lr;
  }

  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  void validate() const {
    detail::require_positive("lr", lr);
    detail::require_at_least("warmup", warmup, Index{0});
    detail::require(std::isfinite(min_lr) && min_lr >= 0.0 && min_lr <= lr, "min_lr", min_lr,
                    "a number in [0, lr = " + detail::to_text(lr) + "]");
  }
};

/// Linear warmup, then cosine decay from `peak` to `min_lr` at t = total (docs/schedules.md §WarmupCosineLr):
///   t < W:  η = η_min + t(η_max − η_min)/W
///   else:   d = min(t − W, T − W),  η = η_min + ½(η_max − η_min)(1 + cos(π d/(T − W)))
struct WarmupCosineLr {
  double peak = 0.1;                        ///< η_max
  double min_lr = 1e-6;                     ///< η_min: start of the warmup and end of the decay
  Index warmup = 0;                         ///< W
  Index total = 0;                          ///< T (required, > W); η stays at η_min for t ≥ T
  ScheduleAxis axis = ScheduleAxis::steps;  ///< unit of t, W and T

  double at(Index step, Index samples) const noexcept {
    const Index t = detail::schedule_time(axis, step, samples);
    if (t < warmup) return detail::linear_warmup_lr(min_lr, peak, t, warmup);
    const Index span = total - warmup;
    const Index d = t - warmup < span ? t - warmup : span;
    // reference operation order: cos(d / (T − W) * π), ½(η_max − η_min) first
    return min_lr + 0.5 * (peak - min_lr) *
                        (1.0 + std::cos(static_cast<double>(d) / static_cast<double>(span) * std::numbers::pi));
  }

  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  void validate() const {
    detail::validate_warmup(peak, min_lr, warmup);
    detail::validate_decay_length(warmup, total);
  }
};

/// Linear warmup, then linear decay from `peak` to `min_lr` at t = total (docs/schedules.md §WarmupLinearDecayLr):
///   t ≥ W:  d = min(t − W, T − W),  η = η_min + (T − W − d)(η_max − η_min)/(T − W)
struct WarmupLinearDecayLr {
  double peak = 0.1;                        ///< η_max
  double min_lr = 1e-6;                     ///< η_min
  Index warmup = 0;                         ///< W
  Index total = 0;                          ///< T (required, > W)
  ScheduleAxis axis = ScheduleAxis::steps;  ///< unit of t, W and T

  double at(Index step, Index samples) const noexcept {
    const Index t = detail::schedule_time(axis, step, samples);
    if (t < warmup) return detail::linear_warmup_lr(min_lr, peak, t, warmup);
    const Index span = total - warmup;
    const Index d = t - warmup < span ? t - warmup : span;
    return min_lr + static_cast<double>(span - d) * (peak - min_lr) / static_cast<double>(span);
  }

  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  void validate() const {
    detail::validate_warmup(peak, min_lr, warmup);
    detail::validate_decay_length(warmup, total);
  }
};

/// Piecewise-constant decay (docs/schedules.md §StepDecayLr, PyTorch MultiStepLR): after an optional linear
/// warmup, η = η_max·γ^i where i is the number of decay points ≤ t. The reference computes γ^i with pow,
/// which is why 0.8·0.1² is 0.008000000000000002 (A3); so does this.
struct StepDecayLr {
  double peak = 0.1;                        ///< η_max
  double gamma = 0.1;                       ///< γ: factor applied at each decay point
  std::vector<Index> decay_points = {};     ///< strictly increasing, > 0, in the unit of `axis`
  Index warmup = 0;                         ///< W (0: none)
  double min_lr = 1e-6;                     ///< η at t = 0 when warmup > 0
  ScheduleAxis axis = ScheduleAxis::steps;  ///< unit of t, W and the decay points

  double at(Index step, Index samples) const noexcept {
    const Index t = detail::schedule_time(axis, step, samples);
    if (t < warmup) return detail::linear_warmup_lr(min_lr, peak, t, warmup);
    return peak * std::pow(gamma, static_cast<double>(decays_before(t)));
  }

  /// i: how many decay points lie at or before t (the index of t's segment).
  Index decays_before(Index t) const noexcept {
    Index i = 0;
    for (const Index p : decay_points) i += p <= t ? 1 : 0;
    return i;
  }

  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  void validate() const {
    detail::validate_warmup(peak, min_lr, warmup);
    detail::require_positive("gamma", gamma);
    for (std::size_t i = 0; i < decay_points.size(); ++i) {
      const Index lo = i == 0 ? Index{1} : decay_points[i - 1] + 1;
      detail::require(decay_points[i] >= lo, "decay_points[" + detail::to_text(i) + "]", decay_points[i],
                      "an integer >= " + detail::to_text(lo) + " (points strictly increasing and > 0)");
    }
  }
};

}  // namespace lgm
