// Hierarchical Local SGD (Lin et al. 2020, docs/sync_rules.md §HierarchicalSync; docs/decisions.md §A15):
// workers average inside their group (e.g. a node) after every H local steps, and all workers average after
// every H^b-th round.
#pragma once

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// Every round has period H. Round r (0-based, all levels counted) ends with a global average when
/// (r + 1) is a multiple of `global_every` (= H^b, Lin et al.'s "block steps"), otherwise with an average
/// over consecutive groups of `group_size` workers. Global averages therefore follow steps H·H^b,
/// 2·H·H^b, … and group averages every H steps in between (A15 nested counters). With H = 1 each group
/// acts as one large-batch worker doing Local SGD with period H^b. The driver checks that group_size
/// divides the number of workers.
struct HierarchicalSync {
  Index H = 4;             ///< local steps per (inner) round
  Index global_every = 4;  ///< H^b: every global_every-th round averages globally
  Index group_size = 0;    ///< workers per group (required, ≥ 1; e.g. GPUs per node)

  SyncPlan plan(const RoundInfo& info) const noexcept {
    const bool global = (info.round + 1) % global_every == 0;
    return SyncPlan{H, global ? SyncScope::global : SyncScope::group, global ? 0 : group_size, false};
  }

  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  void validate() const {
    detail::require_at_least("H", H, Index{1});
    detail::require_at_least("global_every", global_every, Index{1});
    detail::require_at_least("group_size", group_size, Index{1});
  }

  /// Local steps between two global averages: H·H^b.
  Index global_period() const noexcept { return H * global_every; }
};

}  // namespace lgm
