// One run of the simulator for a concrete objective type: the driver with an observer that evaluates the
// averaged model, writes a metrics line per communication round and feeds the progress display.
// Instantiated once per objective in its own translation unit (CMake generates run_<objective>.cpp).
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "build.hpp"
#include "progress.hpp"
#include "records.hpp"
#include "report.hpp"

#if defined(LGM_HAVE_MPI) && LGM_HAVE_MPI
#include "lgm/comm/mpi.hpp"
#endif

namespace lgm {
class MpiCommunicator;  // lgm/comm/mpi.hpp, where the simulator is built with MPI
}

namespace lgm::sim {

/// Writes the run's checkpoint when one is due (runner.cpp, docs/simulator.md §Checkpoint and resume): `save`
/// receives the library's snapshot and the round observer's state.
struct CheckpointHook {
  Index every_steps = 0;       ///< checkpoint.every_steps (0: never)
  double every_seconds = 0.0;  ///< checkpoint.every_seconds (0: never)
  std::function<void(const RunSnapshot&, const std::string&)> save;
  Index last_steps = 0;
  std::chrono::steady_clock::time_point last_time = std::chrono::steady_clock::now();

  /// True (and the clocks restart) when a checkpoint is due at a sync after `steps` local steps.
  bool due(Index steps) {
    const auto now = std::chrono::steady_clock::now();
    const bool by_steps = every_steps > 0 && steps - last_steps >= every_steps;
    const bool by_time = every_seconds > 0.0 && std::chrono::duration<double>(now - last_time).count() >= every_seconds;
    if (!by_steps && !by_time) return false;
    last_steps = steps;
    last_time = now;
    return true;
  }
};

/// Where a resumed run continues: the library's snapshot and the round observer's state.
struct ResumePoint {
  RunSnapshot snapshot;
  std::string observer;
};

/// What a run writes to and listens to.
struct RunEnv {
  MetricsWriter* metrics = nullptr;                  ///< metrics.jsonl (shared by the runs of an experiment)
  Progress* progress = nullptr;                      ///< may be null
  const std::atomic<bool>* interrupt = nullptr;      ///< set by SIGINT, SIGTERM, SIGHUP: end the round and stop
  std::vector<RoundRecord>* records = nullptr;       ///< this run's records, for the plots
  std::function<void(const RoundRecord&)> on_round;  ///< called after each record is written (tests, tools)
  MpiCommunicator* mpi = nullptr;  ///< MPI engine: the run's communicator (this rank's workers); null in-process
  bool evaluate = true;            ///< evaluate F at the averaged point (MPI engine: rank 0 only)
  const std::atomic<int>* interrupt_signal = nullptr;  ///< which signal set `interrupt` (for the message)
  bool output_failed = false;            ///< set by run_variant when an output file could not be written (OutputError)
  CheckpointHook* checkpoint = nullptr;  ///< writes checkpoints at syncs; null: none
  const ResumePoint* resume = nullptr;   ///< continue from here; null: a fresh run
  std::filesystem::path model_file{};    ///< run.save_model: the final averaged model's .npy; empty: none
};

/// A run whose mean minibatch loss exceeds this factor times max(1, |F(x0)|) has diverged although its loss is
/// finite (docs/simulator.md): outer.lr = 1e30 gives losses of 1e212, which no useful run reaches.
inline constexpr double kDivergenceFactor = 1e6;

namespace detail {

/// MPI engine: element-wise max over ranks of a few reporting numbers (batch sizes, the SIGINT flag). Not
/// the run's traffic, so not counted in MpiCommunicator::traffic(). Identity in one process.
inline void max_over_ranks([[maybe_unused]] const RunEnv& env, [[maybe_unused]] std::span<double> v) {
#if defined(LGM_HAVE_MPI) && LGM_HAVE_MPI
  if (env.mpi && env.mpi->ranks() > 1)
    MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_MAX, env.mpi->mpi_comm());
#endif
}

/// As max_over_ranks, the sum (of integers here, so exact in any order).
inline void sum_over_ranks([[maybe_unused]] const RunEnv& env, [[maybe_unused]] std::span<double> v) {
#if defined(LGM_HAVE_MPI) && LGM_HAVE_MPI
  if (env.mpi && env.mpi->ranks() > 1)
    MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_SUM, env.mpi->mpi_comm());
#endif
}

}  // namespace detail

