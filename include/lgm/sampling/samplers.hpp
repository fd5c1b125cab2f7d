// Samplers: which sample indices worker m uses at step k (docs/samplers.md; docs/design.md §Determinism: same
// seed ⇒ same sample indices for every worker on every backend). Every random number comes from the counter-based
// Philox stream of philox.hpp keyed by (seed, worker or class, purpose), so results depend neither on the
// thread count nor on the order in which workers are drawn.
//
//   IidSampler            with replacement from all N samples (docs/decisions.md §B15)
//   ShuffledEpochSampler  without replacement, a fresh permutation per worker and epoch
//   ShardedSampler        disjoint shards of one global shuffle (docs/decisions.md §B15, §A18)
//   DirichletLabelSampler label-skewed heterogeneous shards, proportions ~ Dirichlet(α) per class
#pragma once

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/sampling/philox.hpp"

namespace lgm {

/// Purpose tags of the samplers' random streams (the third argument of CounterRng). Public so that a
/// device backend can reproduce every sampler's indices number by number.
namespace rng_purpose {
inline constexpr std::uint32_t iid = 0;  ///< also the default of the one-call lgm::uniform_index
inline constexpr std::uint32_t epoch_shuffle = 1;
inline constexpr std::uint32_t shard_partition = 2;
inline constexpr std::uint32_t shard_shuffle = 3;
inline constexpr std::uint32_t dirichlet_proportions = 4;
inline constexpr std::uint32_t dirichlet_class_shuffle = 5;
inline constexpr std::uint32_t dirichlet_draw = 6;
}  // namespace rng_purpose

namespace detail {

inline void validate_sampler_shape(Index workers, Index num_samples) {
  require_at_least("M", workers, Index{1});
  require_at_least("num_samples", num_samples, Index{1});
}

/// Fisher–Yates (Durstenfeld) shuffle in place: for i = n−1 down to 1, swap a[i] with a[j],
/// j = rng.uniform_index(step, i, i + 1) ∈ [0, i]. The permutation depends only on (key, step, n).
inline void fisher_yates(std::span<Index> a, const CounterRng& rng, std::uint64_t step) {
  for (std::size_t i = a.size(); i-- > 1;) {
    const auto j = static_cast<std::size_t>(rng.uniform_index(step, i, i + 1));
    std::swap(a[i], a[j]);
  }
}

/// Position of one worker in its epoch sequence. One cache line each, so that workers advanced by
/// different threads do not share a line.
struct alignas(64) EpochCursor {
  Index epoch = -1;  ///< epoch being walked; −1 before the first draw
  Index pos = 0;     ///< next entry of the epoch's order
};

}  // namespace detail

// ================================================================================================ IidSampler
/// Sampling with replacement from all N samples, purely counter-based and stateless:
/// index i of worker m's batch at step k is uniform_index(seed, m, k, i, N) (docs/samplers.md §IidSampler:
/// b^m i.i.d. samples, an independent RNG stream per worker). A longer batch at the same (m, k) extends a shorter
/// one.
class IidSampler {
 public:
  IidSampler() = default;
  explicit IidSampler(std::uint64_t seed) : m_seed(seed) {}

  std::uint64_t seed() const noexcept { return m_seed; }

  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  /// Nothing to check: every seed is valid.
  void validate() const noexcept {}

  void reset(Index workers, Index num_samples) {
    detail::validate_sampler_shape(workers, num_samples);
    m_workers = workers;
    m_num_samples = num_samples;
  }

  /// Thread-safe for any m: reads only the seed and N.
  void draw(Index m, Index step, std::span<Index> out) const {
    assert(m_num_samples > 0 && m >= 0 && m < m_workers && "IidSampler::draw before reset or bad worker");
    const CounterRng rng(m_seed, static_cast<std::uint64_t>(m), rng_purpose::iid);
    const auto n = static_cast<std::uint64_t>(m_num_samples);
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = static_cast<Index>(rng.uniform_index(static_cast<std::uint64_t>(step), i, n));
  }

 private:
  std::uint64_t m_seed = 0;
  Index m_workers = 0;
  Index m_num_samples = 0;
};

// ================================================================================================ ShuffledEpochSampler
/// Sampling without replacement: worker m walks its own sequence of random permutations of 0..N−1.
/// Epoch e of worker m is the Fisher–Yates shuffle of (0, 1, …, N−1) keyed by (seed, m, e); a batch takes
/// the next out.size() entries, crossing into the next epoch when the current one is used up. Every
/// index appears exactly once per epoch; batch sizes may change from step to step.
class ShuffledEpochSampler {
 public:
  ShuffledEpochSampler() = default;
  explicit ShuffledEpochSampler(std::uint64_t seed) : m_seed(seed) {}

