// The driver: one loop that runs a local gradient method and delegates every decision to a policy
// (docs/design.md §The driver). Reference algorithm: docs/batch_rules.md §Pseudocode (LABS) with the round
// structure of docs/sync_rules.md §Rounds ("H completed local steps, then average").
//
// LocalMethod holds the policies and checks them; a run is a detail::RunLoop, whose phases are the named
// members below (plan_round, size_step, compute_gradients, average_gradients, optimizer_step, synchronize,
// account_round, notify_sync, final_global_sync). A new backend changes where the buffers live (the storage);
// a new rule changes one phase.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "lgm/batch/constant.hpp"
#include "lgm/comm/cost_model.hpp"
#include "lgm/comm/in_process.hpp"
#include "lgm/core/concepts.hpp"
#include "lgm/core/error.hpp"
#include "lgm/core/hooks.hpp"
#include "lgm/core/parallel.hpp"
#include "lgm/core/step_context.hpp"
#include "lgm/core/storage.hpp"
#include "lgm/core/types.hpp"
#include "lgm/optim/outer.hpp"
#include "lgm/optim/sgd.hpp"
#include "lgm/run/checkpoint.hpp"
#include "lgm/run/metrics.hpp"
#include "lgm/sampling/samplers.hpp"
#include "lgm/schedule/schedules.hpp"
#include "lgm/sync/constant.hpp"

namespace lgm {

/// Budget and execution settings of a run.
struct RunOptions {
  Index workers = 1;      ///< M
  Index max_steps = 0;    ///< budget in local steps K (0: none)
  Index max_samples = 0;  ///< budget in samples processed by all workers (0: none); docs/batch_rules.md §Budgets
  int threads = 1;        ///< OpenMP threads over workers; results do not depend on it
};

namespace detail {

/// Calls obs.hook(s) through `call` when Obs has the hook; a hook returning bool can stop the run (false).
template <class Obs, class F>
bool notify(Obs& obs, F&& call) {
  if constexpr (std::is_same_v<decltype(call(obs)), bool>) {
    return call(obs);
  } else {
    call(obs);
    return true;
  }
}

#define LGM_DETAIL_HOOK(name, Concept)                        \
  template <class Obs>                                        \
  bool call_##name(Obs& obs, const RunState& s) {             \
    if constexpr (hooks::Concept<Obs, RunState>) {            \
      return notify(obs, [&](auto& o) { return o.name(s); }); \
    } else {                                                  \
      return true;                                            \
    }                                                         \
  }
LGM_DETAIL_HOOK(on_step, HasOnStep)
LGM_DETAIL_HOOK(on_sync, HasOnSync)
LGM_DETAIL_HOOK(on_batch_change, HasOnBatchChange)
LGM_DETAIL_HOOK(on_end, HasOnEnd)
#undef LGM_DETAIL_HOOK

/// True for outer optimizers that declare themselves plain averaging (the driver then copies the mean).
template <class Outer>
constexpr bool is_plain_average() {
  if constexpr (requires { Outer::is_plain_average; })
    return Outer::is_plain_average;
  else
    return false;
}

template <class Rule>
Index sync_payload_elements(const Rule& rule, Index d) {
  if constexpr (hooks::HasSyncPayload<Rule>) {
    return rule.sync_payload_elements(d);
  } else {
    return 0;
  }
}

/// Mean over all M workers of one number per worker (`local`: this process's), summed from 0 in worker order
/// in one process. A communicator may provide worker_mean (the MPI one gathers the numbers to keep that order).
template <class Comm>
double worker_mean(Comm& comm, std::span<const double> local) {
  if constexpr (requires { comm.worker_mean(local); }) {
    return comm.worker_mean(local);
  } else {
    double sums[1] = {0.0};
    for (double v : local) sums[0] += v;
    comm.allreduce_sum(std::span<double>(sums, 1));
    return sums[0] / static_cast<double>(comm.size());
  }
}

/// True for communicators whose averages cross processes: the driver then packs the parameters and the
/// averaged optimizer-state fields of a global sync into one message (one all-reduce instead of 1 + F).
template <class Comm>
constexpr bool packs_sync_message() {
  if constexpr (requires { Comm::crosses_processes; })
    return Comm::crosses_processes;
  else
    return false;
}

template <class Method, class Comm, class Obj, class... Observers>
class RunLoop;

}  // namespace detail

/// A local gradient method: M workers, each taking H local optimizer steps on its own minibatches
/// between synchronizations. Every decision is made by a policy:
///   Opt      local optimizer (SGD, HeavyBall, Nesterov, AdamW)          — LocalOptimizer
///   Sync     synchronization rule (ConstantSync, QuadraticSyncRule, …)   — SyncRule
///   Batch    batch-size rule (ConstantBatch, NormTestRule, …)            — BatchSizeRuleFor
///   Schedule learning-rate schedule                                      — LrSchedule
///   Samp     sampler (IidSampler, ShuffledEpochSampler, …)               — Sampler
///   Outer    what happens to the average at a sync (Averaging, OuterSGD) — OuterOptimizer
///   Cost     simulated-time model (AlphaBetaCost)                        — CostModel
template <class Opt = SGD, class Sync = ConstantSync, class Batch = ConstantBatch, class Schedule = ConstantLr,
          class Samp = IidSampler, class Outer = Averaging, class Cost = AlphaBetaCost>
