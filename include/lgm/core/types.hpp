// Basic types shared by every part of lgm.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <span>

namespace lgm {

using Index = std::int64_t;
using Scalar = double;
using Vector = Eigen::VectorXd;
using Matrix = Eigen::MatrixXd;  // column-major: column m is worker m's parameters (docs/design.md §Backends)

using VectorRef = Eigen::Ref<Vector>;
using ConstVectorRef = Eigen::Ref<const Vector>;
using MatrixRef = Eigen::Ref<Matrix>;
using ConstMatrixRef = Eigen::Ref<const Matrix>;

/// Indices of the samples of one minibatch.
using IndexSpan = std::span<const Index>;

/// Per-sample moments of one batch along a direction v (docs/batch_rules.md §Cheap forms):
/// sum_sq_norm = Σ‖g_i‖², sum_proj = Σ⟨g_i, v⟩, sum_proj_sq = Σ⟨g_i, v⟩², count = b.
struct SampleMoments {
  double sum_sq_norm = 0.0;
  double sum_proj = 0.0;
  double sum_proj_sq = 0.0;
  Index count = 0;

  SampleMoments& operator+=(const SampleMoments& o) {
    sum_sq_norm += o.sum_sq_norm;
    sum_proj += o.sum_proj;
    sum_proj_sq += o.sum_proj_sq;
    count += o.count;
    return *this;
  }
};

/// Scope of one synchronization: all workers, or contiguous groups of workers (hierarchical rule).
enum class SyncScope { global, group };

/// What a synchronization rule decides at the start of a round (docs/sync_rules.md §The SyncRule concept).
struct SyncPlan {
  Index period = 1;                     ///< H of this round: local steps before the round's sync
  SyncScope scope = SyncScope::global;  ///< who averages at the round's end
  Index group_size = 0;                 ///< workers per group when scope == group
  bool average_gradients = false;       ///< H = 1 as gradient all-reduce + one step (docs/decisions.md §A9)
};

/// Facts a synchronization rule may use to choose the next period.
struct RoundInfo {
  Index round = 0;             ///< index of the round about to start (0-based, all levels counted)
  Index start_step = 0;        ///< local-step index t_s of the round's first step
  double lr_at_start = 0.0;    ///< learning rate of step t_s (docs/decisions.md §A1)
  Index remaining_steps = -1;  ///< steps left in the budget, or -1 when the budget is in samples
};

}  // namespace lgm
