// The α–β cost model of ring all-reduce and per-sample compute that the driver charges for every
// step and every sync (docs/driver.md §Cost model). One definition of the simulated-time metric.
#pragma once

#include <algorithm>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// One link class: latency α in seconds and bandwidth in bytes per second (β = 1/bandwidth).
struct NetworkLink {
  double latency_s = 25e-6;
  double bandwidth_bytes_per_s = 10e9 / 8;  // 10 Gb/s

  static constexpr NetworkLink ethernet_10g() { return {25e-6, 10e9 / 8}; }
  static constexpr NetworkLink infiniband_100g() { return {5e-6, 100e9 / 8}; }
  static constexpr NetworkLink nvlink() { return {2e-6, 300e9}; }
};

struct AlphaBetaCostOptions {
  NetworkLink network = NetworkLink::ethernet_10g();  ///< between groups (and for a flat ring)
  NetworkLink intra_group = NetworkLink::nvlink();    ///< inside a group (hierarchical syncs)
  Index group_size = 1;                               ///< workers per node; 1 = flat ring over `network`
  double element_bytes = 4.0;                         ///< bytes per communicated number (fp32 on the wire)
  double seconds_per_sample = 1e-6;                   ///< compute cost of one sample's gradient
  double seconds_per_step = 0.0;                      ///< fixed cost of one local step (launch, optimizer)
  std::vector<double> worker_slowdown{};              ///< per-worker factor ≥ 1 (stragglers); empty = all 1
};

/// Ring all-reduce of n bytes among p workers: reduce-scatter + all-gather,
/// T = 2(p−1)α + 2(p−1)/p · n/B, and every worker sends 2(p−1)/p · n bytes.
class AlphaBetaCost {
 public:
  AlphaBetaCost() = default;
  explicit AlphaBetaCost(AlphaBetaCostOptions o) : m_o(std::move(o)) {}

  const AlphaBetaCostOptions& options() const noexcept { return m_o; }
  double element_bytes() const noexcept { return m_o.element_bytes; }

  /// A function of its options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}

  void validate(Index workers) const {
    detail::require_nonnegative("cost.network.latency_s", m_o.network.latency_s);
    detail::require_positive("cost.network.bandwidth", m_o.network.bandwidth_bytes_per_s);
    detail::require_nonnegative("cost.intra_group.latency_s", m_o.intra_group.latency_s);
    detail::require_positive("cost.intra_group.bandwidth", m_o.intra_group.bandwidth_bytes_per_s);
    detail::require_positive("cost.element_bytes", m_o.element_bytes);
    detail::require_nonnegative("cost.seconds_per_sample", m_o.seconds_per_sample);
    detail::require_nonnegative("cost.seconds_per_step", m_o.seconds_per_step);
    detail::require(m_o.group_size >= 1 && workers % m_o.group_size == 0, "cost.group_size", m_o.group_size,
                    "a divisor of M = " + detail::to_text(workers));
    detail::require(m_o.worker_slowdown.empty() || static_cast<Index>(m_o.worker_slowdown.size()) == workers,
                    "cost.worker_slowdown (length)", m_o.worker_slowdown.size(),
                    "0 or M = " + detail::to_text(workers) + " entries");
    for (double s : m_o.worker_slowdown) detail::require(s >= 1.0, "cost.worker_slowdown", s, "factors >= 1");
  }

  static double ring_seconds(double bytes, Index p, const NetworkLink& link) {
    if (p <= 1) return 0.0;
    const double pm1 = static_cast<double>(p - 1);
    return 2.0 * pm1 * link.latency_s + 2.0 * pm1 / static_cast<double>(p) * bytes / link.bandwidth_bytes_per_s;
  }

  /// Seconds of one all-reduce. A group-scope sync is a ring inside each group of `group` workers over the
  /// intra-group link. A global sync with node groups is intra-node ring + inter-node ring over the leaders
  /// (the two-level scheme of docs/driver.md §Cost model).
  double allreduce_seconds(double bytes, Index participants, SyncScope scope, Index group) const {
    if (scope == SyncScope::group) return ring_seconds(bytes, group, m_o.intra_group);
    const Index g = std::max<Index>(1, m_o.group_size);
    if (g == 1) return ring_seconds(bytes, participants, m_o.network);
    return ring_seconds(bytes, g, m_o.intra_group) + ring_seconds(bytes, participants / g, m_o.network);
  }

  /// The `bytes` metric: what each worker sends in a flat ring all-reduce of `bytes` bytes.
  double allreduce_bytes_sent(double bytes, Index participants) const {
    if (participants <= 1) return 0.0;
    return 2.0 * static_cast<double>(participants - 1) / static_cast<double>(participants) * bytes;
  }

  /// Seconds worker m needs for one local step over `samples` samples.
  double compute_seconds(Index worker, Index samples) const {
    const double slow = m_o.worker_slowdown.empty() ? 1.0 : m_o.worker_slowdown[static_cast<size_t>(worker)];
    return slow * (m_o.seconds_per_step + m_o.seconds_per_sample * static_cast<double>(samples));
  }

 private:
  AlphaBetaCostOptions m_o;
};

}  // namespace lgm