/// Loss and squared gradient norm of F at x over all samples. The samples are cut into a fixed number of
/// chunks whatever the thread count, and the chunk results are summed in chunk order, so the value is
/// bitwise the same for any number of threads (docs/design.md §Determinism).
template <class Obj>
class Evaluator {
 public:
  Evaluator(const Obj& obj, int threads) : m_obj(obj), m_threads(threads) {
    const Index N = obj.num_samples();
    const Index chunks = std::min<Index>(64, N);
    m_bounds.resize(static_cast<size_t>(chunks + 1));
    for (Index c = 0; c <= chunks; ++c) m_bounds[static_cast<size_t>(c)] = N * c / chunks;
    m_indices.resize(static_cast<size_t>(N));
    for (Index i = 0; i < N; ++i) m_indices[static_cast<size_t>(i)] = i;
    m_losses.resize(static_cast<size_t>(chunks));
    for (Index c = 0; c < chunks; ++c) m_workspaces.push_back(obj.make_workspace());
  }

  /// F(x), and ‖∇F(x)‖² when `with_gradient`.
  std::pair<double, double> operator()(ConstVectorRef x, bool with_gradient) {
    const Index chunks = static_cast<Index>(m_losses.size());
    if (with_gradient && m_grads.cols() != chunks) m_grads.resize(m_obj.dim(), chunks);
#pragma omp parallel for num_threads(m_threads) schedule(static)
    for (Index c = 0; c < chunks; ++c) {
      const auto uc = static_cast<size_t>(c);
      const IndexSpan part(m_indices.data() + m_bounds[uc], static_cast<size_t>(m_bounds[uc + 1] - m_bounds[uc]));
      m_losses[uc] = with_gradient ? m_obj.gradient(x, part, m_grads.col(c), m_workspaces[uc])
                                   : m_obj.loss(x, part, m_workspaces[uc]);
    }
    const double N = static_cast<double>(m_obj.num_samples());
    double loss = 0.0;
    for (Index c = 0; c < chunks; ++c) loss += chunk_weight(c) * m_losses[static_cast<size_t>(c)];
    loss /= N;
    double gsq = std::nan("");
    if (with_gradient) {
      Vector g = Vector::Zero(m_obj.dim());
      for (Index c = 0; c < chunks; ++c) g += chunk_weight(c) * m_grads.col(c);
      g /= N;
      gsq = g.squaredNorm();
    }
    return {loss, gsq};
  }

 private:
  double chunk_weight(Index c) const {
    return static_cast<double>(m_bounds[static_cast<size_t>(c) + 1] - m_bounds[static_cast<size_t>(c)]);
  }

  const Obj& m_obj;
  int m_threads;
  std::vector<Index> m_bounds, m_indices;
  std::vector<double> m_losses;
  std::vector<typename Obj::Workspace> m_workspaces;
  Matrix m_grads;
};

/// Fraction of a test set classified correctly (multiclass: argmax; binary: sign of aᵀx, 0 counts as +1).
template <class Obj>
std::optional<double> test_accuracy(const Obj& test, ConstVectorRef x) {
  if constexpr (requires { test.accuracy(x, test.features(), test.labels()); }) {
    return test.accuracy(x, test.features(), test.labels());
  } else if constexpr (requires {
                         test.features();
                         test.labels()[0];
                       }) {
    const Vector z = test.features().transpose() * x;
    Index correct = 0;
    for (Index i = 0; i < z.size(); ++i) correct += ((z[i] >= 0.0) == (test.labels()[i] > 0.0)) ? 1 : 0;
    return static_cast<double>(correct) / static_cast<double>(z.size());
  } else {
    return std::nullopt;
  }
}

/// What the observer of a host objective evaluates at the shared point: F and ‖∇F‖² over the training set,
/// F − F* where F* is known, and the test set's loss and accuracy.
template <class Obj>
class HostEvaluation {
 public:
  HostEvaluation(const Obj& train, const Obj* test, int threads)
      : m_test(test),
        m_eval(std::make_unique<Evaluator<Obj>>(train, threads)),
        m_test_eval(test ? std::make_unique<Evaluator<Obj>>(*test, threads) : nullptr) {
    if constexpr (HasKnownOptimum<Obj>) {
      if constexpr (requires { train.has_optimum(); }) {
        if (train.has_optimum()) m_fstar = train.optimal_value();
      } else {
        m_fstar = train.optimal_value();
      }
    }
  }

