// The policy concepts of docs/design.md §The policies. The driver (run/local_method.hpp) talks to the policies only
// through these; each concept is checked with a readable static_assert where a policy is plugged in.
#pragma once

#include <concepts>
#include <span>

#include "lgm/core/storage.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

// ---------------------------------------------------------------- Objective
/// A finite-sum objective F(x) = (1/N) Σ_i f_i(x) (docs/theory.md §Notation).
/// `Workspace` holds per-thread scratch so that gradients do not allocate.
template <class O>
concept Objective = requires(const O& o, typename O::Workspace& ws, ConstVectorRef x, VectorRef g, IndexSpan batch,
                             Index i) {
  typename O::Workspace;
  { o.dim() } -> std::convertible_to<Index>;
  { o.num_samples() } -> std::convertible_to<Index>;
  { o.make_workspace() } -> std::same_as<typename O::Workspace>;
  /// mean loss over `batch`
  { o.loss(x, batch, ws) } -> std::convertible_to<double>;
  /// writes the mean gradient over `batch` into g; returns the mean loss
  { o.gradient(x, batch, g, ws) } -> std::convertible_to<double>;
  /// writes ∇f_i(x) into g; returns f_i(x) (used by the generic per-sample fallback)
  { o.sample_gradient(x, i, g, ws) } -> std::convertible_to<double>;
};

/// An objective that gives Σ‖g_i‖², Σ⟨g_i,v⟩, Σ⟨g_i,v⟩² over a batch in closed form (docs/batch_rules.md §Cheap forms).
template <class O>
concept HasClosedFormMoments = Objective<O> &&
    requires(const O& o, typename O::Workspace& ws, ConstVectorRef x, ConstVectorRef v, IndexSpan b) {
  { o.sample_moments(x, b, v, ws) } -> std::same_as<SampleMoments>;
};

/// Known constants (docs/design.md §Rules of the house: numbers the theory talks about come from the objective).
template <class O>
concept HasSmoothness = requires(const O& o) {
  { o.smoothness() } -> std::convertible_to<double>;
};
template <class O>
concept HasStrongConvexity = requires(const O& o) {
  { o.strong_convexity() } -> std::convertible_to<double>;
};
template <class O>
concept HasKnownOptimum = requires(const O& o) {
  { o.optimum() } -> std::convertible_to<const Vector&>;
  { o.optimal_value() } -> std::convertible_to<double>;
};

/// An objective on non-host storage (the GPU backend, docs/design.md §Backends): the gradients of all local
/// workers in one call, worker m's mean gradient over batches[m] at X.col(m) into G.col(m) and its mean loss
/// into losses[m].
template <class O>
concept BatchedObjective = requires(const O& o, typename O::Workspace& ws, typename O::Storage::ConstMatrixRef X,
                                    std::span<const IndexSpan> batches, typename O::Storage::MatrixRef G,
                                    std::span<double> losses) {
  typename O::Storage;
  typename O::Workspace;
  { o.dim() } -> std::convertible_to<Index>;
  { o.num_samples() } -> std::convertible_to<Index>;
  { o.make_workspace() } -> std::same_as<typename O::Workspace>;
  o.gradients(X, batches, G, losses, ws);
};

// ---------------------------------------------------------------- Local optimizer
/// Optimizer state for all M_local workers at once: matrices d × M (one column a worker).
template <class Opt>
concept LocalOptimizer = requires(const Opt& opt, typename Opt::State& s, Index dim, Index workers, Index m,
                                  VectorRef x, ConstVectorRef g, double lr, void (*f)(MatrixRef)) {
  typename Opt::State;
  { opt.init(dim, workers) } -> std::same_as<typename Opt::State>;
  /// one local step of worker m: x ← step(x, g, lr), updating column m of the state
  opt.step(s, m, x, g, lr);
  /// calls f(field) for every state field selected to be averaged at a sync (default: none)
  opt.for_each_averaged_field(s, f);
  { opt.averaged_field_count() } -> std::convertible_to<Index>;
  opt.validate();
};

