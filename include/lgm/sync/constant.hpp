// Constant-period synchronization: Local SGD with a fixed H, and its H = 1 limit, minibatch SGD
// (docs/sync_rules.md §ConstantSync, §EveryStepSync; the round convention and the data-parallel baseline:
// docs/decisions.md §A6, §A9).
#pragma once

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// Every round runs H local steps and then averages the parameters of all workers (docs/sync_rules.md §Rounds):
/// a round is "H completed local steps, then average" (A6), so syncs follow steps H, 2H, … (1-based).
/// The driver shortens the last round to the remaining steps, so the final model is an average (A5).
struct ConstantSync {
  Index H = 8;  ///< local steps per round

  SyncPlan plan(const RoundInfo& /*info*/) const noexcept { return SyncPlan{H, SyncScope::global, 0, false}; }

  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  void validate() const { detail::require_at_least("H", H, Index{1}); }
};

/// Synchronize after every step: minibatch SGD with global batch M·b ("Parallel OPT", docs/sync_rules.md §Rounds).
/// By default implemented as a gradient all-reduce followed by one optimizer step (docs/decisions.md §A9), which
/// keeps the optimizer states identical on all workers; with `average_gradients = false` it averages
/// parameters after every local step instead (Lin et al.'s phase-1 post-local code). The two agree for SGD
/// with momentum and coupled weight decay but not for AdamW (docs/sync_rules.md §Rounds).
struct EveryStepSync {
  bool average_gradients = true;  ///< gradient all-reduce + one step (true) or parameter averaging (false)

  SyncPlan plan(const RoundInfo& /*info*/) const noexcept {
    return SyncPlan{1, SyncScope::global, 0, average_gradients};
  }

  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  void validate() const noexcept {}
};

}  // namespace lgm