  /// F(x): the scale of the divergence bound.
  double loss(ConstVectorRef x) { return (*m_eval)(x, false).first; }

  void evaluate(RoundRecord& r, ConstVectorRef x) {
    const auto [loss, gsq] = (*m_eval)(x, true);
    r.loss = loss;
    r.grad_norm_sq = gsq;
    if (m_fstar) r.subopt = loss - *m_fstar;
    if (m_test) {
      r.test_loss = (*m_test_eval)(x, false).first;
      r.test_accuracy = test_accuracy(*m_test, x);
    }
  }

 private:
  const Obj* m_test;
  std::unique_ptr<Evaluator<Obj>> m_eval, m_test_eval;
  std::optional<double> m_fstar;
};

/// The observer of one run: a RoundRecord per sync, evaluated at `eval_points` rounds evenly spaced in the
/// budget and at the last round. A record is held back one round, so that the last one can be evaluated at
/// the end whatever stopped the run.
template <class Evaluation>
class RoundObserver {
 public:
  RoundObserver(const RunConfig& cfg, Evaluation evaluation, ConstVectorRef x0, const MultiNetworkCost& cost,
                RunEnv& env)
      : m_cfg(cfg),
        m_cost(&cost),
        m_env(env),
        m_evaluation(std::move(evaluation)),
        m_start(std::chrono::steady_clock::now()) {
    // F(x0) on every rank (the same data everywhere), so every rank stops at the same sync
    m_divergence_bound = kDivergenceFactor * std::max(1.0, std::abs(m_evaluation.loss(x0)));
    m_every_round = cfg.flag("run.eval_every_round");
    const Index points = cfg.integer("run.eval_points");
    m_by_samples = cfg.integer("run.max_samples") > 0;
    m_budget = m_by_samples ? cfg.integer("run.max_samples") : cfg.integer("run.max_steps");
    m_interval = std::max<double>(1.0, static_cast<double>(m_budget) / static_cast<double>(points));
  }

  bool on_sync(const RunState& s) {
    m_seen = s.metrics;
    m_seen_round = s.round;
    m_next = make_record(s);  // kept across the flush, so that a failure there does not lose this round
    flush(false, s.shared_point);
    m_pending = std::move(m_next);
    m_next.reset();
    const double progress = static_cast<double>(m_by_samples ? s.metrics.samples : s.metrics.steps);
    if (m_every_round || progress >= m_next_eval) {
      evaluate(*m_pending, s.shared_point);
      while (m_next_eval <= progress) m_next_eval += m_interval;
    }
    if (m_env.progress)
      m_env.progress->update(s.metrics.samples, s.metrics.steps, s.round, m_last_loss ? *m_last_loss : s.batch_loss);
    // under MPI every rank must stop at the same sync: stop when any rank saw SIGINT
    double interrupted[1] = {m_env.interrupt && m_env.interrupt->load() ? 1.0 : 0.0};
    detail::max_over_ranks(m_env, interrupted);
    // a finite loss far above the start is a divergence too (the batch loss is the same on every rank)
    if (std::isfinite(s.batch_loss) && std::abs(s.batch_loss) > m_divergence_bound) {
      m_divergence = "diverged: the mean minibatch loss is " + lgm::detail::to_text(s.batch_loss) + " after round " +
                     lgm::detail::to_text(s.round) + " (step " + lgm::detail::to_text(s.metrics.steps - 1) +
                     "), more than " + lgm::detail::to_text(kDivergenceFactor) +
                     " × max(1, |F(x0)|) = " + lgm::detail::to_text(m_divergence_bound);
      return false;
    }
    if (interrupted[0] == 0.0 && m_env.checkpoint && m_env.checkpoint->due(s.metrics.steps))
      m_env.checkpoint->save(s.snapshot(), state_json());
    return interrupted[0] == 0.0;
  }