class LocalMethod {
  static_assert(LocalOptimizer<Opt> || BatchedLocalOptimizer<Opt>,
                "Opt must model lgm::LocalOptimizer: State init(dim, workers), step(state, m, x, g, lr), "
                "for_each_averaged_field(state, f), averaged_field_count(), validate() (or, on a device, "
                "lgm::BatchedLocalOptimizer: init(dim, workers, storage), step_all(state, X, G, lr, stream))");
  static_assert(SyncRule<Sync>, "Sync must model lgm::SyncRule: SyncPlan plan(const RoundInfo&), validate()");
  static_assert(BatchSizeRuleBase<Batch>,
                "Batch must model lgm::BatchSizeRuleBase: reset(M_local, M), batch_size(m), max_batch_size(), "
                "validate(), and after_gradients(ctx), at_sync(ctx)");
  static_assert(LrSchedule<Schedule>, "Schedule must model lgm::LrSchedule: double at(step, samples), validate()");
  static_assert(Sampler<Samp>, "Samp must model lgm::Sampler: reset(workers, num_samples), draw(m, step, out)");
  static_assert(OuterOptimizer<Outer>, "Outer must model lgm::OuterOptimizer: init(dim), apply(x_sync, mean)");
  static_assert(CostModel<Cost>,
                "Cost must model lgm::CostModel: allreduce_seconds, allreduce_bytes_sent, compute_seconds, "
                "element_bytes");

 public:
  using optimizer_type = Opt;
  using sync_rule_type = Sync;
  using batch_rule_type = Batch;
  using schedule_type = Schedule;
  using sampler_type = Samp;
  using outer_optimizer_type = Outer;
  using cost_model_type = Cost;

  explicit LocalMethod(RunOptions run = {}, Opt opt = {}, Sync sync = {}, Batch batch = {}, Schedule schedule = {},
                       Samp sampler = {}, Outer outer = {}, Cost cost = {})
      : m_run(run),
        m_opt(std::move(opt)),
        m_sync(std::move(sync)),
        m_batch(std::move(batch)),
        m_schedule(std::move(schedule)),
        m_sampler(std::move(sampler)),
        m_outer(std::move(outer)),
        m_cost(std::move(cost)) {}

  RunOptions& options() noexcept { return m_run; }
  Opt& optimizer() noexcept { return m_opt; }
  Sync& sync_rule() noexcept { return m_sync; }
  Batch& batch_rule() noexcept { return m_batch; }
  Schedule& schedule() noexcept { return m_schedule; }
  Samp& sampler() noexcept { return m_sampler; }
  Outer& outer_optimizer() noexcept { return m_outer; }
  Cost& cost_model() noexcept { return m_cost; }

  /// Checks every setting against the objective; throws ConfigError naming the parameter, value and range.
  template <class Obj>
  void validate(const Obj& obj, ConstVectorRef x0) const {
    static_assert(Objective<Obj> || BatchedObjective<Obj>,
                  "Obj must model lgm::Objective (host) or lgm::BatchedObjective (device storage)");
    detail::require_at_least("M", m_run.workers, Index{1});
    detail::require_at_least("threads", m_run.threads, 1);
    detail::require_at_least("max_steps", m_run.max_steps, Index{0});
    detail::require_at_least("max_samples", m_run.max_samples, Index{0});
    detail::require(m_run.max_steps > 0 || m_run.max_samples > 0, "max_steps/max_samples",
                    detail::to_text(m_run.max_steps) + "/" + detail::to_text(m_run.max_samples),
                    "at least one budget > 0");
    detail::require(x0.size() == obj.dim(), "x0 (size)", x0.size(),
                    "the objective's dimension d = " + detail::to_text(obj.dim()));
    detail::require(x0.allFinite(), "x0", "a vector with non-finite entries", "finite numbers");
    detail::require_at_least("num_samples", static_cast<Index>(obj.num_samples()), Index{1});
    m_opt.validate();
    m_sync.validate();
    m_batch.validate();
    m_schedule.validate();
    m_outer.validate();
    if constexpr (hooks::HasValidate<Samp>) m_sampler.validate();
    if constexpr (hooks::HasValidateWorkers<Cost>) m_cost.validate(m_run.workers);
  }

  /// Runs the method in this process with M = options().workers workers as columns of one matrix.
  template <Objective Obj, class... Observers>
  RunResult run(const Obj& obj, ConstVectorRef x0, Observers&... observers) {
    validate(obj, x0);
    InProcessCommunicator comm(m_run.workers, m_run.threads);
    return run_with(comm, obj, x0, observers...);
  }

  /// Runs the method over any communicator (this process holds comm.local_size() of comm.size() workers).
  /// The communicator decides where the replicas live: its storage() (a device) or host memory.
  template <class Comm, class Obj, class... Observers>
  RunResult run_with(Comm& comm, const Obj& obj, ConstVectorRef x0, Observers&... observers) {
    return run_from(comm, obj, x0, nullptr, observers...);
  }