  std::uint64_t seed() const noexcept { return m_seed; }
  void validate() const noexcept {}

  /// The permutations being walked and every worker's place in them (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar& ar) {
    ar.check("sampler.num_samples", m_num_samples);
    ar("sampler.permutations", m_permutations);
    ar("sampler.cursors", m_cursors);
  }

  /// Allocates one N-sized permutation buffer per worker (M·N indices) and rewinds every worker.
  void reset(Index workers, Index num_samples) {
    detail::validate_sampler_shape(workers, num_samples);
    detail::require(workers <= std::numeric_limits<Index>::max() / num_samples, "M", workers,
                    "at most " + detail::to_text(std::numeric_limits<Index>::max() / num_samples) +
                        " workers for num_samples = " + detail::to_text(num_samples) +
                        " (one permutation of N indices per worker)");
    m_workers = workers;
    m_num_samples = num_samples;
    m_permutations.assign(static_cast<std::size_t>(workers * num_samples), Index{0});
    m_cursors.assign(static_cast<std::size_t>(workers), detail::EpochCursor{-1, num_samples});
  }

  /// Touches only worker m's cursor and permutation buffer: different m may run concurrently. The
  /// step is not needed; worker m's batches must be drawn in step order.
  void draw(Index m, Index /*step*/, std::span<Index> out) {
    assert(m_num_samples > 0 && m >= 0 && m < m_workers && "ShuffledEpochSampler::draw before reset or bad worker");
    auto& cur = m_cursors[static_cast<std::size_t>(m)];
    const auto perm = permutation_buffer(m);
    for (auto& o : out) {
      if (cur.pos == m_num_samples) {
        ++cur.epoch;
        std::iota(perm.begin(), perm.end(), Index{0});  // epoch e depends only on (seed, m, e)
        detail::fisher_yates(perm, CounterRng(m_seed, static_cast<std::uint64_t>(m), rng_purpose::epoch_shuffle),
                             static_cast<std::uint64_t>(cur.epoch));
        cur.pos = 0;
      }
      o = perm[static_cast<std::size_t>(cur.pos++)];
    }
  }

  /// Epoch worker m is in (0-based; −1 before its first draw).
  Index epoch(Index m) const { return m_cursors[static_cast<std::size_t>(m)].epoch; }
  /// Indices of the current epoch already handed out to worker m.
  Index position(Index m) const { return m_cursors[static_cast<std::size_t>(m)].pos; }
  /// Worker m's permutation of the current epoch.
  std::span<const Index> permutation(Index m) const {
    return {m_permutations.data() + m * m_num_samples, static_cast<std::size_t>(m_num_samples)};
  }

 private:
  std::span<Index> permutation_buffer(Index m) {
    return {m_permutations.data() + m * m_num_samples, static_cast<std::size_t>(m_num_samples)};
  }

  std::uint64_t m_seed = 0;
  Index m_workers = 0;
  Index m_num_samples = 0;
  std::vector<Index> m_permutations;  // M × N, worker m owns entries [m·N, (m+1)·N)
  std::vector<detail::EpochCursor> m_cursors;
};

// ================================================================================================ ShardedSampler
/// Disjoint shards of one global shuffle (docs/decisions.md §B15; Lin et al.'s random disjoint partition,
/// docs/decisions.md §A18). The Fisher–Yates permutation π of
/// 0..N−1 keyed by the seed is cut into M contiguous shards: with q = ⌊N/M⌋ and r = N mod M, workers
/// 0..r−1 get q+1 = ⌈N/M⌉ indices and the others q = ⌊N/M⌋ (worker m's shard starts at m·q + min(m, r)).
/// Worker m walks its shard in epochs: with `reshuffle_each_epoch`, epoch e is the shard reshuffled by
/// the key (seed, m, e); without, every epoch repeats the shard's order in π. The partition itself is
/// fixed for the run (Lin et al. redraw it every epoch; with per-worker adaptive batch sizes the workers'
/// epochs do not line up, so a per-epoch global partition would not stay disjoint).
class ShardedSampler {
 public:
  ShardedSampler() = default;
  explicit ShardedSampler(std::uint64_t seed, bool reshuffle_each_epoch = true)
      : m_seed(seed), m_reshuffle(reshuffle_each_epoch) {}

