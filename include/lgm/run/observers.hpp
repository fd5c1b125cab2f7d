// Ready-made observers. An observer is any object with some of the hooks on_step, on_sync,
// on_batch_change, on_end, each taking const RunState& and returning void or bool (false stops the run).
#pragma once

#include <cmath>
#include <functional>
#include <utility>
#include <vector>

#include "lgm/core/types.hpp"
#include "lgm/run/metrics.hpp"

namespace lgm {

/// One row per synchronization: the metrics and an objective value at the shared point.
struct SyncRecord {
  Metrics metrics;
  Index round = 0;
  Index period = 0;
  double lr = 0.0;
  double batch_loss = 0.0;
  double value = 0.0;  ///< what the evaluation function returned at the shared point (NaN without one)
  Index batch_min = 0, batch_max = 0;
  double batch_mean = 0.0;
};

/// Records a SyncRecord at every sync; `evaluate(x)` (optional) is called on the shared point.
class SyncHistory {
 public:
  SyncHistory() = default;
  explicit SyncHistory(std::function<double(ConstVectorRef)> evaluate) : m_evaluate(std::move(evaluate)) {}

  void on_sync(const RunState& s) {
    SyncRecord r;
    r.metrics = s.metrics;
    r.round = s.round;
    r.period = s.period;
    r.lr = s.lr;
    r.batch_loss = s.batch_loss;
    r.value = m_evaluate ? m_evaluate(s.shared_point) : std::nan("");
    if (!s.batch_sizes.empty()) {
      r.batch_min = r.batch_max = s.batch_sizes[0];
      double sum = 0.0;
      for (Index b : s.batch_sizes) {
        r.batch_min = std::min(r.batch_min, b);
        r.batch_max = std::max(r.batch_max, b);
        sum += static_cast<double>(b);
      }
      r.batch_mean = sum / static_cast<double>(s.batch_sizes.size());
    }
    m_records.push_back(r);
  }

  const std::vector<SyncRecord>& records() const noexcept { return m_records; }

 private:
  std::function<double(ConstVectorRef)> m_evaluate;
  std::vector<SyncRecord> m_records;
};

/// Stops the run at the first sync where `predicate(state)` holds (e.g. a target accuracy is reached).
class StopWhen {
 public:
  explicit StopWhen(std::function<bool(const RunState&)> predicate) : m_predicate(std::move(predicate)) {}
  bool on_sync(const RunState& s) {
    m_fired = m_fired || m_predicate(s);
    return !m_fired;
  }
  bool fired() const noexcept { return m_fired; }

 private:
  std::function<bool(const RunState&)> m_predicate;
  bool m_fired = false;
};

/// Counts how often each hook was called (tests, progress displays).
struct HookCounter {
  Index steps = 0, syncs = 0, batch_changes = 0, ends = 0;
  void on_step(const RunState&) { ++steps; }
  void on_sync(const RunState&) { ++syncs; }
  void on_batch_change(const RunState&) { ++batch_changes; }
  void on_end(const RunState&) { ++ends; }
};

}  // namespace lgm