  /// Continues the run whose state `snapshot` holds (RunState::snapshot() at a sync of a run of this method
  /// with the same settings, objective and x0): the rest of the run is bitwise that of the uninterrupted one
  /// (docs/driver.md §Checkpoint and resume). SnapshotError when the snapshot is damaged or another run's.
  template <Objective Obj, class... Observers>
  RunResult resume(const Obj& obj, ConstVectorRef x0, const RunSnapshot& snapshot, Observers&... observers) {
    validate(obj, x0);
    InProcessCommunicator comm(m_run.workers, m_run.threads);
    return resume_with(comm, obj, x0, snapshot, observers...);
  }

  /// resume() over any communicator.
  template <class Comm, class Obj, class... Observers>
  RunResult resume_with(Comm& comm, const Obj& obj, ConstVectorRef x0, const RunSnapshot& snapshot,
                        Observers&... observers) {
    static_assert(detail::RunLoop<LocalMethod, Comm, Obj, Observers...>::missing_checkpoint() == nullptr,
                  "resume needs every part of the run to save its state: checkpoint(archive) on the sync rule, "
                  "batch rule, schedule, sampler, outer optimizer and cost model, checkpoint_state(state, archive) "
                  "on the optimizer, checkpoint(workspace, archive) on an objective with synchronize_state "
                  "(docs/driver.md §Checkpoint and resume)");
    return run_from(comm, obj, x0, &snapshot, observers...);
  }

 private:
  template <class Method, class Comm, class Obj, class... Observers>
  friend class detail::RunLoop;

  template <class Comm, class Obj, class... Observers>
  RunResult run_from(Comm& comm, const Obj& obj, ConstVectorRef x0, const RunSnapshot* snapshot,
                     Observers&... observers);

  RunOptions m_run;
  Opt m_opt;
  Sync m_sync;
  Batch m_batch;
  Schedule m_schedule;
  Samp m_sampler;
  Outer m_outer;
  Cost m_cost;
};

namespace detail {

/// d × M blocks of optimizer state (the memory plan): a run-time choice says so itself (state_field_count()).
template <class Opt>
Index state_field_count(const Opt& opt) {
  if constexpr (requires { opt.state_field_count(); })
    return opt.state_field_count();
  else
    return static_cast<Index>(Opt::state_fields.size());
}

/// The optimizer state of `workers` replicas: host optimizers allocate it themselves, device ones in `store`.
template <class Opt, class Storage>
auto init_optimizer_state(const Opt& opt, Index d, Index workers, const Storage& store) {
  if constexpr (Storage::is_host)
    return opt.init(d, workers);
  else
    return opt.init(d, workers, store);
}

/// One run of a LocalMethod over a communicator: the buffers, the loop state and the phases of the loop.
/// Everything the loop touches is allocated in the constructor (no allocation per step, except an index
/// buffer when a batch grows), in the communicator's storage: host memory, or device memory from the GPU
/// backend's caching pool.
template <class Method, class Comm, class Obj, class... Observers>
class RunLoop final : public SnapshotSource {
  using Opt = typename Method::optimizer_type;
  using Batch = typename Method::batch_rule_type;
  using Outer = typename Method::outer_optimizer_type;
  using Storage = std::remove_cvref_t<decltype(storage_of(std::declval<Comm&>()))>;
  static constexpr bool on_host = Storage::is_host;
  using Ctx = StepContext<Obj, Comm, Storage>;
  using MatrixT = decltype(std::declval<Storage&>().matrix(Index{}, Index{}));
  using VectorT = decltype(std::declval<Storage&>().vector(Index{}));
  using StateT =
      decltype(init_optimizer_state(std::declval<const Opt&>(), Index{}, Index{}, std::declval<const Storage&>()));

  // a device run downloads X for the observers only when one of them has a hook that reads it
  static constexpr bool step_observed = on_host || (hooks::HasOnStep<Observers, RunState> || ...);
  static constexpr bool sync_observed = on_host || (hooks::HasOnSync<Observers, RunState> || ...) ||
                                        (hooks::HasOnBatchChange<Observers, RunState> || ...);