  /// The observer's state at a checkpoint (JSON): the record held back, the last one written, the next
  /// evaluation point, the counters seen and the wall time so far.
  std::string state_json() const {
    using J = nlohmann::ordered_json;
    J j = J::object();
    j["pending"] = m_pending ? J(to_json(*m_pending)) : J(nullptr);
    j["last"] = m_last ? J(to_json(*m_last)) : J(nullptr);
    j["next_eval"] = m_next_eval;
    j["last_loss"] = m_last_loss ? J(*m_last_loss) : J(nullptr);
    j["seen"] = J::array({m_seen.steps, m_seen.samples, m_seen.comm_rounds, m_seen.global_rounds});
    j["seen_times"] = J::array({m_seen.bytes, m_seen.compute_time_s, m_seen.comm_time_s, m_seen.sim_time_s});
    j["seen_round"] = m_seen_round;
    j["wall_s"] = wall_seconds();
    return j.dump();
  }

  /// Continues from state_json()'s text (a resumed run).
  void restore(const std::string& text) {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (!j.at("pending").is_null()) m_pending = round_record_from_json(j.at("pending"));
    if (!j.at("last").is_null()) m_last = round_record_from_json(j.at("last"));
    m_next_eval = j.at("next_eval").get<double>();
    if (!j.at("last_loss").is_null()) m_last_loss = j.at("last_loss").get<double>();
    const auto& seen = j.at("seen");
    const auto& times = j.at("seen_times");
    m_seen = Metrics{seen.at(0).get<Index>(),   seen.at(1).get<Index>(),   seen.at(2).get<Index>(),
                     seen.at(3).get<Index>(),   times.at(0).get<double>(), times.at(1).get<double>(),
                     times.at(2).get<double>(), times.at(3).get<double>()};
    m_seen_round = j.at("seen_round").get<Index>();
    // the next checkpoint is due where the uninterrupted run's is, not at the first sync after resuming
    if (m_env.checkpoint) m_env.checkpoint->last_steps = m_seen.steps;
    m_start -= std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(j.at("wall_s").get<double>()));
  }

  /// After a run ended with an exception: writes the records held back, unevaluated (not after an output
  /// failure, which would fail again).
  void flush_after_failure(bool output_failed) {
    if (output_failed) {
      m_pending.reset();
      m_next.reset();
      return;
    }
    for (std::optional<RoundRecord>* r : {&m_pending, &m_next}) {
      if (!*r) continue;
      if (m_env.metrics) m_env.metrics->write(**r);
      if (m_env.records) m_env.records->push_back(**r);
      m_last = std::move(*r);
      r->reset();
    }
  }

  /// The counters at the last sync seen (the real ones when the run ended with an exception mid-round).
  const Metrics& seen_metrics() const noexcept { return m_seen; }
  Index seen_round() const noexcept { return m_seen_round; }
  /// Why the run diverged with a finite loss; empty when it did not.
  const std::string& divergence() const noexcept { return m_divergence; }

  void on_end(const RunState& s) {
    m_end_metrics = s.metrics;
    if (m_pending && m_pending->comm_rounds != s.metrics.comm_rounds) {
      // a final global average was forced after the last round (hierarchical rules): one more record
      flush(false, s.shared_point);
      m_pending = make_record(s);
      m_pending->round += 1;
    }
    flush(true, s.shared_point);
  }

  /// The last record written, if any.
  const std::optional<RoundRecord>& last() const noexcept { return m_last; }
  double wall_seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
  }
  double sim_time(std::size_t network) const {
    return m_end_metrics.compute_time_s + m_cost->other_comm_seconds(network);
  }

 private:
  RoundRecord make_record(const RunState& s) const {
    RoundRecord r;
    r.run = m_cfg.name();
    r.round = s.round;
    r.step = s.metrics.steps;
    r.samples = s.metrics.samples;
    r.comm_rounds = s.metrics.comm_rounds;
    r.bytes = s.metrics.bytes;
    r.sim_time_s = s.metrics.sim_time_s;
    r.sim_time_10g_s = s.metrics.compute_time_s + m_cost->other_comm_seconds(0);
    r.sim_time_100g_s = s.metrics.compute_time_s + m_cost->other_comm_seconds(1);
    r.wall_time_s = wall_seconds();
    r.lr = s.lr;
    r.H = s.period;
    r.batch_loss = s.batch_loss;
    if (!s.batch_sizes.empty()) {
      r.batch_min = r.batch_max = s.batch_sizes[0];
      double sum = 0.0;
      for (Index b : s.batch_sizes) {
        r.batch_min = std::min(r.batch_min, b);
        r.batch_max = std::max(r.batch_max, b);
        sum += static_cast<double>(b);
      }
      // under MPI this rank sees only its workers' sizes: reduce them (integers: exact, as in one process)
      double extremes[2] = {static_cast<double>(r.batch_max), -static_cast<double>(r.batch_min)};
      double totals[2] = {sum, static_cast<double>(s.batch_sizes.size())};
      detail::max_over_ranks(m_env, extremes);
      detail::sum_over_ranks(m_env, totals);
      r.batch_max = static_cast<Index>(extremes[0]);
      r.batch_min = static_cast<Index>(-extremes[1]);
      r.batch_mean = totals[0] / totals[1];
    }
    return r;
  }

  void evaluate(RoundRecord& r, ConstVectorRef x) {
    if (!m_env.evaluate || !x.allFinite()) return;
    m_evaluation.evaluate(r, x);
    m_last_loss = r.loss;
  }

  /// Writes the held-back record; at the end, evaluates it first if it was not.
  void flush(bool final, ConstVectorRef x) {
    if (!m_pending) return;
    if (final && !m_pending->loss) evaluate(*m_pending, x);
    if (m_env.metrics) m_env.metrics->write(*m_pending);  // on failure the record stays pending, unwritten
    m_last = std::move(m_pending);
    m_pending.reset();
    if (m_env.records) m_env.records->push_back(*m_last);
    if (m_env.on_round) m_env.on_round(*m_last);
  }

  const RunConfig& m_cfg;
  const MultiNetworkCost* m_cost;
  RunEnv& m_env;
  Evaluation m_evaluation;
  std::chrono::steady_clock::time_point m_start;
  bool m_every_round = false, m_by_samples = true;
  Index m_budget = 0;
  double m_interval = 1.0, m_next_eval = 0.0;
  std::optional<double> m_last_loss;
  std::optional<RoundRecord> m_pending, m_next, m_last;
  Metrics m_end_metrics;
  Metrics m_seen;
  Index m_seen_round = -1;
  double m_divergence_bound = 0.0;
  std::string m_divergence;
};

