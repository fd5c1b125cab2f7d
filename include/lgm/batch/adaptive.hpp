// Adaptive local batch sizes (Lau et al. 2024; docs/batch_rules.md §The adaptive tests, algorithm LABS of
// docs/batch_rules.md §Pseudocode): after each step's local gradients a test (norm, inner-product or augmented
// inner-product) estimates how large the batch must be for the gradient noise to be small relative to the
// gradient, and the batch grows to that size (never shrinks, docs/decisions.md §B6), per worker (local scope) or
// pooled over all workers (global scope).
#pragma once

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "lgm/batch/statistics.hpp"
#include "lgm/batch/tests.hpp"
#include "lgm/core/error.hpp"
#include "lgm/core/moments.hpp"
#include "lgm/core/parallel.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// Who a test speaks for (docs/batch_rules.md §Local and global scope): each worker on its own batch, or all
/// workers pooled.
enum class TestScope { local, global };
/// Sample moments of the current batch (docs/batch_rules.md §Approximate tests) or population moments at x
/// (docs/batch_rules.md §Exact tests).
enum class VarianceMode { approximate, exact };
/// How the variance is estimated (docs/batch_rules.md §Estimators): per-sample, micro-batch means, cross-worker.
enum class Estimator { per_sample, micro_batch_means, cross_worker };
/// When a test runs (docs/batch_rules.md §When the test runs; docs/decisions.md §B1).
enum class TestWhen { every_step, sync_steps };
/// How the workers' pending sizes are made equal at a global sync (docs/decisions.md §B2).
enum class Harmonize { none, max, mean };
/// When a new size takes effect (docs/decisions.md §B3). this_step (exact variance only): the test runs at x_k^m
/// before step k's batch is drawn and sets that step's size, so docs/theory.md §A4 holds at every step.
enum class ApplyAt { next_round, next_step, this_step };

constexpr std::string_view to_string(TestScope v) noexcept { return v == TestScope::local ? "local" : "global"; }
constexpr std::string_view to_string(VarianceMode v) noexcept {
  return v == VarianceMode::approximate ? "approximate" : "exact";
}
constexpr std::string_view to_string(Estimator v) noexcept {
  switch (v) {
    case Estimator::per_sample:
      return "per_sample";
    case Estimator::micro_batch_means:
      return "micro_batch_means";
    case Estimator::cross_worker:
      return "cross_worker";
  }
  return "?";
}
constexpr std::string_view to_string(TestWhen v) noexcept {
  return v == TestWhen::every_step ? "every_step" : "sync_steps";
}
constexpr std::string_view to_string(Harmonize v) noexcept {
  switch (v) {
    case Harmonize::none:
      return "none";
    case Harmonize::max:
      return "max";
    case Harmonize::mean:
      return "mean";
  }
  return "?";
}
constexpr std::string_view to_string(ApplyAt v) noexcept {
  switch (v) {
    case ApplyAt::next_round:
      return "next_round";
    case ApplyAt::next_step:
      return "next_step";
    case ApplyAt::this_step:
      return "this_step";
  }
  return "?";
}

/// Options of an adaptive batch-size rule; the defaults are the choices of docs/decisions.md §B1 … §B15.
struct AdaptiveBatchOptions {
  Index b0 = 0;                        ///< initial local batch size (0: b_min)
  Index b_min = 2;                     ///< smallest local batch; ≥ 2 for a sample variance (docs/decisions.md §B13)
  Index b_max = Index{1} << 20;        ///< cap on the local batch (docs/decisions.md §B7)
  TestScope scope = TestScope::local;  ///< per worker, or pooled at global syncs
  VarianceMode variance = VarianceMode::approximate;
  Estimator estimator = Estimator::per_sample;
  Index micro_batches = 4;  ///< parts for Estimator::micro_batch_means, in [2, b_min]
  TestWhen when = TestWhen::every_step;
  Index test_interval = 1;  ///< every n-th step (every_step) or n-th sync (sync_steps)
  Harmonize harmonize = Harmonize::max;
  ApplyAt apply_at = ApplyAt::next_round;
  double tiny_grad_norm_sq = 1e-12;   ///< skip the update when ‖g‖² is below this (docs/decisions.md §B13)
  bool eta_is_global_target = false;  ///< local scope: √M·η (and θ, ν), docs/decisions.md §B11
};