 public:
  RunLoop(Method& method, Comm& comm, const Obj& obj, ConstVectorRef x0, Observers&... observers)
      : m_method(method),
        m_comm(comm),
        m_store(storage_of(comm)),
        m_obj(obj),
        m_observers(observers...),
        m_M(comm.size()),
        m_local(comm.local_size()),
        m_first(comm.first_worker()),
        m_d(obj.dim()),
        m_fields(method.m_opt.averaged_field_count()),
        m_pack(on_host && packs_sync_message<Comm>() && m_fields > 0),
        m_X(m_store.matrix(m_d, m_local)),
        m_G(m_store.matrix(m_d, m_local)),
        m_scratch(m_store.matrix(m_d, 2 * m_local + 2)),
        m_x_sync(m_store.vector(m_d)),
        m_mean(m_store.vector(m_d)),
        m_x_sync_host(x0),
        m_X_host(on_host ? 0 : m_d, on_host ? 0 : m_local),
        m_mean_host(on_host ? 0 : m_d),
        m_state(init_state()),
        m_packed(m_pack ? m_d * (1 + m_fields) : 0, m_pack ? m_local : 0),
        m_packed_mean(m_pack ? m_d * (1 + m_fields) : 0) {
    m_store.upload(x0, m_x_sync);
    m_comm.broadcast(m_x_sync, m_X);
    method.m_outer.init(m_d);
    method.m_batch.reset(m_local, m_M);
    method.m_sampler.reset(m_M, obj.num_samples());
    // a batched (device) objective computes all local workers at once in one workspace
    const Index workspace_count = on_host ? m_local : 1;
    m_workspaces.reserve(static_cast<size_t>(workspace_count));
    for (Index m = 0; m < workspace_count; ++m) m_workspaces.push_back(obj.make_workspace());
    m_all_indices.resize(static_cast<size_t>(obj.num_samples()));
    std::iota(m_all_indices.begin(), m_all_indices.end(), Index{0});
    const auto L = static_cast<size_t>(m_local);
    m_index_buffers.resize(L);
    m_batches.resize(L);
    m_sizes.resize(L);
    m_step_sizes.resize(L);
    m_losses.resize(L);
    m_round_compute.resize(L);
    for (Index m = 0; m < m_local; ++m) m_sizes[static_cast<size_t>(m)] = method.m_batch.batch_size(m);
  }

  /// The loop: rounds until the budget is spent, the run diverges or an observer stops it.
  RunResult run() {
    while (!m_stop && budget_left()) {
      plan_round();
      if (!run_local_steps()) break;  // diverged: no sync of non-finite parameters
      synchronize();
      account_round();
      read_batch_sizes();
      if (!shared_point_finite()) break;
      notify_sync();
      ++m_round;
    }
    final_global_sync();
    return finish();
  }

  /// The state at the end of the current round (RunState::snapshot(), called from on_sync).
  RunSnapshot take() override {
    if constexpr (constexpr const char* missing = missing_checkpoint(); missing != nullptr) {
      throw SnapshotError(std::string("this run cannot be saved: its ") + missing +
                          " has no checkpoint(archive) (docs/driver.md §Checkpoint and resume)");
    } else {
      StateWriter w;
      Index next_round = m_round + 1;
      checkpoint(w, next_round);
      return std::move(w).finish();
    }
  }

  /// The policy family without a checkpoint hook, or nullptr.
  static constexpr const char* missing_checkpoint() {
    using M = Method;
    if constexpr (on_host) {
      if (!requires(const Opt& o, StateT& s, StateWriter& w) { o.checkpoint_state(s, w); }) return "optimizer";
    } else {
      if (!requires(const Opt& o, StateT& s, StateWriter& w, Storage& st) { o.checkpoint_state(s, w, st.stream()); })
        return "optimizer";
    }
    if (!hooks::HasCheckpoint<typename M::sync_rule_type>) return "sync rule";
    if (!hooks::HasCheckpoint<typename M::batch_rule_type>) return "batch rule";
    if (!hooks::HasCheckpoint<typename M::schedule_type>) return "schedule";
    if (!hooks::HasCheckpoint<typename M::sampler_type>) return "sampler";
    if (!hooks::HasCheckpoint<typename M::outer_optimizer_type>) return "outer optimizer";
    if (!hooks::HasCheckpoint<typename M::cost_model_type>) return "cost model";
    if constexpr (hooks::HasSynchronizeState<Obj, Comm>) {
      if (!requires(const Obj& o, typename Obj::Workspace& ws, StateWriter& w) { o.checkpoint(ws, w); })
        return "objective";
    }
    return nullptr;
  }

  /// Continues from a snapshot (before run()); LocalMethod::resume_with has checked the hooks at compile time.
  void restore(const RunSnapshot& snapshot) {
    if constexpr (missing_checkpoint() == nullptr) {
      StateReader r(snapshot);
      checkpoint(r, m_round);
      r.finish();
    }
  }

 private:
  // ---------------------------------------------------------------- round planning
  /// The sync rule decides the round's period and scope from η at the round's first step
  /// (docs/decisions.md §A1).
  void plan_round() {
    const Index remaining = remaining_steps();
    m_plan = m_method.m_sync.plan(
        RoundInfo{m_round, m_metrics.steps, m_method.m_schedule.at(m_metrics.steps, m_metrics.samples), remaining});
    require_at_least("H (from the sync rule)", m_plan.period, Index{1});
    if (m_plan.scope == SyncScope::group)
      require(m_plan.group_size >= 1 && m_local % m_plan.group_size == 0, "group_size", m_plan.group_size,
              "a divisor of the workers per process " + to_text(m_local));
    m_H = remaining > 0 ? std::min(m_plan.period, remaining) : m_plan.period;
    std::fill(m_round_compute.begin(), m_round_compute.end(), 0.0);
    m_changed = false;
  }