  std::uint64_t seed() const noexcept { return m_seed; }
  bool reshuffle_each_epoch() const noexcept { return m_reshuffle; }
  void validate() const noexcept {}

  /// The shards' walk orders and every worker's place in them (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar& ar) {
    ar.check("sampler.num_samples", m_num_samples);
    ar("sampler.order", m_order);
    ar("sampler.cursors", m_cursors);
  }

  /// Draws the partition and rewinds every worker; allocates 2·N indices.
  void reset(Index workers, Index num_samples) {
    detail::validate_sampler_shape(workers, num_samples);
    detail::require(num_samples >= workers, "num_samples", num_samples,
                    "an integer >= M = " + detail::to_text(workers) + " (every worker needs a non-empty shard)");
    m_workers = workers;
    m_num_samples = num_samples;
    m_partition.resize(static_cast<std::size_t>(num_samples));
    std::iota(m_partition.begin(), m_partition.end(), Index{0});
    detail::fisher_yates(m_partition, CounterRng(m_seed, 0, rng_purpose::shard_partition), 0);
    m_order = m_partition;
    m_offsets.resize(static_cast<std::size_t>(workers) + 1);
    const Index q = num_samples / workers, r = num_samples % workers;
    for (Index m = 0; m <= workers; ++m) m_offsets[static_cast<std::size_t>(m)] = m * q + std::min(m, r);
    m_cursors.assign(static_cast<std::size_t>(workers), detail::EpochCursor{-1, 0});
    for (Index m = 0; m < workers; ++m) m_cursors[static_cast<std::size_t>(m)].pos = shard_size(m);
  }

  /// Touches only worker m's cursor and its slice of the walk order: different m may run concurrently.
  void draw(Index m, Index /*step*/, std::span<Index> out) {
    assert(m_num_samples > 0 && m >= 0 && m < m_workers && "ShardedSampler::draw before reset or bad worker");
    auto& cur = m_cursors[static_cast<std::size_t>(m)];
    const Index size = shard_size(m);
    const auto begin = static_cast<std::size_t>(m_offsets[static_cast<std::size_t>(m)]);
    const std::span<Index> order(m_order.data() + begin, static_cast<std::size_t>(size));
    for (auto& o : out) {
      if (cur.pos == size) {
        ++cur.epoch;
        if (m_reshuffle) {
          std::copy_n(m_partition.begin() + static_cast<std::ptrdiff_t>(begin), size, order.begin());
          detail::fisher_yates(order, CounterRng(m_seed, static_cast<std::uint64_t>(m), rng_purpose::shard_shuffle),
                               static_cast<std::uint64_t>(cur.epoch));
        }
        cur.pos = 0;
      }
      o = order[static_cast<std::size_t>(cur.pos++)];
    }
  }

  /// Worker m's shard, in the order of the global permutation π.
  std::span<const Index> shard(Index m) const {
    return {m_partition.data() + m_offsets[static_cast<std::size_t>(m)], static_cast<std::size_t>(shard_size(m))};
  }
  Index shard_size(Index m) const {
    return m_offsets[static_cast<std::size_t>(m) + 1] - m_offsets[static_cast<std::size_t>(m)];
  }
  /// Epoch worker m is in (0-based; −1 before its first draw).
  Index epoch(Index m) const { return m_cursors[static_cast<std::size_t>(m)].epoch; }

 private:
  std::uint64_t m_seed = 0;
  bool m_reshuffle = true;
  Index m_workers = 0;
  Index m_num_samples = 0;
  std::vector<Index> m_partition;  // π; shard m = entries [offsets[m], offsets[m+1])
  std::vector<Index> m_order;      // each worker's walk order of its shard, same layout
  std::vector<Index> m_offsets;
  std::vector<detail::EpochCursor> m_cursors;
};

// ================================================================================================
// DirichletLabelSampler
/// Options of the label-skew sampler.
struct DirichletOptions {
  double concentration = 0.5;        ///< α > 0: small → each class on few workers, large → homogeneous
  Index min_samples_per_worker = 1;  ///< every worker must end up with at least this many samples
  Index max_attempts = 100;          ///< Dirichlet redraws allowed to satisfy min_samples_per_worker
};