/// The adaptive batch-size rule with test `Test` (NormTest, InnerProductTest, AugmentedInnerProductTest).
///
/// At step k (after the local gradients g^m at the pre-update points x^m), when the step is scheduled:
///  * local scope: every worker m below the cap computes its statistics (per-sample moments along g^m,
///    micro-batch means, or population moments at x^m) and pending_m ← next_batch_size(r_m, max(pending_m,
///    b_m), b_max) with r the test's ratio (÷ M when eta_is_global_target);
///  * global scope (only at steps that end with a global sync): pooled statistics over all M workers; the
///    same ratio for every worker (the required global batch ÷ M, or directly the local batch for exact);
///  * cross_worker (norm test only; only at steps that end with a global sync): σ̂² from the M local
///    gradients (docs/batch_rules.md §cross_worker), r = σ̂²/(M η² ‖ḡ‖²) for every worker.
/// At a global sync the pending sizes are harmonized (none | max | mean); at every sync b_m ← pending_m.
/// With apply_at = next_step, b_m ← pending_m also right after each step's test.
/// With apply_at = this_step (exact variance only) the scheduled test runs in before_gradients instead, at the
/// points x_k^m before step k's batches are drawn, and b_m ← pending_m at once: the driver then draws step k
/// with b_k^m ≥ ⌈σ²(x_k^m)/(η²‖∇F(x_k^m)‖²)⌉ (norm test; capped at b_max), which is docs/theory.md §A4.
template <class Test>
class AdaptiveBatch {
 public:
  using test_type = Test;

  AdaptiveBatch() = default;
  explicit AdaptiveBatch(AdaptiveBatchOptions options, Test test = {}) : m_options(options), m_test(test) {}

  const AdaptiveBatchOptions& options() const noexcept { return m_options; }
  const Test& test() const noexcept { return m_test; }