  /// Runs the round's local steps; false when the minibatch loss became non-finite.
  bool run_local_steps() {
    for (Index h = 0; h < m_H; ++h) {
      m_lr = m_method.m_schedule.at(m_metrics.steps, m_metrics.samples);
      size_step(h + 1 == m_H);
      const Index step_total = global_step_samples();
      const bool budget_hit =
          m_method.m_run.max_samples > 0 && m_metrics.samples + step_total >= m_method.m_run.max_samples;
      const bool sync_after = h + 1 == m_H || budget_hit;
      compute_gradients(sync_after);
      if (m_plan.average_gradients) average_gradients();
      optimizer_step();
      finish_step(step_total);
      if (!std::isfinite(m_batch_loss)) {
        m_result.reason = StopReason::diverged;
        m_result.message = "diverged: the minibatch loss is " + to_text(m_batch_loss) + " at step " +
                           to_text(m_metrics.steps - 1) + " (round " + to_text(m_round) + ")";
        return false;
      }
      notify_step();
      if (sync_after || m_stop) break;
    }
    return true;
  }

  // ---------------------------------------------------------------- one local step
  /// Rules that size a step from x_k^m alone do it before the draw (docs/theory.md §A4 at every step); a
  /// sync forced by the sample budget depends on these sizes, so the rule sees the planned one.
  void size_step(bool planned_sync_after) {
    if constexpr (hooks::HasBeforeGradients<Batch, Ctx>) {
      m_method.m_batch.before_gradients(make_ctx(m_metrics.steps, planned_sync_after));
      read_batch_sizes();
    }
  }

  /// Σ over all M workers of this step's batch sizes.
  Index global_step_samples() {
    double total[1] = {0.0};
    for (Index b : m_sizes) total[0] += static_cast<double>(b);
    m_comm.allreduce_sum(std::span<double>(total, 1));
    return static_cast<Index>(total[0]);
  }

  /// Draws every worker's batch and computes g^m at the pre-update point x^m
  /// (docs/batch_rules.md §Pseudocode); then the batch rule's statistics on the local gradients, before any averaging.
  void compute_gradients(bool sync_after) {
    parallel_for(m_method.m_run.threads, m_local, [&](Index m) {
      const auto um = static_cast<size_t>(m);
      const Index b = m_sizes[um];
      m_step_sizes[um] = b;
      auto& buf = m_index_buffers[um];
      if (static_cast<Index>(buf.size()) < b) buf.resize(static_cast<size_t>(b));  // only when b grows
      std::span<Index> out(buf.data(), static_cast<size_t>(b));
      m_method.m_sampler.draw(m_first + m, m_metrics.steps, out);
      m_batches[um] = IndexSpan(buf.data(), static_cast<size_t>(b));
      if constexpr (on_host) m_losses[um] = m_obj.gradient(m_X.col(m), m_batches[um], m_G.col(m), m_workspaces[um]);
    });
    if constexpr (!on_host) m_obj.gradients(m_X, m_batches, m_G, m_losses, m_workspaces[0]);  // one call
    m_method.m_batch.after_gradients(make_ctx(m_metrics.steps, sync_after));
  }

  /// H = 1 as a gradient all-reduce + one step (docs/decisions.md §A9): every worker steps with the mean.
  void average_gradients() {
    m_comm.mean(m_G, m_mean);
    m_comm.broadcast(m_mean, m_G);
  }

  void optimizer_step() {
    auto& opt = m_method.m_opt;
    if constexpr (on_host) {
      parallel_for(m_method.m_run.threads, m_local,
                   [&](Index m) { opt.step(m_state, m, m_X.col(m), m_G.col(m), m_lr); });
    } else {
      opt.step_all(m_state, m_X, m_G, m_lr, m_store.stream());  // one fused launch for all replicas
    }
    for (Index m = 0; m < m_local; ++m)
      m_round_compute[static_cast<size_t>(m)] +=
          m_method.m_cost.compute_seconds(m_first + m, m_step_sizes[static_cast<size_t>(m)]);
  }

  void finish_step(Index step_total) {
    m_batch_loss = worker_mean(m_comm, std::span<const double>(m_losses));
    m_metrics.samples += step_total;
    ++m_metrics.steps;
    read_batch_sizes();  // sizes change here only with apply_at = next_step
  }

  void notify_step() {
    if constexpr (step_observed) {
      const bool go = notify_all([](auto& o, const RunState& s) { return call_on_step(o, s); }, make_state(false));
      if (!go) stop_by_observer("at step " + to_text(m_metrics.steps - 1));
    }
  }

  // ---------------------------------------------------------------- synchronization
  /// Averages what the plan says (docs/sync_rules.md §Rounds), then lets the batch rule act on the new point.
  void synchronize() {
    m_payload = m_d;
    if (m_plan.average_gradients) {
      sync_after_gradient_average();
    } else if (m_plan.scope == SyncScope::global && m_pack) {
      sync_global_packed();
    } else if (m_plan.scope == SyncScope::global) {
      sync_global();
    } else {
      sync_group();
    }
    if constexpr (hooks::HasSynchronizeState<Obj, Comm>) {  // e.g. batch-norm running statistics (docs/nn.md)
      static_assert(!on_host, "synchronize_state is a hook of device objectives (one workspace for all workers)");
      m_payload +=
          m_obj.synchronize_state(m_workspaces[0], m_comm, m_plan.scope == SyncScope::global ? m_M : m_plan.group_size);
    }
    if constexpr (!on_host) m_store.download(m_x_sync, m_x_sync_host);  // d numbers per round
    m_last_sync_global = m_plan.scope == SyncScope::global;
    m_method.m_batch.at_sync(make_ctx(m_metrics.steps - 1, true));
    m_payload += sync_payload_elements(m_method.m_batch, m_d);
  }