namespace detail {

/// The message of a run that ended with an exception.
inline std::string failure_message(const std::exception_ptr& error, Index round, Index step) {
  const std::string where =
      round < 0 ? std::string(" before its first round ended")
                : " after round " + lgm::detail::to_text(round) + " (step " + lgm::detail::to_text(step) + ")";
  try {
    std::rethrow_exception(error);
  } catch (const std::bad_alloc&) {
    return "failed: out of memory (std::bad_alloc)" + where +
           "; lower the sizes that grow with the run (batch.b_max, run.workers, problem.N, problem.d)";
  } catch (const std::exception& e) {
    return "failed" + where + ": " + e.what();
  } catch (...) {
    return "failed" + where + ": unknown exception";
  }
}

}  // namespace detail

/// The summary of a run that `run()` performs under `observer` (host and network runs alike); `cost` is the
/// method's cost model.
template <class Observer, class Run>
VariantSummary observe_run(const RunConfig& cfg, const MultiNetworkCost& cost, RunEnv& env, Observer& observer,
                           Run&& run) {
  RunResult result;
  std::exception_ptr error;
  try {
    result = run();
  } catch (...) {
#if defined(LGM_HAVE_MPI) && LGM_HAVE_MPI
    if (env.mpi && env.mpi->ranks() > 1) throw;
#endif
    error = std::current_exception();
  }
  VariantSummary s;
  s.name = cfg.name();
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const OutputError&) {
      env.output_failed = true;
    } catch (...) {
    }
    s.status = RunStatus::failed;
    const Metrics& seen = observer.seen_metrics();
    s.message = detail::failure_message(error, observer.seen_round(), seen.steps - 1);
    try {
      observer.flush_after_failure(env.output_failed);
    } catch (const OutputError& e) {
      env.output_failed = true;
      s.message += "; " + std::string(e.what());
    }
    result.metrics = seen;
  } else {
    s.message = result.message;
    s.status = result.reason == StopReason::diverged   ? RunStatus::diverged
               : result.reason == StopReason::observer ? RunStatus::interrupted
                                                       : RunStatus::completed;
    if (!observer.divergence().empty()) {
      s.status = RunStatus::diverged;
      s.message = observer.divergence();
    }
  }
  if (s.status == RunStatus::interrupted) {
    const int signal = env.interrupt_signal ? env.interrupt_signal->load() : 0;
    s.message = "interrupted (" + (signal > 0 ? signal_name(signal) : std::string("interrupt")) + ") after round " +
                lgm::detail::to_text(observer.last() ? observer.last()->round : 0);
  }
  s.steps = result.metrics.steps;
  s.comm_rounds = result.metrics.comm_rounds;
  s.samples = result.metrics.samples;
  s.bytes = result.metrics.bytes;
  s.sim_time_s = result.metrics.sim_time_s;
  s.sim_time_10g_s = result.metrics.compute_time_s + cost.other_comm_seconds(0);
  s.sim_time_100g_s = result.metrics.compute_time_s + cost.other_comm_seconds(1);
  s.wall_time_s = observer.wall_seconds();
