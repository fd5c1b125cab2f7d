// Post-local SGD (Lin, Stich, Patel, Jaggi, ICLR 2020): minibatch SGD until a switch step, then Local SGD
// with a fixed period H (docs/sync_rules.md §PostLocalSync; docs/decisions.md §A6, §A11).
#pragma once

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/schedule/schedules.hpp"

namespace lgm {

/// Rounds that start before `switch_step` have period 1 (phase 1: H_(t) = 1 for t < t');
/// from `switch_step` on every round has period H. Because phase-1 rounds are one step long, a round
/// starts exactly at `switch_step`, so H is counted from the switch (A11), not from step 0 as in Lin et
/// al.'s code (which takes the global step modulo H and may make the first local round shorter).
/// `gradient_averaging_before_switch` selects how phase 1 synchronizes: gradient all-reduce + one step
/// (PyTorch's post_localSGD_hook, docs/decisions.md §A9) or parameter averaging after every step (Lin's code).
struct PostLocalSync {
  Index switch_step = 0;                         ///< t': first step of the local phase
  Index H = 16;                                  ///< local steps per round after the switch
  bool gradient_averaging_before_switch = true;  ///< phase-1 sync as gradient all-reduce (A9)

  SyncPlan plan(const RoundInfo& info) const noexcept {
    if (info.start_step < switch_step) return SyncPlan{1, SyncScope::global, 0, gradient_averaging_before_switch};
    return SyncPlan{H, SyncScope::global, 0, false};
  }

  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  void validate() const {
    detail::require_at_least("switch_step", switch_step, Index{0});
    detail::require_at_least("H", H, Index{1});
  }

  /// Post-local SGD switching at the first decay of a step-decay schedule (the paper's choice, A11).
  /// The schedule must count steps and have at least one decay point.
  static PostLocalSync at_first_decay(const StepDecayLr& schedule, Index H,
                                      bool gradient_averaging_before_switch = true) {
    detail::require(schedule.axis == ScheduleAxis::steps, "schedule.axis", "samples",
                    "steps (the switch is a step index)");
    detail::require(!schedule.decay_points.empty(), "schedule.decay_points", "an empty list",
                    "at least one decay point");
    return PostLocalSync{schedule.decay_points.front(), H, gradient_averaging_before_switch};
  }
};

}  // namespace lgm