/// Heterogeneous data by label skew (the Dirichlet partition of Hsu, Qi, Brown 2019, arXiv 1909.06335,
/// as in NIID-Bench, Li et al. 2022). At reset, for every class c:
///   1. the indices of class c are shuffled (Fisher–Yates keyed by (seed, c));
///   2. proportions p_c ~ Dirichlet(α, …, α) over the M workers, p_{c,m} = G_m / Σ_j G_j with
///      G_m ~ Gamma(α, 1) keyed by (seed, c, attempt, m) (computed in log space, so tiny α is safe);
///   3. worker m receives the shuffled class entries [B_{c,m}, B_{c,m+1}), B_{c,m} = round(n_c Σ_{j<m} p_{c,j})
///      and B_{c,M} = n_c (cumulative rounding: every index goes to exactly one worker).
/// If some worker gets fewer than `min_samples_per_worker` samples, all proportions are redrawn (attempt
/// 1, 2, …); after `max_attempts` failures reset() throws ConfigError naming "dirichlet.concentration"
/// (a larger α spreads the classes more evenly). draw() then samples i.i.d. with replacement from the
/// worker's own indices: entry i is S_m[uniform_index(step, i, |S_m|)] on the key (seed, m).
class DirichletLabelSampler {
 public:
  DirichletLabelSampler(std::uint64_t seed, std::vector<int> labels, DirichletOptions options = {})
      : m_seed(seed), m_options(options), m_labels(std::move(labels)) {}
  DirichletLabelSampler(std::uint64_t seed, double concentration, std::vector<int> labels)
      : DirichletLabelSampler(seed, std::move(labels), DirichletOptions{concentration}) {}

  std::uint64_t seed() const noexcept { return m_seed; }
  const DirichletOptions& options() const noexcept { return m_options; }
  const std::vector<int>& labels() const noexcept { return m_labels; }

  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  /// Checks the options and the labels; throws ConfigError naming the parameter, value and range.
  void validate() const {
    detail::require_positive("dirichlet.concentration", m_options.concentration);
    detail::require_at_least("dirichlet.min_samples_per_worker", m_options.min_samples_per_worker, Index{1});
    detail::require_at_least("dirichlet.max_attempts", m_options.max_attempts, Index{1});
    for (std::size_t i = 0; i < m_labels.size(); ++i)
      if (m_labels[i] < 0) detail::require_at_least("labels[" + std::to_string(i) + "]", m_labels[i], 0);
  }

