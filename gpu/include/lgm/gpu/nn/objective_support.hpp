// What the network objectives share (docs/nn.md §Memory plan, §Image classifier): the memory plan and its check
// against the device's free memory, the split of the workers' batches into passes of one batch size, and the
// observer that evaluates the shared model at syncs.
#pragma once

#include <cstdio>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/hooks.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/backend.hpp"
#include "lgm/gpu/storage.hpp"
#include "lgm/run/metrics.hpp"

namespace lgm::gpu::nn {

/// One item of a memory plan: what is allocated and its bytes.
struct MemoryItem {
  std::string what;
  double bytes = 0.0;
};

/// What a run of a network needs before its first step (docs/nn.md §Memory plan).
struct MemoryPlan {
  std::vector<MemoryItem> items;
  double total() const {
    double t = 0.0;
    for (const MemoryItem& i : items) t += i.bytes;
    return t;
  }
};

/// What the process may still allocate on its device (on the CPU build: MemAvailable of /proc/meminfo), and
/// where the figure comes from; bytes < 0 when unknown.
struct MemoryBudget {
  double bytes = -1.0;
  std::string source;
};

inline MemoryBudget available_device_memory() {
#if LGM_GPU_CUDA
  std::size_t free = 0, total = 0;
  check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return {static_cast<double>(free), "free device memory (cudaMemGetInfo)"};
#else
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kib = 0.0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return {kib * 1024.0, "MemAvailable in /proc/meminfo"};
  return {};
#endif
}

namespace detail {

/// "1.50 GiB", "12.0 MiB", "512 B".
inline std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  char text[32];
  std::snprintf(text, sizeof text, u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return text;
}

}  // namespace detail

/// Throws ConfigError, before the first step, when `plan` exceeds what the run may use: `limit_bytes` when > 0
/// (the option `limit_name`), else the device's free memory; the message lists every item and ends with `advice`.
inline void require_memory_fits(const MemoryPlan& plan, const lgm::hooks::RunFootprint& f, double limit_bytes,
                                const std::string& limit_name, const std::string& advice) {
  const MemoryBudget budget = limit_bytes > 0 ? MemoryBudget{limit_bytes, limit_name} : available_device_memory();
  if (budget.bytes < 0.0 || plan.total() <= budget.bytes) return;
  std::string parts;
  for (const MemoryItem& i : plan.items) parts += "; " + i.what + ": " + detail::format_bytes(i.bytes);
  throw lgm::ConfigError("memory (M_local = " + lgm::detail::to_text(f.local_workers) +
                             ", largest batch = " + lgm::detail::to_text(f.max_batch) + ")",
                         "needs " + detail::format_bytes(plan.total()) + parts,
                         "at most " + detail::format_bytes(budget.bytes) + " (" + budget.source + "); " + advice);
}

namespace detail {

/// X and G are d × M with one batch a worker (the gradients() calls of the network objectives).
template <class T>
void require_gradient_shapes(DeviceMatrixView<const T> X, std::span<const IndexSpan> batches, DeviceMatrixView<T> G,
                             Index dim) {
  lgm::detail::require(X.rows() == dim && G.rows() == dim && G.cols() == X.cols(), "gradients (X rows)", X.rows(),
                       "the network's d = " + lgm::detail::to_text(dim) + ", G of the same shape");
  lgm::detail::require(static_cast<Index>(batches.size()) == X.cols(), "gradients (batches)", batches.size(),
                       "one batch a worker");
}

/// A device copy of a host point (the driver's shared point), converted to T; x must have `dim` values.
template <class T>
DeviceBuffer<T> device_copy(lgm::ConstVectorRef x, Index dim, StreamHandle stream) {
  lgm::detail::require(x.size() == dim, "evaluate (x size)", x.size(), "the network's d");
  std::vector<T> staged(static_cast<std::size_t>(dim));
  for (Index k = 0; k < dim; ++k) staged[static_cast<std::size_t>(k)] = static_cast<T>(x[k]);
  DeviceBuffer<T> dx(dim, stream);
  copy_to_device(dx.data(), staged.data(), staged.size() * sizeof(T), stream);
  return dx;
}

/// Calls f(first, count, sub-batches) for runs of consecutive workers whose part `part` of `parts` has one size:
/// all workers at once when their batches are equal, else one worker a call. The sub-batches (kept in `parts_of`,
/// so no allocation after the first call) are part `part` of each worker's batch (the whole batch when parts = 1).
template <class F>
void for_each_pass(std::span<const IndexSpan> batches, Index part, Index parts, std::vector<IndexSpan>& parts_of,
                   F&& f) {
  parts_of.resize(batches.size());
  bool equal = true;
  for (std::size_t m = 0; m < batches.size(); ++m) {
    const auto n = static_cast<Index>(batches[m].size());
    const Index begin = part * n / parts, end = (part + 1) * n / parts;
    parts_of[m] = batches[m].subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(end - begin));
    equal = equal && batches[m].size() == batches[0].size();
  }
  const std::span<const IndexSpan> all(parts_of);
  const auto workers = static_cast<Index>(batches.size());
  if (equal) {
    f(0, workers, all);
  } else {
    for (Index m = 0; m < workers; ++m) f(m, 1, all.subspan(static_cast<std::size_t>(m), 1));
  }
}

}  // namespace detail

/// One evaluation of the shared model (EvaluationObserver).
struct EvaluationRecord {
  Index step = 0, round = 0, samples = 0;
  double loss = 0.0, accuracy = 0.0;
};

/// An observer that evaluates the shared model on a held-out set at every `every`-th global sync and at the end
/// of the run (docs/nn.md §Image classifier): `obj.evaluate(shared point, set)` gives .loss and .accuracy (an
/// ImageClassifier on images, a LanguageModel on tokens).
template <class Objective, class Set>
class EvaluationObserver {
 public:
  EvaluationObserver(const Objective& obj, const Set& set, Index every = 1) : m_obj(&obj), m_set(&set), m_every(every) {
    lgm::detail::require(every >= 1, "evaluation every", every, "an integer >= 1 (global syncs)");
  }

  void on_sync(const lgm::RunState& s) {
    if (s.scope != lgm::SyncScope::global || ++m_syncs % m_every != 0) return;
    record(s);
  }
  void on_end(const lgm::RunState& s) {
    if (m_records.empty() || m_records.back().step != s.metrics.steps) record(s);
  }

  const std::vector<EvaluationRecord>& records() const noexcept { return m_records; }

 private:
  void record(const lgm::RunState& s) {
    const auto e = m_obj->evaluate(s.shared_point, *m_set);
    m_records.push_back({s.metrics.steps, s.round, s.metrics.samples, e.loss, e.accuracy});
  }

  const Objective* m_obj;
  const Set* m_set;
  Index m_every;
  Index m_syncs = 0;
  std::vector<EvaluationRecord> m_records;
};

}  // namespace lgm::gpu::nn