/// A local optimizer on non-host storage: one fused step of all local workers (the GPU backend's kernels).
template <class Opt>
concept BatchedLocalOptimizer = requires(const Opt& opt, typename Opt::State& s, const typename Opt::Storage& st,
                                         Index dim, Index workers, typename Opt::Storage::MatrixRef X,
                                         typename Opt::Storage::ConstMatrixRef G, double lr) {
  typename Opt::Storage;
  typename Opt::State;
  { opt.init(dim, workers, st) } -> std::same_as<typename Opt::State>;
  opt.step_all(s, X, G, lr, st.stream());
  { opt.averaged_field_count() } -> std::convertible_to<Index>;
  opt.validate();
};

// ---------------------------------------------------------------- Outer optimizer
/// What happens to the worker average at a sync (docs/optimizers.md §Outer optimizers). `apply` receives the
/// point of the last sync `x_sync` (updated in place to the new shared point) and the new worker mean `mean`.
template <class O>
concept OuterOptimizer = requires(O& o, Index dim, VectorRef x_sync, ConstVectorRef mean) {
  o.init(dim);
  o.apply(x_sync, mean);
  o.validate();
};

// ---------------------------------------------------------------- Sync rule
template <class R>
concept SyncRule = requires(R& r, const RoundInfo& info) {
  { r.plan(info) } -> std::same_as<SyncPlan>;
  r.validate();
};

// ---------------------------------------------------------------- Learning-rate schedule
/// η as a function of the step count or of the samples processed (docs/schedules.md §Axis; docs/decisions.md §A1).
template <class S>
concept LrSchedule = requires(const S& s, Index step, Index samples) {
  { s.at(step, samples) } -> std::convertible_to<double>;
  s.validate();
};

// ---------------------------------------------------------------- Sampler
/// Which sample indices worker m uses at step k. `draw` must depend only on (seed, worker, step, state
/// of worker m), never on thread count, so that runs are bitwise reproducible (docs/design.md §Determinism).
template <class S>
concept Sampler = requires(S& s, Index workers, Index num_samples, Index m, Index step, std::span<Index> out) {
  s.reset(workers, num_samples);
  s.draw(m, step, out);
};

// ---------------------------------------------------------------- Communicator
namespace detail {
template <class C>
struct communicator_storage {
  using type = HostStorage;
};
template <class C>
requires requires { typename C::Storage; }
struct communicator_storage<C> {
  using type = typename C::Storage;
};
}  // namespace detail

/// Averages worker columns and reduces small statistic vectors across processes (docs/design.md §Backends). The columns
/// live in the communicator's Storage (host memory unless it declares one, e.g. lgm::gpu::DeviceStorage).
template <class C, class S = typename detail::communicator_storage<C>::type>
concept Communicator = requires(C& c, typename S::MatrixRef X, typename S::ConstMatrixRef cX, typename S::VectorRef out,
                                typename S::ConstVectorRef x, Index group, std::span<double> v) {
  { c.size() } -> std::convertible_to<Index>;          ///< M, the number of workers in the run
  { c.local_size() } -> std::convertible_to<Index>;    ///< workers held by this process
  { c.first_worker() } -> std::convertible_to<Index>;  ///< global index of this process's first worker
  c.mean(cX, out);                                     ///< out = mean over all M workers of the columns
  c.group_average(X, group);  ///< every column ← mean of its group of `group` consecutive workers
  c.broadcast(x, X);          ///< every column ← x
  c.allreduce_sum(v);         ///< element-wise sum over processes (in-process: identity)
  c.allreduce_max(v);         ///< element-wise max over processes (in-process: identity)
};

// ---------------------------------------------------------------- Cost model
template <class C>
concept CostModel = requires(const C& c, double bytes, Index participants, Index worker, Index samples, SyncScope scope,
                             Index group) {
  /// seconds for one all-reduce of `bytes` bytes among `participants` workers at `scope`
  { c.allreduce_seconds(bytes, participants, scope, group) } -> std::convertible_to<double>;
  /// bytes each worker sends in that all-reduce (the `bytes` metric)
  { c.allreduce_bytes_sent(bytes, participants) } -> std::convertible_to<double>;
  /// seconds worker m needs for one local step on `samples` samples
  { c.compute_seconds(worker, samples) } -> std::convertible_to<double>;
  { c.element_bytes() } -> std::convertible_to<double>;
};

}  // namespace lgm