  /// The gradient all-reduce was the communication: parameters and states are already identical. The outer
  /// optimizer takes the round's common point as the worker mean (docs/optimizers.md §Outer optimizers).
  void sync_after_gradient_average() {
    if constexpr (is_plain_average<Outer>()) {
      m_store.copy(m_X.col(0), m_x_sync);
    } else {
      m_store.copy(m_X.col(0), m_mean);
      apply_outer();
      m_comm.broadcast(m_x_sync, m_X);
    }
  }

  /// x_sync ← the outer step from x_sync towards m_mean. On a device the step is d numbers per round, taken
  /// on the host copy.
  void apply_outer() {
    if constexpr (on_host) {
      m_method.m_outer.apply(m_x_sync, m_mean);
    } else {
      m_store.download(m_mean, m_mean_host);
      m_method.m_outer.apply(m_x_sync_host, m_mean_host);
      m_store.upload(m_x_sync_host, m_x_sync);
    }
  }

  /// One message across processes: the column mean of the stacked [X; F_1; …; F_F] is the stack of the means.
  void sync_global_packed() {
    if constexpr (on_host) {  // m_pack is false on a device
      const Index d = m_d;
      auto& opt = m_method.m_opt;
      m_packed.topRows(d) = m_X;
      Index row = d;
      opt.for_each_averaged_field(m_state, [&](MatrixRef F) {
        m_packed.middleRows(row, d) = F;
        row += d;
      });
      m_comm.mean(m_packed, m_packed_mean);
      if constexpr (is_plain_average<Outer>()) {
        m_x_sync = m_packed_mean.head(d);
      } else {
        m_method.m_outer.apply(m_x_sync, m_packed_mean.head(d));
      }
      m_comm.broadcast(m_x_sync, m_X);
      row = d;
      opt.for_each_averaged_field(m_state, [&](MatrixRef F) {
        m_comm.broadcast(m_packed_mean.segment(row, d), F);
        row += d;
      });
      m_payload += d * m_fields;
    }
  }

  void sync_global() {
    m_comm.mean(m_X, m_mean);
    if constexpr (is_plain_average<Outer>())
      m_store.copy(m_mean, m_x_sync);
    else
      apply_outer();
    m_comm.broadcast(m_x_sync, m_X);
    average_state_fields();
  }

  /// The optimizer-state fields selected for averaging (docs/decisions.md §A8).
  void average_state_fields() {
    m_method.m_opt.for_each_averaged_field(m_state, [&](auto&& F) {
      m_comm.mean(F, m_mean);
      m_comm.broadcast(m_mean, F);
    });
    m_payload += m_d * m_fields;
  }

  /// A group sync averages consecutive workers; the outer optimizer acts at global syncs only.
  void sync_group() {
    m_comm.group_average(m_X, m_plan.group_size);
    m_method.m_opt.for_each_averaged_field(m_state, [&](auto&& F) { m_comm.group_average(F, m_plan.group_size); });
    m_payload += m_d * m_fields;
  }

  /// Simulated time and bytes of the round (docs/driver.md §Cost model).
  void account_round() {
    auto& cost = m_method.m_cost;
    const Index participants = m_plan.scope == SyncScope::global ? m_M : m_plan.group_size;
    const double bytes = cost.element_bytes() * static_cast<double>(m_payload);
    double slowest[1] = {*std::max_element(m_round_compute.begin(), m_round_compute.end())};
    m_comm.allreduce_max(std::span<double>(slowest, 1));
    const double comm_s = cost.allreduce_seconds(bytes, participants, m_plan.scope, m_plan.group_size);
    m_metrics.bytes += cost.allreduce_bytes_sent(bytes, participants);
    m_metrics.compute_time_s += slowest[0];
    m_metrics.comm_time_s += comm_s;
    m_metrics.sim_time_s = m_metrics.compute_time_s + m_metrics.comm_time_s;
    ++m_metrics.comm_rounds;
    if (m_plan.scope == SyncScope::global) ++m_metrics.global_rounds;
  }

  bool shared_point_finite() {
    if (shared_host().allFinite()) return true;
    m_result.reason = StopReason::diverged;
    m_result.message = "diverged: the averaged parameters are not finite after round " + to_text(m_round) + " (step " +
                       to_text(m_metrics.steps - 1) + ")";
    return false;
  }

  /// on_batch_change (when a size changed since the last sync) and on_sync; either may stop the run.
  void notify_sync() {
    if constexpr (sync_observed) {
      const RunState s = make_state(true);
      if (m_changed && !notify_all([](auto& o, const RunState& st) { return call_on_batch_change(o, st); }, s) &&
          !m_stop)
        stop_by_observer("at the batch-size change after round " + to_text(m_round));
      if (!notify_all([](auto& o, const RunState& st) { return call_on_sync(o, st); }, s) && !m_stop)
        stop_by_observer("after round " + to_text(m_round));
    }
  }

