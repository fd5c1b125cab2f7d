// The run's metrics, each defined once (docs/driver.md §Metrics), and the view of a run that observers receive.
#pragma once

#include <span>
#include <string>

#include "lgm/core/types.hpp"
#include "lgm/run/checkpoint.hpp"

namespace lgm {

/// Counters of one run. Every backend (in-process, MPI, GPU) updates them through the same driver code.
struct Metrics {
  Index steps = 0;              ///< local steps K taken by every worker
  Index samples = 0;            ///< Σ over steps and workers of the local batch size
  Index comm_rounds = 0;        ///< synchronizations of any scope (one per round)
  Index global_rounds = 0;      ///< synchronizations of all M workers
  double bytes = 0.0;           ///< bytes each worker sent in all-reduces (ring model: 2(p−1)/p · payload)
  double compute_time_s = 0.0;  ///< simulated compute: Σ over rounds of the slowest worker's compute time
  double comm_time_s = 0.0;     ///< simulated communication: Σ over syncs of the α–β all-reduce time
  double sim_time_s = 0.0;      ///< compute_time_s + comm_time_s (synchronous rounds wait for the slowest)
};

enum class StopReason { budget, observer, diverged };

inline const char* to_string(StopReason r) {
  switch (r) {
    case StopReason::budget:
      return "budget";
    case StopReason::observer:
      return "observer";
    case StopReason::diverged:
      return "diverged";
  }
  return "?";
}

/// What an observer sees. Valid only during the call.
/// What RunState::snapshot() asks: the driver's run (detail::RunLoop).
class SnapshotSource {
 public:
  virtual RunSnapshot take() = 0;

 protected:
  ~SnapshotSource() = default;
};

struct RunState {
  const Metrics& metrics;
  Index round = 0;   ///< index of the current round
  Index period = 0;  ///< H of the current round
  SyncScope scope = SyncScope::global;
  double lr = 0.0;                     ///< learning rate of the last step
  double batch_loss = 0.0;             ///< mean over workers of the last step's minibatch losses
  ConstMatrixRef X;                    ///< the local workers' parameters (d × M_local)
  ConstVectorRef shared_point;         ///< the point of the last global sync (after the outer step)
  std::span<const Index> batch_sizes;  ///< local batch size of each local worker for the next step
  bool at_sync = false;
  SnapshotSource* snapshots = nullptr;  ///< at a sync: the run whose state snapshot() saves

  /// The whole state of the run at this sync, from which LocalMethod::resume continues it bitwise:
  /// docs/driver.md §Checkpoint and resume. Only in on_sync and on_batch_change; SnapshotError elsewhere, or when a
  /// policy of the run cannot save its state.
  RunSnapshot snapshot() const {
    if (!snapshots) throw SnapshotError("RunState::snapshot: a run's state is saved at a sync only (in on_sync)");
    return snapshots->take();
  }
};

/// What a run returns.
struct RunResult {
  Metrics metrics;
  StopReason reason = StopReason::budget;
  std::string message;  ///< why the run stopped, in words (names the step and round when it diverged)
  Vector x;             ///< the final averaged model (docs/decisions.md §Final model)
  double last_batch_loss = 0.0;
};

}  // namespace lgm
