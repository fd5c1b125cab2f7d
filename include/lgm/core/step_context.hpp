// What the driver hands a batch-size rule after the local gradients of a step and at a sync (and, for rules
// with before_gradients, before the step's batches are drawn).
// The rule does its own (OpenMP-parallel, allocation-free) statistics from here (docs/design.md §The policies).
#pragma once

#include <span>

#include "lgm/core/concepts.hpp"
#include "lgm/core/storage.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// `Storage` is where X, G and scratch live: host memory (Eigen) or a device (lgm::gpu::DeviceStorage).
template <class Obj, class Comm, class Storage = HostStorage>
struct StepContext {
  using storage_type = Storage;
  const Obj& objective;
  Comm& comm;
  typename Storage::ConstMatrixRef X;             ///< points of the local workers (pre-update after a step,
                                                  ///< the new shared point at a sync), d × M_local
  typename Storage::ConstMatrixRef G;             ///< the step's local minibatch gradients, d × M_local
  std::span<const IndexSpan> batches;             ///< the step's batch of each local worker
  std::span<typename Obj::Workspace> workspaces;  ///< one objective workspace per local worker
  typename Storage::MatrixRef scratch;            ///< d × (2 M_local + 2), free for the rule to overwrite
  IndexSpan all_indices;                          ///< 0 … N−1, for the exact-variance (population) tests
  Index step = 0;                                 ///< index k of the step just computed
  bool sync_after = false;                        ///< a sync ends this step
  SyncScope scope = SyncScope::global;            ///< scope of that sync
  int threads = 1;                                ///< OpenMP threads the rule may use
};

/// A batch-size rule (docs/batch_rules.md §Pseudocode). `after_gradients` runs after every step's local gradients and
/// before the optimizer step; `at_sync` runs after the parameters are averaged. Sizes change only there.
/// The templated members are checked by the driver's static_assert with the real context type.
/// Optional: `before_gradients(ctx)`, called before each step's batches are drawn (step: the step about to be
/// computed; X: its points; G, batches: the previous step's; sync_after: a planned sync ends it); the driver
/// then re-reads batch_size(m) for the draw.
template <class R>
concept BatchSizeRuleBase = requires(R& r, const R& cr, Index workers, Index total, Index m) {
  r.reset(workers, total);                                ///< M_local workers of M in all
  { cr.batch_size(m) } -> std::convertible_to<Index>;     ///< local batch size of worker m's next step
  { cr.max_batch_size() } -> std::convertible_to<Index>;  ///< upper bound, for preallocated buffers
  cr.validate();
};

template <class R, class Ctx>
concept BatchSizeRuleFor = BatchSizeRuleBase<R> && requires(R& r, const Ctx& ctx) {
  r.after_gradients(ctx);
  r.at_sync(ctx);
};

}  // namespace lgm