  /// The output is a globally averaged model (docs/decisions.md §Final model): one more global sync is
  /// charged when the last one was a group sync.
  void final_global_sync() {
    if (m_last_sync_global || m_result.reason == StopReason::diverged) return;
    auto& cost = m_method.m_cost;
    m_comm.mean(m_X, m_mean);
    m_store.copy(m_mean, m_x_sync);
    m_comm.broadcast(m_x_sync, m_X);
    if constexpr (!on_host) m_store.download(m_x_sync, m_x_sync_host);
    const double bytes = cost.element_bytes() * static_cast<double>(m_d);
    m_metrics.bytes += cost.allreduce_bytes_sent(bytes, m_M);
    m_metrics.comm_time_s += cost.allreduce_seconds(bytes, m_M, SyncScope::global, 0);
    m_metrics.sim_time_s = m_metrics.compute_time_s + m_metrics.comm_time_s;
    ++m_metrics.comm_rounds;
    ++m_metrics.global_rounds;
  }

  RunResult finish() {
    if (m_result.reason == StopReason::budget) m_result.message = "budget reached";
    m_result.metrics = m_metrics;
    m_result.x = shared_host();
    m_result.last_batch_loss = m_batch_loss;
    notify_all([](auto& o, const RunState& s) { return call_on_end(o, s); }, make_state(true));
    return std::move(m_result);
  }

  // ---------------------------------------------------------------- checkpoint
  /// Every field of the run at the end of a round, in one order for saving and restoring; `round` is the next
  /// round's index.
  template <class Ar>
  void checkpoint(Ar& ar, Index& round) {
    ar.check("d", m_d);
    ar.check("M", m_M);
    ar.check("local workers", m_local);
    ar.check("first worker", m_first);
    ar("round", round);
    ar("metrics", m_metrics);
    ar("lr", m_lr);
    ar("batch_loss", m_batch_loss);
    ar("last_sync_global", m_last_sync_global);
    ar("sizes", m_sizes);
    checkpoint_replicas(ar);
    auto& M = m_method;
    if constexpr (on_host)
      M.m_opt.checkpoint_state(m_state, ar);
    else
      M.m_opt.checkpoint_state(m_state, ar, m_store.stream());
    M.m_sync.checkpoint(ar);
    M.m_batch.checkpoint(ar);
    M.m_schedule.checkpoint(ar);
    M.m_sampler.checkpoint(ar);
    M.m_outer.checkpoint(ar);
    M.m_cost.checkpoint(ar);
    if constexpr (hooks::HasSynchronizeState<Obj, Comm>) m_obj.checkpoint(m_workspaces[0], ar);
  }

  /// X and the shared point (a device run's through their host copies).
  template <class Ar>
  void checkpoint_replicas(Ar& ar) {
    if constexpr (on_host) {
      ar("X", m_X);
      ar("x_sync", m_x_sync);
    } else {
      if constexpr (Ar::saving) m_store.download_matrix(m_X, m_X_host);
      ar("X", m_X_host);
      ar("x_sync", m_x_sync_host);
      require_shape("X", m_X_host, m_d, m_local);
      require_shape("x_sync", m_x_sync_host, m_d, 1);
      if constexpr (!Ar::saving) {
        for (Index m = 0; m < m_local; ++m) m_store.upload(m_X_host.col(m), m_X.col(m));
        m_store.upload(m_x_sync_host, m_x_sync);
      }
    }
  }

  template <class M>
  static void require_shape(const char* name, const M& m, Index rows, Index cols) {
    if (m.rows() != rows || m.cols() != cols)
      throw SnapshotError(std::string("snapshot of another run: ") + name + " is " + to_text(m.rows()) + " × " +
                          to_text(m.cols()) + ", this run's is " + to_text(rows) + " × " + to_text(cols));
  }

  // ---------------------------------------------------------------- helpers
  StateT init_state() const { return init_optimizer_state(m_method.m_opt, m_d, m_local, m_store); }

  Index remaining_steps() const {
    return m_method.m_run.max_steps > 0 ? m_method.m_run.max_steps - m_metrics.steps : -1;
  }

  bool budget_left() const {
    const RunOptions& run = m_method.m_run;
    return (run.max_steps == 0 || m_metrics.steps < run.max_steps) &&
           (run.max_samples == 0 || m_metrics.samples < run.max_samples);
  }

  /// Re-reads every worker's next batch size; notes a change for on_batch_change.
  void read_batch_sizes() {
    for (Index m = 0; m < m_local; ++m) {
      const Index b = m_method.m_batch.batch_size(m);
      m_changed = m_changed || b != m_sizes[static_cast<size_t>(m)];
      m_sizes[static_cast<size_t>(m)] = b;
    }
  }

  void stop_by_observer(const std::string& where) {
    m_stop = true;
    m_result.reason = StopReason::observer;
    m_result.message = "stopped by an observer " + where;
  }

  const Vector& shared_host() const {
    if constexpr (on_host)
      return m_x_sync;
    else
      return m_x_sync_host;
  }

  SnapshotSource* source(bool at_sync) { return at_sync ? this : nullptr; }