#if defined(LGM_HAVE_MPI) && LGM_HAVE_MPI
  if (env.mpi) {
    const MpiTraffic& t = env.mpi->traffic();
    s.mpi = MpiSummary{env.mpi->ranks(), to_string(env.mpi->reduction()), t.collectives, t.payload_bytes, t.wire_bytes};
  }
#endif
  if (!env.model_file.empty() && result.x.size() > 0 &&
      (s.status == RunStatus::completed || s.status == RunStatus::interrupted)) {
    try {
      write_file_atomically(env.model_file, npy_vector(std::span<const double>(result.x.data(), result.x.size())),
                            "model");
    } catch (const OutputError& e) {
      env.output_failed = true;
      s.status = RunStatus::failed;
      s.message = e.what();
    }
  }
  if (const auto& last = observer.last()) {
    s.batch_min = last->batch_min;
    s.batch_mean = last->batch_mean;
    s.batch_max = last->batch_max;
    if (s.status != RunStatus::diverged && s.status != RunStatus::failed) {
      s.loss = last->loss;
      s.grad_norm_sq = last->grad_norm_sq;
      s.subopt = last->subopt;
      s.test_loss = last->test_loss;
      s.test_accuracy = last->test_accuracy;
    }
  }
  return s;
}

/// Runs one configured variant on objective `train` and returns its summary. A run that ends with an exception
/// (an allocation failure, a write failure) is `failed`, with the counters of its last round; under the MPI
/// engine with several ranks the exception is rethrown (runner.cpp ends every rank).
template <class Obj>
VariantSummary run_variant(const Obj& train, const Obj* test, const Problem& problem, const RunConfig& cfg,
                           ConfiguredMethod& method, RunEnv& env) {
  RoundObserver<HostEvaluation<Obj>> observer(cfg, HostEvaluation<Obj>(train, test, method.options().threads),
                                              problem.x0, method.cost_model(), env);
  return observe_run(cfg, method.cost_model(), env, observer, [&] {
    if (env.resume) {  // a resumed run (in one process: runner.cpp refuses checkpoints under MPI)
      observer.restore(env.resume->observer);
      return method.resume(train, problem.x0, env.resume->snapshot, observer);
    }
#if defined(LGM_HAVE_MPI) && LGM_HAVE_MPI
    return env.mpi ? method.run_with(*env.mpi, train, problem.x0, observer) : method.run(train, problem.x0, observer);
#else
    return method.run(train, problem.x0, observer);
#endif
  });
}

/// One declaration per objective; each is defined in its own generated translation unit.
#define LGM_SIM_DECLARE_RUN(Obj)                                                                            \
  extern template VariantSummary run_variant<Obj>(const Obj&, const Obj*, const Problem&, const RunConfig&, \
                                                  ConfiguredMethod&, RunEnv&);
LGM_SIM_DECLARE_RUN(Quadratic)
LGM_SIM_DECLARE_RUN(LeastSquares)
LGM_SIM_DECLARE_RUN(Logistic)
LGM_SIM_DECLARE_RUN(NonconvexLogistic)
LGM_SIM_DECLARE_RUN(Softmax)
LGM_SIM_DECLARE_RUN(Mlp)
#undef LGM_SIM_DECLARE_RUN

}  // namespace lgm::sim
