// The memory a run needs, estimated before anything large is allocated, and the memory this process may still
// take. A run whose estimate exceeds what is available is rejected before it starts, naming the keys that size
// it (docs/simulator.md, "Bad input and faults"); an allocation that fails anyway ends the run as `failed`.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"

namespace lgm::sim {

struct Problem;

/// One allocation (or group of allocations) of a run: what it is, the keys that size it and its size.
struct MemoryItem {
  std::string what;                 ///< e.g. "training features d × N (8 bytes each)"
  std::vector<std::string> keys;    ///< the configuration keys that size it, e.g. {"problem.N", "problem.d"}
  std::vector<std::string> values;  ///< their values, aligned with keys
  double bytes = 0.0;
};

/// The allocations of one phase (loading a problem, or running a method on it).
struct MemoryPlan {
  std::vector<MemoryItem> items;

  double total_bytes() const;
  /// The largest item (the one the error names); the plan must not be empty.
  const MemoryItem& largest() const;
  /// The `max_items` largest items as "what: size", largest first, joined by "; ".
  std::string breakdown(std::size_t max_items = 4) const;
};

/// What this process may still allocate and where that figure comes from.
struct MemoryBudget {
  double bytes = 0.0;
  std::string source;  ///< e.g. "MemAvailable in /proc/meminfo"
};

/// The smallest of: MemAvailable (/proc/meminfo), the cgroup v2 limit less its usage (memory.max −
/// memory.current), and the environment variable LGM_MEMORY_LIMIT (bytes, or with a suffix K, M, G, T: powers
/// of 1024) less this process's resident size. std::nullopt when none of them is known (no check is made).
/// Throws ConfigError naming LGM_MEMORY_LIMIT when it is set but not a size.
std::optional<MemoryBudget> available_memory();

/// "1.50 GiB", "12.0 MiB", "512 B".
std::string format_bytes(double bytes);

/// The data of the problem of `cfg` while it is loaded or generated: synthetic sizes from the keys, Fashion-MNIST
/// from its known shape, LIBSVM files from a quick scan of their sample lines and largest feature index (the
/// reader allocates dense features). No large allocation.
MemoryPlan plan_problem_memory(const RunConfig& cfg);

/// What the driver (replicas, gradients, scratch, optimizer state, workspaces, sample-index buffers up to the
/// largest batch), the sampler and the evaluation allocate for one run of `cfg` on the loaded `problem`.
MemoryPlan plan_run_memory(const RunConfig& cfg, const Problem& problem);

/// Throws ConfigError when plan.total_bytes() > budget->bytes: the name is the largest item's keys (and
/// `where`, e.g. " (variant "x")"), the value their values, and the accepted text gives the figures (needed,
/// largest items, available and its source). No check when `budget` is std::nullopt.
void require_memory(const MemoryPlan& plan, std::string_view phase, std::string_view where,
                    const std::optional<MemoryBudget>& budget);

/// For readers that learn a size from their input (a LIBSVM file's largest feature index): throws ConfigError
/// naming `keys` when `bytes` exceed available_memory(). `what` says what would be allocated.
void require_memory_for(std::string_view what, double bytes, const std::vector<std::string>& keys,
                        const std::vector<std::string>& values);

}  // namespace lgm::sim
