// The driver: one loop that runs a local gradient method and delegates every decision to a policy
// (DESIGN §1–2). Reference algorithm: adaptive-batch-local-methods.md §3.6 (LABS) with the round
// structure of synchronization-rules.md §1 ("H completed local steps, then average", A6).
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "lgm/batch/constant.hpp"
#include "lgm/comm/cost_model.hpp"
#include "lgm/comm/in_process.hpp"
#include "lgm/core/concepts.hpp"
#include "lgm/core/error.hpp"
#include "lgm/core/step_context.hpp"
#include "lgm/core/storage.hpp"
#include "lgm/core/types.hpp"
#include "lgm/optim/outer.hpp"
#include "lgm/optim/sgd.hpp"
#include "lgm/run/metrics.hpp"
#include "lgm/sampling/samplers.hpp"
#include "lgm/schedule/schedules.hpp"
#include "lgm/sync/constant.hpp"

namespace lgm {

/// Budget and execution settings of a run.
struct RunOptions {
  Index workers = 1;      ///< M
  Index max_steps = 0;    ///< budget in local steps K (0: none)
  Index max_samples = 0;  ///< budget in samples processed by all workers (0: none); reference §3.5
  int threads = 1;        ///< OpenMP threads over workers; results do not depend on it
};

namespace detail {

// Observers may implement any of on_step, on_sync, on_batch_change, on_end, each taking a const RunState&
// and returning void or bool (false stops the run).
template <class Obs, class F>
bool notify(Obs& obs, F&& call) {
  if constexpr (std::is_same_v<decltype(call(obs)), bool>) {
    return call(obs);
  } else {
    call(obs);
    return true;
  }
}

#define LGM_DETAIL_HOOK(name)                                 \
  template <class Obs>                                        \
  bool call_##name(Obs& obs, const RunState& s) {             \
    if constexpr (requires { obs.name(s); }) {                \
      return notify(obs, [&](auto& o) { return o.name(s); }); \
    } else {                                                  \
      return true;                                            \
    }                                                         \
  }
LGM_DETAIL_HOOK(on_step)
LGM_DETAIL_HOOK(on_sync)
LGM_DETAIL_HOOK(on_batch_change)
LGM_DETAIL_HOOK(on_end)
#undef LGM_DETAIL_HOOK

template <class Obs>
constexpr bool has_on_step = requires(Obs& o, const RunState& s) {
  o.on_step(s);
};
template <class Obs>
constexpr bool has_on_sync = requires(Obs& o, const RunState& s) {
  o.on_sync(s);
};
template <class Obs>
constexpr bool has_on_batch_change = requires(Obs& o, const RunState& s) {
  o.on_batch_change(s);
};

/// True for outer optimizers that declare themselves plain averaging (the driver then copies the mean).
template <class Outer>
constexpr bool is_plain_average() {
  if constexpr (requires { Outer::is_plain_average; })
    return Outer::is_plain_average;
  else
    return false;
}

/// Rules may size a step before its batches are drawn (AdaptiveBatch with apply_at = this_step).
template <class Rule, class Ctx>
constexpr bool has_before_gradients = requires(Rule& r, const Ctx& ctx) {
  r.before_gradients(ctx);
};

template <class Rule>
Index sync_payload_elements(const Rule& rule, Index d) {
  if constexpr (requires { rule.sync_payload_elements(d); }) {
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
    if constexpr (requires { m_sampler.validate(); }) m_sampler.validate();
    if constexpr (requires { m_cost.validate(m_run.workers); }) m_cost.validate(m_run.workers);
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
  RunResult run_with(Comm& comm, const Obj& obj, ConstVectorRef x0, Observers&... observers);

 private:
  RunOptions m_run;
  Opt m_opt;
  Sync m_sync;
  Batch m_batch;
  Schedule m_schedule;
  Samp m_sampler;
  Outer m_outer;
  Cost m_cost;
};

template <class Opt, class Sync, class Batch, class Schedule, class Samp, class Outer, class Cost>
template <class Comm, class Obj, class... Observers>
RunResult LocalMethod<Opt, Sync, Batch, Schedule, Samp, Outer, Cost>::run_with(Comm& comm, const Obj& obj,
                                                                               ConstVectorRef x0,
                                                                               Observers&... observers) {
  static_assert(Communicator<Comm>,
                "Comm must model lgm::Communicator: size(), local_size(), first_worker(), mean(X, out), "
                "group_average(X, group), allreduce_sum(v), allreduce_max(v)");
  auto& store = detail::storage_of(comm);
  using Storage = std::remove_cvref_t<decltype(store)>;
  constexpr bool on_host = Storage::is_host;
  if constexpr (on_host) {
    static_assert(Objective<Obj>, "a host run needs an lgm::Objective (gradient(x, batch, g, ws) per worker)");
    static_assert(LocalOptimizer<Opt>, "a host run needs an lgm::LocalOptimizer (step(state, m, x, g, lr))");
  } else {
    static_assert(BatchedObjective<Obj> && std::is_same_v<typename Obj::Storage, Storage>,
                  "a device run needs an objective on the communicator's storage (lgm::gpu::DeviceLogistic, ...)");
    static_assert(BatchedLocalOptimizer<Opt> && std::is_same_v<typename Opt::Storage, Storage>,
                  "a device run needs an optimizer on the communicator's storage (lgm::gpu::SGD<>, ...)");
  }
  using Ctx = StepContext<Obj, Comm, Storage>;
  static_assert(BatchSizeRuleFor<Batch, Ctx>,
                "Batch must provide after_gradients(const StepContext&) and at_sync(const StepContext&)");
  detail::require(comm.size() == m_run.workers, "M", m_run.workers,
                  "the communicator's worker count " + detail::to_text(comm.size()));
  validate(obj, x0);

  const Index M = comm.size();
  const Index M_local = comm.local_size();
  const Index first = comm.first_worker();
  const Index d = obj.dim();
  const int threads = m_run.threads;

  // ---- everything the loop touches is allocated here (DESIGN §3: no allocation per step), in the storage of
  // the communicator: host memory, or device memory from the GPU backend's caching pool
  auto X = store.matrix(d, M_local);
  auto G = store.matrix(d, M_local);
  auto scratch = store.matrix(d, 2 * M_local + 2);
  auto x_sync = store.vector(d);
  auto mean = store.vector(d);
  store.upload(x0, x_sync);
  comm.broadcast(x_sync, X);
  // a device run keeps host copies of the shared point (observers, the outer step, the result) and of X
  // (downloaded only for observers that read it)
  Vector x_sync_host = x0;
  Matrix X_host(on_host ? 0 : d, on_host ? 0 : M_local);
  Vector mean_host(on_host ? 0 : d);
  auto shared_host = [&]() -> const Vector& {
    if constexpr (on_host)
      return x_sync;
    else
      return x_sync_host;
  };
  auto state = [&] {
    if constexpr (on_host)
      return m_opt.init(d, M_local);
    else
      return m_opt.init(d, M_local, store);
  }();
  m_outer.init(d);
  m_batch.reset(M_local, M);
  m_sampler.reset(M, obj.num_samples());
  // a batched (device) objective computes all local workers at once in one workspace
  const Index workspace_count = on_host ? M_local : 1;
  std::vector<typename Obj::Workspace> workspaces;
  workspaces.reserve(static_cast<size_t>(workspace_count));
  for (Index m = 0; m < workspace_count; ++m) workspaces.push_back(obj.make_workspace());
  std::vector<Index> all_indices(static_cast<size_t>(obj.num_samples()));
  std::iota(all_indices.begin(), all_indices.end(), Index{0});
  std::vector<std::vector<Index>> index_buffers(static_cast<size_t>(M_local));
  std::vector<IndexSpan> batches(static_cast<size_t>(M_local));
  std::vector<Index> sizes(static_cast<size_t>(M_local)), step_sizes(static_cast<size_t>(M_local));
  std::vector<double> losses(static_cast<size_t>(M_local)), round_compute(static_cast<size_t>(M_local));
  for (Index m = 0; m < M_local; ++m) sizes[static_cast<size_t>(m)] = m_batch.batch_size(m);
  // across processes, a global sync sends [x; averaged state fields] as one d·(1 + F) × M_local message
  const Index fields = m_opt.averaged_field_count();
  const bool pack = on_host && detail::packs_sync_message<Comm>() && fields > 0;
  Matrix packed(pack ? d * (1 + fields) : 0, pack ? M_local : 0);
  Vector packed_mean(pack ? d * (1 + fields) : 0);

  Metrics metrics;
  RunResult result;
  Index round = 0;
  SyncPlan plan;
  double lr = 0.0, batch_loss = 0.0;
  bool stop = false, last_sync_global = true;

  auto make_state = [&](bool at_sync) {
    if constexpr (on_host) {
      return RunState{metrics, round, plan.period, plan.scope, lr, batch_loss, X, x_sync, sizes, at_sync};
    } else {
      store.download_matrix(X, X_host);
      return RunState{metrics, round, plan.period, plan.scope, lr, batch_loss, X_host, x_sync_host, sizes, at_sync};
    }
  };
  // a device run downloads X for the observers only when one of them has the hook
  constexpr bool step_observed = on_host || (detail::has_on_step<Observers> || ...);
  constexpr bool sync_observed =
      on_host || (detail::has_on_sync<Observers> || ...) || (detail::has_on_batch_change<Observers> || ...);
  auto make_ctx = [&](Index step, bool sync_after) {
    return Ctx{obj, comm, X, G, batches, workspaces, scratch, all_indices, step, sync_after, plan.scope, threads};
  };
  auto notify_all = [&](auto hook, const RunState& s) {
    (void)hook;  // unused when there are no observers
    bool go = true;
    ((go = hook(observers, s) && go), ...);
    return go;
  };
  auto budget_left = [&] {
    return (m_run.max_steps == 0 || metrics.steps < m_run.max_steps) &&
           (m_run.max_samples == 0 || metrics.samples < m_run.max_samples);
  };

  while (!stop && budget_left()) {
    // ---- start of a round: the sync rule decides its period from η at the round's first step (A1)
    const Index remaining = m_run.max_steps > 0 ? m_run.max_steps - metrics.steps : -1;
    plan = m_sync.plan(RoundInfo{round, metrics.steps, m_schedule.at(metrics.steps, metrics.samples), remaining});
    detail::require_at_least("H (from the sync rule)", plan.period, Index{1});
    if (plan.scope == SyncScope::group)
      detail::require(plan.group_size >= 1 && M_local % plan.group_size == 0, "group_size", plan.group_size,
                      "a divisor of the workers per process " + detail::to_text(M_local));
    const Index H = remaining > 0 ? std::min(plan.period, remaining) : plan.period;
    std::fill(round_compute.begin(), round_compute.end(), 0.0);

    bool diverged = false, changed = false;
    for (Index h = 0; h < H; ++h) {
      lr = m_schedule.at(metrics.steps, metrics.samples);
      if constexpr (detail::has_before_gradients<Batch, Ctx>) {
        // sizes that depend only on x_k^m are set before the draw (A4 at every step); a sync forced by the
        // sample budget depends on these sizes, so the rule sees the planned one (h + 1 == H)
        m_batch.before_gradients(make_ctx(metrics.steps, h + 1 == H));
        for (Index m = 0; m < M_local; ++m) {
          const Index b = m_batch.batch_size(m);
          changed = changed || b != sizes[static_cast<size_t>(m)];
          sizes[static_cast<size_t>(m)] = b;
        }
      }
      double step_samples = 0.0;
      for (Index m = 0; m < M_local; ++m) step_samples += static_cast<double>(sizes[static_cast<size_t>(m)]);
      double totals[1] = {step_samples};
      comm.allreduce_sum(std::span<double>(totals, 1));
      const bool budget_hit =
          m_run.max_samples > 0 && metrics.samples + static_cast<Index>(totals[0]) >= m_run.max_samples;
      const bool sync_after = h + 1 == H || budget_hit;

      // ---- local gradients (reference §3.6: g^m at the pre-update point x^m)
#pragma omp parallel for num_threads(threads) schedule(static)
      for (Index m = 0; m < M_local; ++m) {
        const auto um = static_cast<size_t>(m);
        const Index b = sizes[um];
        step_sizes[um] = b;
        auto& buf = index_buffers[um];
        if (static_cast<Index>(buf.size()) < b) buf.resize(static_cast<size_t>(b));  // only when b grows
        std::span<Index> out(buf.data(), static_cast<size_t>(b));
        m_sampler.draw(first + m, metrics.steps, out);
        batches[um] = IndexSpan(buf.data(), static_cast<size_t>(b));
        if constexpr (on_host) losses[um] = obj.gradient(X.col(m), batches[um], G.col(m), workspaces[um]);
      }
      if constexpr (!on_host) obj.gradients(X, batches, G, losses, workspaces[0]);  // same indices, one call

      // ---- batch-size statistics on the local gradients, before any averaging (reference §3.6)
      m_batch.after_gradients(make_ctx(metrics.steps, sync_after));

      // ---- H = 1 as gradient all-reduce + one step (reference A9)
      if (plan.average_gradients) {
        comm.mean(G, mean);
        comm.broadcast(mean, G);
      }

      if constexpr (on_host) {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (Index m = 0; m < M_local; ++m) {
          m_opt.step(state, m, X.col(m), G.col(m), lr);
          round_compute[static_cast<size_t>(m)] +=
              m_cost.compute_seconds(first + m, step_sizes[static_cast<size_t>(m)]);
        }
      } else {
        m_opt.step_all(state, X, G, lr, store.stream());  // one fused launch for all replicas
        for (Index m = 0; m < M_local; ++m)
          round_compute[static_cast<size_t>(m)] +=
              m_cost.compute_seconds(first + m, step_sizes[static_cast<size_t>(m)]);
      }

      batch_loss = detail::worker_mean(comm, std::span<const double>(losses));
      metrics.samples += static_cast<Index>(totals[0]);
      ++metrics.steps;
      for (Index m = 0; m < M_local; ++m) {
        const Index b = m_batch.batch_size(m);  // changes here only with apply_at = next_step
        changed = changed || b != sizes[static_cast<size_t>(m)];
        sizes[static_cast<size_t>(m)] = b;
      }

      if (!std::isfinite(batch_loss)) {
        diverged = true;
        result.reason = StopReason::diverged;
        result.message = "diverged: the minibatch loss is " + detail::to_text(batch_loss) + " at step " +
                         detail::to_text(metrics.steps - 1) + " (round " + detail::to_text(round) + ")";
        break;
      }
      if (step_observed &&
          !notify_all([](auto& o, const RunState& s) { return detail::call_on_step(o, s); }, make_state(false))) {
        stop = true;
        result.reason = StopReason::observer;
        result.message = "stopped by an observer at step " + detail::to_text(metrics.steps - 1);
      }
      if (sync_after || stop) break;
    }
    if (diverged) break;

    // ---- synchronization (reference §2: average, optionally optimizer state; then the batch rule)
    Index payload = d;
    if (plan.average_gradients) {
      // parameters and states are already identical: the gradient all-reduce was the communication
    } else if (plan.scope == SyncScope::global && pack) {
      if constexpr (on_host) {  // (pack is false on a device)
        // one message: the column mean of the stacked [X; F_1; …; F_F] is the stack of the column means
        packed.topRows(d) = X;
        Index row = d;
        m_opt.for_each_averaged_field(state, [&](MatrixRef F) {
          packed.middleRows(row, d) = F;
          row += d;
        });
        comm.mean(packed, packed_mean);
        if constexpr (detail::is_plain_average<Outer>()) {
          x_sync = packed_mean.head(d);
        } else {
          m_outer.apply(x_sync, packed_mean.head(d));
        }
        comm.broadcast(x_sync, X);
        row = d;
        m_opt.for_each_averaged_field(state, [&](MatrixRef F) {
          comm.broadcast(packed_mean.segment(row, d), F);
          row += d;
        });
        payload += d * fields;
      }
    } else if (plan.scope == SyncScope::global) {
      comm.mean(X, mean);
      if constexpr (detail::is_plain_average<Outer>()) {
        store.copy(mean, x_sync);
      } else if constexpr (on_host) {
        m_outer.apply(x_sync, mean);
      } else {  // the outer step is d numbers per round: taken on the host copy
        store.download(mean, mean_host);
        m_outer.apply(x_sync_host, mean_host);
        store.upload(x_sync_host, x_sync);
      }
      comm.broadcast(x_sync, X);
      m_opt.for_each_averaged_field(state, [&](auto&& F) {
        comm.mean(F, mean);
        comm.broadcast(mean, F);
      });
      payload += d * m_opt.averaged_field_count();
    } else {
      comm.group_average(X, plan.group_size);
      m_opt.for_each_averaged_field(state, [&](auto&& F) { comm.group_average(F, plan.group_size); });
      payload += d * m_opt.averaged_field_count();
    }
    if (plan.average_gradients || plan.scope == SyncScope::global) store.copy(X.col(0), x_sync);
    if constexpr (!on_host) store.download(x_sync, x_sync_host);  // d numbers per round
    last_sync_global = plan.scope == SyncScope::global;
    m_batch.at_sync(make_ctx(metrics.steps - 1, true));
    payload += detail::sync_payload_elements(m_batch, d);

    const Index participants = plan.scope == SyncScope::global ? M : plan.group_size;
    const double bytes = m_cost.element_bytes() * static_cast<double>(payload);
    double slowest[1] = {*std::max_element(round_compute.begin(), round_compute.end())};
    comm.allreduce_max(std::span<double>(slowest, 1));
    const double comm_s = m_cost.allreduce_seconds(bytes, participants, plan.scope, plan.group_size);
    metrics.bytes += m_cost.allreduce_bytes_sent(bytes, participants);
    metrics.compute_time_s += slowest[0];
    metrics.comm_time_s += comm_s;
    metrics.sim_time_s = metrics.compute_time_s + metrics.comm_time_s;
    ++metrics.comm_rounds;
    if (plan.scope == SyncScope::global) ++metrics.global_rounds;

    for (Index m = 0; m < M_local; ++m) {
      const Index b = m_batch.batch_size(m);
      changed = changed || b != sizes[static_cast<size_t>(m)];
      sizes[static_cast<size_t>(m)] = b;
    }
    if (!shared_host().allFinite()) {
      result.reason = StopReason::diverged;
      result.message = "diverged: the averaged parameters are not finite after round " + detail::to_text(round) +
                       " (step " + detail::to_text(metrics.steps - 1) + ")";
      break;
    }
    if (!sync_observed) {
      ++round;
      continue;
    }
    const RunState s = make_state(true);
    if (changed) notify_all([](auto& o, const RunState& st) { return detail::call_on_batch_change(o, st); }, s);
    if (!notify_all([](auto& o, const RunState& st) { return detail::call_on_sync(o, st); }, s) && !stop) {
      stop = true;
      result.reason = StopReason::observer;
      result.message = "stopped by an observer after round " + detail::to_text(round);
    }
    ++round;
  }

  // ---- the output is a globally averaged model (reference §7.14): charge one more global sync if needed
  if (!last_sync_global && result.reason != StopReason::diverged) {
    comm.mean(X, mean);
    store.copy(mean, x_sync);
    comm.broadcast(x_sync, X);
    if constexpr (!on_host) store.download(x_sync, x_sync_host);
    const double bytes = m_cost.element_bytes() * static_cast<double>(d);
    metrics.bytes += m_cost.allreduce_bytes_sent(bytes, M);
    metrics.comm_time_s += m_cost.allreduce_seconds(bytes, M, SyncScope::global, 0);
    metrics.sim_time_s = metrics.compute_time_s + metrics.comm_time_s;
    ++metrics.comm_rounds;
    ++metrics.global_rounds;
  }
  if (result.reason == StopReason::budget) result.message = "budget reached";
  result.metrics = metrics;
  result.x = shared_host();
  result.last_batch_loss = batch_loss;
  notify_all([](auto& o, const RunState& s) { return detail::call_on_end(o, s); }, make_state(true));
  return result;
}

}  // namespace lgm