  /// Sizes, pending sizes, test counters and the partial sums kept between syncs; the per-step scratch is not
  /// saved (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar& ar) {
    ar.check("batch.workers", m_workers);
    ar("batch.b", m_b);
    ar("batch.pending", m_pending);
    ar("batch.tests", m_tests);
    ar("batch.skipped", m_skipped);
    ar("batch.ratio", m_ratio);
    ar("batch.moments", m_moments);
    ar("batch.worker_stats", m_worker_stats);
    ar("batch.syncs", m_syncs);
    ar("batch.payload_since_sync", m_payload_since_sync);
    ar("batch.last_sync_payload", m_last_sync_payload);
  }

  /// Throws ConfigError naming the first parameter out of range.
  void validate() const {
    const AdaptiveBatchOptions& o = m_options;
    detail::require_at_least("b_min", o.b_min, Index{2});
    constexpr Index exact_limit = Index{1} << 53;  // compared with double ratios (docs/decisions.md §B7)
    detail::require(o.b_max >= o.b_min && o.b_max <= exact_limit, "b_max", o.b_max,
                    "an integer in [b_min = " + detail::to_text(o.b_min) + ", 2^53]");
    detail::require(o.b0 == 0 || (o.b0 >= o.b_min && o.b0 <= o.b_max), "b0", o.b0,
                    "0 (start at b_min) or an integer in [b_min, b_max] = [" + detail::to_text(o.b_min) + ", " +
                        detail::to_text(o.b_max) + "]");
    m_test.validate();
    detail::require_at_least("test_interval", o.test_interval, Index{1});
    detail::require_nonnegative("tiny_grad_norm_sq", o.tiny_grad_norm_sq);
    if (o.estimator == Estimator::micro_batch_means)
      detail::require(o.micro_batches >= 2 && o.micro_batches <= o.b_min, "micro_batches", o.micro_batches,
                      "an integer in [2, b_min = " + detail::to_text(o.b_min) + "] (every micro-batch needs a sample)");
    if (o.estimator == Estimator::cross_worker)
      detail::require(Test::variance_only, "estimator", to_string(o.estimator),
                      std::string("per_sample or micro_batch_means for the ") + std::string(Test::name) +
                          " test (cross_worker estimates only σ², so it drives only the norm test)");
    if (o.estimator == Estimator::micro_batch_means)
      detail::require(o.scope == TestScope::local, "estimator", to_string(o.estimator),
                      "per_sample or cross_worker when scope = global");
    if (o.variance == VarianceMode::exact)
      detail::require(o.estimator == Estimator::per_sample, "estimator", to_string(o.estimator),
                      "per_sample when variance = exact (the exact test uses population moments)");
    // only population moments depend on x_k^m alone; the sample ones need the batch that is to be sized
    if (o.apply_at == ApplyAt::this_step)
      detail::require(o.variance == VarianceMode::exact, "apply_at", to_string(o.apply_at),
                      "next_round or next_step when variance = approximate (this_step needs variance = exact)");
  }

  /// `local_workers` of the run's `workers` live in this process. Allocates the per-worker state.
  void reset(Index local_workers, Index workers) {
    detail::require(local_workers >= 1 && workers >= local_workers, "M", workers,
                    "an integer >= the workers of this process (" + detail::to_text(local_workers) + ")");
    if (m_options.estimator == Estimator::cross_worker)
      detail::require_at_least("M (with estimator = cross_worker)", workers, Index{2});
    const auto n = static_cast<size_t>(local_workers);
    m_workers = workers;
    m_b.assign(n, initial_batch_size());
    m_pending.assign(n, initial_batch_size());
    m_ratio.assign(n, detail::kNaN);
    m_tests.assign(n, 0);
    m_skipped.assign(n, 0);
    m_moments.assign(n, SampleMoments{});
    m_worker_stats.assign(n, BatchStatistics{});
    m_reduce.resize(0);
    m_syncs = 0;
    m_payload_since_sync = 0;
    m_last_sync_payload = 0;
  }

  Index initial_batch_size() const noexcept { return m_options.b0 > 0 ? m_options.b0 : m_options.b_min; }
  /// Local batch size of worker m's next step.
  Index batch_size(Index m) const noexcept { return m_b.empty() ? initial_batch_size() : m_b[static_cast<size_t>(m)]; }
  /// The size worker m will use from the next sync (apply_at = next_round) or step (next_step) on; with
  /// this_step, the size of the step just sized by before_gradients (equal to batch_size(m)).
  Index pending_batch_size(Index m) const noexcept {
    return m_pending.empty() ? initial_batch_size() : m_pending[static_cast<size_t>(m)];
  }
  Index max_batch_size() const noexcept { return m_options.b_max; }
  /// Ratio r of worker m's most recent test (the local batch it asks for); NaN if none ran, or if the last
  /// one was skipped for a tiny gradient. May be ±inf or NaN from degenerate statistics (then b was kept).
  double last_ratio(Index m) const noexcept { return m_ratio.empty() ? detail::kNaN : m_ratio[static_cast<size_t>(m)]; }
  /// Tests that decided worker m's size (tests skipped at the cap are not counted).
  Index tests_run(Index m) const noexcept { return m_tests.empty() ? 0 : m_tests[static_cast<size_t>(m)]; }
  /// Of those, the ones whose update was skipped (‖g‖² < tiny_grad_norm_sq or a non-finite ratio).
  Index tests_skipped(Index m) const noexcept { return m_skipped.empty() ? 0 : m_skipped[static_cast<size_t>(m)]; }
  /// Tests summed over this process's workers.
  Index tests_run() const noexcept {
    Index s = 0;
    for (Index t : m_tests) s += t;
    return s;
  }
  /// Numbers this rule added to the last sync's all-reduce: the pooled statistics of the test at the step
  /// that sync ended (global: d + 3; cross_worker: d + 2) plus 1 for harmonization. Exact, not an estimate:
  /// it counts what was actually reduced (0 for local tests without harmonization).
  Index sync_payload_elements(Index /*d*/) const noexcept { return m_last_sync_payload; }

  /// Before the batches of step ctx.step are drawn (ctx.X: the points x_k^m; ctx.G and ctx.batches: the
  /// previous step's, not read). Only with apply_at = this_step: the scheduled exact test at x_k^m sizes this
  /// step. The driver re-reads batch_size(m) afterwards.
  template <class Ctx>
  void before_gradients(const Ctx& ctx) {
    if constexpr (!Ctx::storage_type::is_host) {
      require_device_options<Ctx>();  // before the first draw: a device run rejects what it cannot compute
      return;
    } else {
      if (m_b.empty() || m_options.apply_at != ApplyAt::this_step) return;
      assert(m_options.variance == VarianceMode::exact && ctx.scratch.cols() >= 2 * local_count() + 2);
      if (scheduled(ctx.step, ctx.sync_after)) {
        if (m_options.scope == TestScope::global) {
          if (ctx.sync_after && ctx.scope == SyncScope::global) global_test(ctx);  // reads only X (exact branch)
        } else {
          local_test(ctx);  // exact statistics read only X
        }
      }
      std::copy(m_pending.begin(), m_pending.end(), m_b.begin());
    }
  }

  /// After the local gradients of step ctx.step, before the optimizer step (docs/batch_rules.md §Pseudocode).
  /// Nothing to do with apply_at = this_step (that test ran in before_gradients).
  template <class Ctx>
  void after_gradients(const Ctx& ctx) {
    if (m_b.empty() || m_options.apply_at == ApplyAt::this_step) return;
    assert(ctx.G.cols() == local_count() && ctx.scratch.cols() >= 2 * local_count() + 2);
    if (scheduled(ctx.step, ctx.sync_after)) {
      const bool global_sync = ctx.sync_after && ctx.scope == SyncScope::global;
      if (m_options.estimator == Estimator::cross_worker) {
        // computed here, not in at_sync: at a sync the driver may already have replaced G by its mean (A9)
        if (global_sync) {
          if constexpr (Ctx::storage_type::is_host)
            cross_worker_test(ctx);
          else
            device_cross_worker_test(ctx);
        }
      } else if (m_options.scope == TestScope::global) {
        if constexpr (Ctx::storage_type::is_host)
          if (global_sync) global_test(ctx);
      } else if constexpr (Ctx::storage_type::is_host) {
        local_test(ctx);
      } else {
        device_local_test(ctx);
      }
    }
    if (m_options.apply_at == ApplyAt::next_step) std::copy(m_pending.begin(), m_pending.end(), m_b.begin());
  }

  /// After the parameters are averaged: harmonize (global syncs only) and apply the pending sizes.
  template <class Ctx>
  void at_sync(const Ctx& ctx) {
    if (m_b.empty()) return;
    if (ctx.scope == SyncScope::global && m_options.harmonize != Harmonize::none && m_workers > 1) {
      double v[1] = {0.0};
      if (m_options.harmonize == Harmonize::max) {
        for (Index p : m_pending) v[0] = std::max(v[0], static_cast<double>(p));
        ctx.comm.allreduce_max(std::span<double>(v, 1));
      } else {
        for (Index p : m_pending) v[0] += static_cast<double>(p);
        ctx.comm.allreduce_sum(std::span<double>(v, 1));
        v[0] = std::ceil(v[0] / static_cast<double>(m_workers));  // ceil of the mean: docs/batch_rules.md §Pseudocode
      }
      const Index common = std::min(m_options.b_max, static_cast<Index>(v[0]));
      std::fill(m_pending.begin(), m_pending.end(), common);
      m_payload_since_sync += 1;
    }
    std::copy(m_pending.begin(), m_pending.end(), m_b.begin());
    ++m_syncs;
    m_last_sync_payload = m_payload_since_sync;
    m_payload_since_sync = 0;
  }

 private:
  Index local_count() const noexcept { return static_cast<Index>(m_b.size()); }

  // every_step: steps k with (k+1) % n == 0; sync_steps: every n-th sync (counted by this rule).
  bool scheduled(Index step, bool sync_after) const noexcept {
    const Index n = m_options.test_interval;
    if (m_options.when == TestWhen::every_step) return (step + 1) % n == 0;
    return sync_after && (m_syncs + 1) % n == 0;
  }

  bool all_at_cap() const noexcept {
    for (size_t m = 0; m < m_b.size(); ++m)
      if (std::max(m_pending[m], m_b[m]) < m_options.b_max) return false;
    return true;
  }

  void ensure_reduce_buffer(Index d) {
    if (m_reduce.size() < d + 4) m_reduce.resize(d + 4);  // once: d is fixed for a run
  }

  // The decision of one test for worker m (docs/batch_rules.md §Batch-size update): skip for a tiny gradient or
  // a non-finite ratio (docs/decisions.md §B13),
  // else grow to the ratio from max(pending, b) (never decrease, docs/decisions.md §B6), capped at b_max (§B7).
  void record(size_t m, const BatchStatistics& st, double divisor) {
    const Index base = std::max(m_pending[m], m_b[m]);
    ++m_tests[m];
    if (!(st.grad_norm_sq >= m_options.tiny_grad_norm_sq)) {
      m_ratio[m] = detail::kNaN;
      ++m_skipped[m];
      return;
    }
    const double r = m_test.ratio(st) / divisor;
    m_ratio[m] = r;
    if (!std::isfinite(r)) {
      ++m_skipped[m];
      return;
    }
    m_pending[m] = next_batch_size(r, base, m_options.b_max);
  }

  // One test result shared by every worker below the cap (global scope, cross_worker).
  void record_shared(const BatchStatistics& st, double divisor) {
    for (size_t m = 0; m < m_b.size(); ++m)
      if (std::max(m_pending[m], m_b[m]) < m_options.b_max) record(m, st, divisor);
  }

  // Statistics of worker m on its own batch (local scope). Columns 2m and 2m+1 of the scratch are its own.
  template <class Ctx>
  BatchStatistics local_statistics(const Ctx& ctx, MatrixRef scratch, Index m) const {
    auto& ws = ctx.workspaces[static_cast<size_t>(m)];
    const auto x = ctx.X.col(m);
    if (m_options.variance == VarianceMode::exact)  // σ², Var⟨∇f_i,∇F⟩, V⊥ at x^m: docs/batch_rules.md §Exact tests
      return population_statistics(
          population_moments(ctx.objective, x, ctx.all_indices, ws, scratch.col(2 * m), scratch.col(2 * m + 1)));
    const auto g = ctx.G.col(m);
    const double gns = g.squaredNorm();
    BatchStatistics st;
    st.grad_norm_sq = gns;
    if (!(gns >= m_options.tiny_grad_norm_sq)) return st;  // record() skips it; spare the moments
    const IndexSpan batch = ctx.batches[static_cast<size_t>(m)];
    if (m_options.estimator == Estimator::per_sample) {  // moments along g at x^m, docs/batch_rules.md §Cheap forms
      if constexpr (Test::variance_only) {
        // the norm test needs only S², i.e. Σ‖g_i‖²: the objective may keep it from the gradient pass
        SampleMoments s;
        s.sum_sq_norm = sample_sq_norm_sum(ctx.objective, x, batch, g, ws, scratch.col(2 * m));
        s.count = static_cast<Index>(batch.size());
        st.variance = sample_variance(s, gns);
        return st;
      }
      return sample_statistics(sample_moments(ctx.objective, x, batch, g, ws, scratch.col(2 * m)), gns);
    }
    // docs/batch_rules.md §micro_batch_means: contiguous micro-batches, sizes differing by at most one
    const auto n = static_cast<Index>(batch.size());
    const Index parts = std::min(m_options.micro_batches, n);
    MicroBatchDeviations dev;
    for (Index j = 0; j < parts; ++j) {
      const Index begin = j * n / parts, end = (j + 1) * n / parts;
      ctx.objective.gradient(x, batch.subspan(static_cast<size_t>(begin), static_cast<size_t>(end - begin)),
                             scratch.col(2 * m), ws);
      dev.add(scratch.col(2 * m), end - begin, g, gns);
    }
    return micro_batch_means_statistics(dev, gns);
  }

  // Whether the objective gives the per-sample statistics of a batch (docs/batch_rules.md §Cheap forms) in a
  // batched pass: a network does not (its per-sample gradients are too dear).
  template <class Ctx>
  static constexpr bool device_per_sample_available() {
    using Obj = std::remove_cvref_t<decltype(std::declval<const Ctx&>().objective)>;
    if constexpr (Test::variance_only) return requires(const Obj& o, const Ctx& c, std::span<double> out) {
        o.sample_sq_norm_sums(c.X, c.batches, out, c.workspaces[0]);
      };
    else
      return requires(const Obj& o, const Ctx& c, std::span<SampleMoments> out) {
        o.sample_moments(c.X, c.batches, c.G, out, c.workspaces[0]);
      };
  }

  // A device run computes local tests (per-sample statistics of the current batch from the objective's batched
  // moments, or micro-batch means from its batched gradients) and the cross-worker estimate at global syncs;
  // global pooled and exact tests read X or G on the host.
  template <class Ctx>
  void require_device_options() const {
    if (m_options.estimator != Estimator::cross_worker)
      detail::require(m_options.scope == TestScope::local, "scope", to_string(m_options.scope),
                      "local on a device run (global tests run on host storage)");
    detail::require(m_options.variance == VarianceMode::approximate, "variance", to_string(m_options.variance),
                    "approximate on a device run (exact variances run on host storage)");
    if constexpr (!device_per_sample_available<Ctx>())
      detail::require(m_options.estimator != Estimator::per_sample, "estimator", to_string(m_options.estimator),
                      "micro_batch_means or cross_worker for this objective: it has no per-sample gradients "
                      "(a network, docs/nn.md §Batch-size tests on networks)");
  }

  // local_test with local_statistics' per-sample branch, for all workers at once on a device: ‖g^m‖² by one
  // reduction over G (lgm::gpu::column_squared_norms, found by argument-dependent lookup on the device views),
  // the moments by the objective's batched pass (docs/batch_rules.md §Cheap forms), or the micro-batch means
  // (device_micro_batch_statistics). Same decisions as the host, worker by worker.
  template <class Ctx>
  void device_local_test(const Ctx& ctx) {
    const Index ML = local_count();
    const double divisor = m_options.eta_is_global_target ? static_cast<double>(m_workers) : 1.0;
    m_norms.resize(static_cast<size_t>(ML));  // no-ops after the first step: ML is fixed for a run
    m_sq_sums.resize(static_cast<size_t>(ML));
    column_squared_norms(ctx.G, std::span<double>(m_norms), detail::storage_of(ctx.comm).stream());
    if (m_options.estimator == Estimator::micro_batch_means) {
      if (all_at_cap()) return;
      device_micro_batch_statistics(ctx);
      for (Index m = 0; m < ML; ++m) {
        const auto um = static_cast<size_t>(m);
        if (std::max(m_pending[um], m_b[um]) >= m_options.b_max) continue;
        record(um, micro_batch_means_statistics(m_deviations[um], m_norms[um]), divisor);
      }
      return;
    }
    if constexpr (device_per_sample_available<Ctx>()) {
      auto& ws = ctx.workspaces[0];
      if constexpr (Test::variance_only) {
        if constexpr (requires { ws.sq_norm_sums(); }) {  // kept from this step's gradient pass at the same X
          const auto kept = ws.sq_norm_sums();
          std::copy(kept.begin(), kept.end(), m_sq_sums.begin());
        } else {
          ctx.objective.sample_sq_norm_sums(ctx.X, ctx.batches, std::span<double>(m_sq_sums), ws);
        }
      } else {
        ctx.objective.sample_moments(ctx.X, ctx.batches, ctx.G, std::span<SampleMoments>(m_moments), ws);
      }
      for (Index m = 0; m < ML; ++m) {
        const auto um = static_cast<size_t>(m);
        if (std::max(m_pending[um], m_b[um]) >= m_options.b_max) continue;  // skip at the cap (docs/decisions.md §B7)
        const double gns = m_norms[um];
        BatchStatistics st;
        st.grad_norm_sq = gns;
        if (gns >= m_options.tiny_grad_norm_sq) {
          if constexpr (Test::variance_only) {
            SampleMoments sm;
            sm.sum_sq_norm = m_sq_sums[um];
            sm.count = static_cast<Index>(ctx.batches[um].size());
            st.variance = sample_variance(sm, gns);
          } else {
            st = sample_statistics(m_moments[um], gns);
          }
        }
        record(um, st, divisor);
      }
    }
  }

  // docs/batch_rules.md §micro_batch_means on a device: the mean gradient μ_j of part j of every worker's batch
  // (all workers in one batched pass: the objective's micro_batch_gradients, which reuses the step's images,
  // else its gradients on the parts) into the first M_local scratch columns; ‖μ_j‖² and ⟨μ_j, g⟩ by device
  // reductions; the deviations from g by MicroBatchDeviations::add_moments. m_norms holds ‖g^m‖².
  template <class Ctx>
  void device_micro_batch_statistics(const Ctx& ctx) {
    const Index ML = local_count();
    const auto L = static_cast<size_t>(ML);
    const auto stream = detail::storage_of(ctx.comm).stream();
    const auto parts_out = decltype(ctx.scratch)(ctx.scratch.data(), ctx.scratch.rows(), ML);
    m_deviations.assign(L, MicroBatchDeviations{});
    m_part_sq.resize(L);
    m_part_dot.resize(L);
    m_part_losses.resize(L);
    m_part_batches.resize(L);
    const Index parts = m_options.micro_batches;
    for (Index j = 0; j < parts; ++j) {
      if constexpr (requires {
                      ctx.objective.micro_batch_gradients(ctx.X, ctx.batches, j, parts, parts_out, ctx.workspaces[0]);
                    }) {
        ctx.objective.micro_batch_gradients(ctx.X, ctx.batches, j, parts, parts_out, ctx.workspaces[0]);
      } else {
        for (size_t m = 0; m < L; ++m) {
          const auto n = static_cast<Index>(ctx.batches[m].size());
          const Index begin = j * n / parts, end = (j + 1) * n / parts;
          m_part_batches[m] = ctx.batches[m].subspan(static_cast<size_t>(begin), static_cast<size_t>(end - begin));
        }
        ctx.objective.gradients(ctx.X, std::span<const IndexSpan>(m_part_batches), parts_out,
                                std::span<double>(m_part_losses), ctx.workspaces[0]);
      }
      column_squared_norms(parts_out, std::span<double>(m_part_sq), stream);
      column_dots(parts_out, ctx.G, std::span<double>(m_part_dot), stream);
      for (size_t m = 0; m < L; ++m) {
        const auto n = static_cast<Index>(ctx.batches[m].size());
        m_deviations[m].add_moments((j + 1) * n / parts - j * n / parts, m_part_sq[m], m_part_dot[m], m_norms[m]);
      }
    }
  }

  // cross_worker_test on a device: ḡ by the communicator's mean (on the device; an all-reduce across ranks),
  // Σ‖g^m‖² and Σ 1/b_m as two host numbers summed over processes.
  template <class Ctx>
  void device_cross_worker_test(const Ctx& ctx) {
    if (all_at_cap()) return;
    const Index ML = local_count();
    const auto stream = detail::storage_of(ctx.comm).stream();
    m_norms.resize(static_cast<size_t>(ML));
    column_squared_norms(ctx.G, std::span<double>(m_norms), stream);
    const auto mean = ctx.scratch.col(0);
    ctx.comm.mean(ctx.G, mean);
    double sums[2] = {0.0, 0.0};
    for (Index m = 0; m < ML; ++m) {
      sums[0] += m_norms[static_cast<size_t>(m)];
      sums[1] += 1.0 / static_cast<double>(ctx.batches[static_cast<size_t>(m)].size());
    }
    ctx.comm.allreduce_sum(std::span<double>(sums, 2));
    m_payload_since_sync += ctx.G.rows() + 2;
    record_cross_worker(squared_norm(mean, stream), sums[0], sums[1]);
  }

  template <class Ctx>
  void local_test(const Ctx& ctx) {
    const Index ML = local_count();
    // docs/batch_rules.md §Local vs global constant: a local constant √M·c_glob; the ratio scales as 1/c², so
    // it is divided by M
    const double divisor = m_options.eta_is_global_target ? static_cast<double>(m_workers) : 1.0;
    MatrixRef scratch = ctx.scratch;
    // each worker writes only its own entries: the result does not depend on the thread count
    detail::parallel_for(ctx.threads, ML, [&](Index m) {
      const auto um = static_cast<size_t>(m);
      if (std::max(m_pending[um], m_b[um]) >= m_options.b_max) return;  // skip at the cap (docs/decisions.md §B7)
      record(um, local_statistics(ctx, scratch, m), divisor);
    });
  }

  // Global scope: statistics of the aggregate of all workers' batches (docs/batch_rules.md §Local and global scope).
  // Sizes are identical on all workers in this scope, so the cap check agrees across processes.
  template <class Ctx>
  void global_test(const Ctx& ctx) {
    if (all_at_cap()) return;
    const Index ML = local_count();
    const Index d = ctx.X.rows();
    const double M = static_cast<double>(m_workers);
    ensure_reduce_buffer(d);
    MatrixRef scratch = ctx.scratch;
    auto dir = scratch.col(2 * ML);  // the pooled direction ḡ (approximate) or ∇̄ (exact)
    BatchStatistics st;
    double divisor = 1.0;
    if (m_options.variance == VarianceMode::approximate) {
      // phase 1: ḡ = Σ_m b_m g^m / B, B = Σ_m b_m (serial sum in worker order, then across processes)
      auto sum = m_reduce.head(d);
      sum.setZero();
      double B = 0.0;
      for (Index m = 0; m < ML; ++m) {
        const auto bm = static_cast<double>(ctx.batches[static_cast<size_t>(m)].size());
        sum += bm * ctx.G.col(m);
        B += bm;
      }
      m_reduce[d] = B;
      ctx.comm.allreduce_sum(std::span<double>(m_reduce.data(), static_cast<size_t>(d + 1)));
      m_payload_since_sync += d + 1;
      B = m_reduce[d];
      dir = m_reduce.head(d) / B;
      st.grad_norm_sq = dir.squaredNorm();
      if (st.grad_norm_sq >= m_options.tiny_grad_norm_sq) {
        // phase 2: each worker's per-sample moments along ḡ, pooled: the moments of the union batch
        detail::parallel_for(ctx.threads, ML, [&](Index m) {
          const auto um = static_cast<size_t>(m);
          m_moments[um] =
              sample_moments(ctx.objective, ctx.X.col(m), ctx.batches[um], dir, ctx.workspaces[um], scratch.col(2 * m));
        });
        SampleMoments pooled;
        for (const SampleMoments& s : m_moments) pooled += s;
        m_reduce[0] = pooled.sum_sq_norm;
        m_reduce[1] = pooled.sum_proj_sq;
        ctx.comm.allreduce_sum(std::span<double>(m_reduce.data(), 2));
        m_payload_since_sync += 2;
        pooled.sum_sq_norm = m_reduce[0];
        pooled.sum_proj_sq = m_reduce[1];
        pooled.count = static_cast<Index>(std::llround(B));
        st = sample_statistics(pooled, st.grad_norm_sq);  // S², V_ip, V⊥ of B samples around ḡ
      }
      divisor = M;  // the ratio is the required global batch; local = ⌈B_req / M⌉ = ⌈r / M⌉
    } else {
      // phase 1: ∇̄ = (1/M) Σ_m ∇F(x^m); ∇F(x^m) is kept in column 2m+1
      detail::parallel_for(ctx.threads, ML, [&](Index m) {
        ctx.objective.gradient(ctx.X.col(m), ctx.all_indices, scratch.col(2 * m + 1),
                               ctx.workspaces[static_cast<size_t>(m)]);
      });
      auto sum = m_reduce.head(d);
      sum.setZero();
      for (Index m = 0; m < ML; ++m) sum += scratch.col(2 * m + 1);
      ctx.comm.allreduce_sum(std::span<double>(m_reduce.data(), static_cast<size_t>(d)));
      m_payload_since_sync += d;
      dir = m_reduce.head(d) / M;
      const double gns = dir.squaredNorm();
      st.grad_norm_sq = gns;
      if (gns >= m_options.tiny_grad_norm_sq) {
        // phase 2: per-worker population variances of ∇f_i(x^m) in total, along ∇̄, and orthogonal to ∇̄
        detail::parallel_for(ctx.threads, ML, [&](Index m) {
          const auto um = static_cast<size_t>(m);
          const SampleMoments s =
              sample_moments(ctx.objective, ctx.X.col(m), ctx.all_indices, dir, ctx.workspaces[um], scratch.col(2 * m));
          const double N = static_cast<double>(s.count);
          const double mean_proj = s.sum_proj / N;  // ⟨∇F(x^m), ∇̄⟩
          BatchStatistics w;
          w.variance = s.sum_sq_norm / N - scratch.col(2 * m + 1).squaredNorm();  // σ²(x^m)
          w.ip_variance = s.sum_proj_sq / N - mean_proj * mean_proj;              // Var⟨∇f_i(x^m), ∇̄⟩
          w.orth_variance = w.variance - w.ip_variance / gns;                     // E‖P⊥(∇f_i − ∇F(x^m))‖²
          m_worker_stats[um] = w;
        });
        m_reduce[0] = m_reduce[1] = m_reduce[2] = 0.0;
        for (const BatchStatistics& w : m_worker_stats) {
          m_reduce[0] += w.variance;
          m_reduce[1] += w.ip_variance;
          m_reduce[2] += w.orth_variance;
        }
        ctx.comm.allreduce_sum(std::span<double>(m_reduce.data(), 3));
        m_payload_since_sync += 3;
        // (1/M²) Σ_m Var_m / b ≤ c² · (‖∇̄‖² or ‖∇̄‖⁴): the variance of the averaged gradient; gives local b
        st.variance = m_reduce[0] / (M * M);
        st.ip_variance = m_reduce[1] / (M * M);
        st.orth_variance = m_reduce[2] / (M * M);
      }
    }
    record_shared(st, divisor);
  }

  // docs/batch_rules.md §cross_worker (AdLoCo): σ̂² = b_h/(M−1)·(Σ_m‖g^m‖² − M‖ḡ‖²), r = σ̂²/(M η² ‖ḡ‖²) for
  // every worker.
  template <class Ctx>
  void cross_worker_test(const Ctx& ctx) {
    if (all_at_cap()) return;
    const Index ML = local_count();
    const Index d = ctx.G.rows();
    ensure_reduce_buffer(d);
    auto sum = m_reduce.head(d);
    sum.setZero();
    double sq = 0.0, inv_b = 0.0;
    for (Index m = 0; m < ML; ++m) {
      sum += ctx.G.col(m);
      sq += ctx.G.col(m).squaredNorm();
      inv_b += 1.0 / static_cast<double>(ctx.batches[static_cast<size_t>(m)].size());
    }
    m_reduce[d] = sq;
    m_reduce[d + 1] = inv_b;
    ctx.comm.allreduce_sum(std::span<double>(m_reduce.data(), static_cast<size_t>(d + 2)));
    m_payload_since_sync += d + 2;
    const double M = static_cast<double>(m_workers);
    record_cross_worker(m_reduce.head(d).squaredNorm() / (M * M), m_reduce[d], m_reduce[d + 1]);
  }

  // The cross-worker decision from ‖ḡ‖², Σ_m‖g^m‖² and Σ_m 1/b_m over all M workers.
  void record_cross_worker(double mean_norm_sq, double sum_sq_norms, double sum_inv_b) {
    const double M = static_cast<double>(m_workers);
    BatchStatistics st;
    st.grad_norm_sq = mean_norm_sq;
    const double harmonic_b = M / sum_inv_b;  // = b when all sizes are equal
    // the variance of ḡ per sample of the global batch: σ̂²/M, so that NormTest's ratio is σ̂²/(Mη²‖ḡ‖²)
    st.variance = cross_worker_variance(sum_sq_norms, st.grad_norm_sq, m_workers, harmonic_b) / M;
    record_shared(st, 1.0);
  }

  AdaptiveBatchOptions m_options{};
  Test m_test{};
  Index m_workers = 1;
  std::vector<Index> m_b, m_pending, m_tests, m_skipped;
  std::vector<double> m_ratio;
  std::vector<SampleMoments> m_moments;                      // per-worker partials of the global approximate test
  std::vector<double> m_norms, m_sq_sums;                    // a device run's ‖g^m‖² and Σ‖g_i‖² per worker
  std::vector<double> m_part_sq, m_part_dot, m_part_losses;  // a device run's ‖μ_j‖², ⟨μ_j, g⟩ per worker
  std::vector<IndexSpan> m_part_batches;                     // part j of each worker's batch
  std::vector<MicroBatchDeviations> m_deviations;            // per worker, over the parts
  std::vector<BatchStatistics> m_worker_stats;               // per-worker population variances of the global exact test
  Vector m_reduce;                                           // all-reduce buffer (d + 4), allocated on first use
  Index m_syncs = 0;
  Index m_payload_since_sync = 0;
  Index m_last_sync_payload = 0;
};

using NormTestRule = AdaptiveBatch<NormTest>;
using InnerProductTestRule = AdaptiveBatch<InnerProductTest>;
using AugmentedInnerProductTestRule = AdaptiveBatch<AugmentedInnerProductTest>;

}  // namespace lgm