  /// Partitions the data (the only allocations); throws ConfigError on bad input or an infeasible split.
  void reset(Index workers, Index num_samples) {
    validate();
    detail::validate_sampler_shape(workers, num_samples);
    detail::require(static_cast<Index>(m_labels.size()) == num_samples, "labels (size)", m_labels.size(),
                    "num_samples = " + detail::to_text(num_samples) + " (one label per sample)");
    // gamma_log addresses variate m with 32 bits (philox.hpp)
    detail::require_in_range("M", workers, Index{1}, Index{0xFFFFFFFF});
    const Index min_n = m_options.min_samples_per_worker;
    detail::require(num_samples / workers >= min_n, "dirichlet.min_samples_per_worker", min_n,
                    "at most num_samples / M = " + detail::to_text(num_samples / workers));

    const auto M = static_cast<std::size_t>(workers);
    const auto N = static_cast<std::size_t>(num_samples);
    const auto C = static_cast<std::size_t>(*std::max_element(m_labels.begin(), m_labels.end())) + 1;

    // 1. class members, by counting sort, each class shuffled by (seed, c)
    std::vector<Index> class_offsets(C + 1, 0);
    for (int y : m_labels) ++class_offsets[static_cast<std::size_t>(y) + 1];
    std::partial_sum(class_offsets.begin(), class_offsets.end(), class_offsets.begin());
    std::vector<Index> members(N);
    {
      std::vector<Index> fill(class_offsets.begin(), class_offsets.end() - 1);
      for (std::size_t i = 0; i < N; ++i)
        members[static_cast<std::size_t>(fill[static_cast<std::size_t>(m_labels[i])]++)] = static_cast<Index>(i);
    }
    for (std::size_t c = 0; c < C; ++c) {
      const std::span<Index> cls(members.data() + class_offsets[c],
                                 static_cast<std::size_t>(class_offsets[c + 1] - class_offsets[c]));
      detail::fisher_yates(cls, CounterRng(m_seed, c, rng_purpose::dirichlet_class_shuffle), 0);
    }

    // 2.–3. proportions and cumulative-rounding boundaries, redrawn until every worker has enough samples
    Matrix proportions(static_cast<Index>(C), workers);
    std::vector<Index> bounds(C * (M + 1));  // bounds[c·(M+1) + m] = B_{c,m}
    std::vector<Index> totals(M);
    std::vector<double> logs(M);
    bool ok = false;
    Index attempts = 0;
    for (Index attempt = 0; attempt < m_options.max_attempts && !ok; ++attempt) {
      std::fill(totals.begin(), totals.end(), Index{0});
      for (std::size_t c = 0; c < C; ++c) {
        const CounterRng rng(m_seed, c, rng_purpose::dirichlet_proportions);
        for (std::size_t m = 0; m < M; ++m)
          logs[m] = rng.gamma_log(static_cast<std::uint64_t>(attempt), m, m_options.concentration);
        // normalized in log space: p_m = exp(ln G_m − max) / Σ_j exp(ln G_j − max)
        const double top = *std::max_element(logs.begin(), logs.end());
        double sum = 0.0;
        for (std::size_t m = 0; m < M; ++m) sum += std::exp(logs[m] - top);
        const Index n_c = class_offsets[c + 1] - class_offsets[c];
        double cum = 0.0;
        Index* B = bounds.data() + c * (M + 1);
        B[0] = 0;
        for (std::size_t m = 0; m < M; ++m) {
          const double p = std::exp(logs[m] - top) / sum;
          proportions(static_cast<Index>(c), static_cast<Index>(m)) = p;
          cum += p;
          B[m + 1] = m + 1 == M ? n_c : std::min(n_c, static_cast<Index>(std::llround(static_cast<double>(n_c) * cum)));
          totals[m] += B[m + 1] - B[m];
        }
      }
      ok = *std::min_element(totals.begin(), totals.end()) >= min_n;
      attempts = attempt + 1;
    }
    if (!ok)
      throw ConfigError("dirichlet.concentration", detail::to_text(m_options.concentration),
                        "a larger value: in " + detail::to_text(m_options.max_attempts) +
                            " Dirichlet draws some worker always got fewer than dirichlet.min_samples_per_worker = " +
                            detail::to_text(min_n) + " samples (M = " + detail::to_text(workers) +
                            ", classes = " + detail::to_text(C) + ", num_samples = " + detail::to_text(num_samples) +
                            "); or use another seed");

    // worker sets, CSR (state changes only from here on, so a failed reset leaves the sampler as it was): worker m
    // holds m_indices[m_offsets[m] .. m_offsets[m+1]), class by class
    m_offsets.assign(M + 1, 0);
    for (std::size_t m = 0; m < M; ++m) m_offsets[m + 1] = m_offsets[m] + totals[m];
    m_indices.resize(N);
    for (std::size_t m = 0; m < M; ++m) {
      auto out = m_indices.begin() + m_offsets[m];
      for (std::size_t c = 0; c < C; ++c) {
        const Index* B = bounds.data() + c * (M + 1);
        out = std::copy(members.begin() + class_offsets[c] + B[m], members.begin() + class_offsets[c] + B[m + 1], out);
      }
    }
    m_workers = workers;
    m_num_classes = static_cast<Index>(C);
    m_attempts = attempts;
    m_proportions = std::move(proportions);
  }

  /// Stateless and thread-safe for any m: i.i.d. with replacement from worker m's own indices.
  void draw(Index m, Index step, std::span<Index> out) const {
    assert(m >= 0 && m < m_workers && "DirichletLabelSampler::draw before reset or bad worker");
    const auto own = worker_indices(m);
    const CounterRng rng(m_seed, static_cast<std::uint64_t>(m), rng_purpose::dirichlet_draw);
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = own[static_cast<std::size_t>(rng.uniform_index(static_cast<std::uint64_t>(step), i, own.size()))];
  }

  /// Worker m's sample indices, class by class (in each class, in the shuffled class order).
  std::span<const Index> worker_indices(Index m) const {
    const auto um = static_cast<std::size_t>(m);
    return {m_indices.data() + m_offsets[um], static_cast<std::size_t>(m_offsets[um + 1] - m_offsets[um])};
  }
  /// p_{c,m}: C × M, column m = worker m; the accepted draw.
  const Matrix& proportions() const noexcept { return m_proportions; }
  Index num_classes() const noexcept { return m_num_classes; }
  /// Dirichlet draws the last reset needed (1 when the first one gave every worker enough samples).
  Index attempts() const noexcept { return m_attempts; }

 private:
  std::uint64_t m_seed = 0;
  DirichletOptions m_options;
  std::vector<int> m_labels;
  Index m_workers = 0;
  Index m_num_classes = 0;
  Index m_attempts = 0;
  Matrix m_proportions;
  std::vector<Index> m_indices;
  std::vector<Index> m_offsets;
};

}  // namespace lgm