  RunState make_state(bool at_sync) {
    if constexpr (on_host) {
      return RunState{m_metrics, m_round,  m_plan.period, m_plan.scope, m_lr,           m_batch_loss,
                      m_X,       m_x_sync, m_sizes,       at_sync,      source(at_sync)};
    } else {
      m_store.download_matrix(m_X, m_X_host);
      return RunState{m_metrics, m_round,       m_plan.period, m_plan.scope, m_lr,           m_batch_loss,
                      m_X_host,  m_x_sync_host, m_sizes,       at_sync,      source(at_sync)};
    }
  }

  Ctx make_ctx(Index step, bool sync_after) {
    return Ctx{m_obj,     m_comm,        m_X,  m_G,        m_batches,    m_workspaces,
               m_scratch, m_all_indices, step, sync_after, m_plan.scope, m_method.m_run.threads};
  }

  /// Every observer's hook is called (none is skipped because an earlier one asked to stop).
  template <class Hook>
  bool notify_all(Hook hook, const RunState& s) {
    return std::apply(
        [&](auto&... obs) {
          bool go = true;
          ((go = hook(obs, s) && go), ...);
          return go;
        },
        m_observers);
  }

  Method& m_method;
  Comm& m_comm;
  Storage& m_store;
  const Obj& m_obj;
  std::tuple<Observers&...> m_observers;
  const Index m_M, m_local, m_first, m_d, m_fields;
  const bool m_pack;

  // buffers (docs/design.md §Backends: one allocation per run)
  MatrixT m_X, m_G, m_scratch;
  VectorT m_x_sync, m_mean;
  Vector m_x_sync_host;  // a device run's host copies: the shared point (observers, outer step, result),
  Matrix m_X_host;       // X (downloaded only for observers that read it)
  Vector m_mean_host;
  StateT m_state;
  Matrix m_packed;  // across processes: [x; averaged state fields], d·(1 + F) × M_local
  Vector m_packed_mean;
  std::vector<typename Obj::Workspace> m_workspaces;
  std::vector<Index> m_all_indices;
  std::vector<std::vector<Index>> m_index_buffers;
  std::vector<IndexSpan> m_batches;
  std::vector<Index> m_sizes, m_step_sizes;
  std::vector<double> m_losses, m_round_compute;

  // loop state
  Metrics m_metrics;
  RunResult m_result;
  SyncPlan m_plan;
  Index m_round = 0, m_H = 0, m_payload = 0;
  double m_lr = 0.0, m_batch_loss = 0.0;
  bool m_stop = false, m_last_sync_global = true, m_changed = false;
};

}  // namespace detail

template <class Opt, class Sync, class Batch, class Schedule, class Samp, class Outer, class Cost>
template <class Comm, class Obj, class... Observers>
RunResult LocalMethod<Opt, Sync, Batch, Schedule, Samp, Outer, Cost>::run_from(Comm& comm, const Obj& obj,
                                                                               ConstVectorRef x0,
                                                                               const RunSnapshot* snapshot,
                                                                               Observers&... observers) {
  static_assert(Communicator<Comm>,
                "Comm must model lgm::Communicator: size(), local_size(), first_worker(), mean(X, out), "
                "group_average(X, group), allreduce_sum(v), allreduce_max(v)");
  using Storage = std::remove_cvref_t<decltype(detail::storage_of(comm))>;
  if constexpr (Storage::is_host) {
    static_assert(Objective<Obj>, "a host run needs an lgm::Objective (gradient(x, batch, g, ws) per worker)");
    static_assert(LocalOptimizer<Opt>, "a host run needs an lgm::LocalOptimizer (step(state, m, x, g, lr))");
  } else {
    static_assert(BatchedObjective<Obj> && std::is_same_v<typename Obj::Storage, Storage>,
                  "a device run needs an objective on the communicator's storage (lgm::gpu::DeviceLogistic, ...)");
    static_assert(BatchedLocalOptimizer<Opt> && std::is_same_v<typename Opt::Storage, Storage>,
                  "a device run needs an optimizer on the communicator's storage (lgm::gpu::SGD<>, ...)");
  }
  static_assert(BatchSizeRuleFor<Batch, StepContext<Obj, Comm, Storage>>,
                "Batch must provide after_gradients(const StepContext&) and at_sync(const StepContext&)");
  detail::require(comm.size() == m_run.workers, "M", m_run.workers,
                  "the communicator's worker count " + detail::to_text(comm.size()));
  validate(obj, x0);
  if constexpr (hooks::HasRequireMemory<Obj>) {  // before anything large is allocated (docs/nn.md §Memory plan)
    const Index local = comm.local_size();
    const Index fields = detail::state_field_count(m_opt);
    obj.require_memory({.local_workers = local,
                        .max_batch = m_batch.max_batch_size(),
                        .replica_columns = (4 + fields) * local + 4});  // X, G, 2M + 2 scratch, x_sync, mean
  }
  detail::RunLoop<LocalMethod, Comm, Obj, Observers...> loop(*this, comm, obj, x0, observers...);
  if (snapshot) loop.restore(*snapshot);
  return loop.run();
}

}  // namespace lgm
