// checkpoint.bin: what `lgm-sim resume DIR` needs to continue a killed experiment bitwise,
// docs/simulator.md §Checkpoint and resume: the resolved configuration's hash, the run in progress, the length of
// metrics.jsonl, the finished runs' summaries, the round observer's state and the library's snapshot of the run.
// Written atomically (a temporary file, fsync, rename) in lgm's snapshot format (format version, checksum).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "lgm/run/checkpoint.hpp"
#include "records.hpp"

namespace lgm::sim {

inline constexpr std::uint32_t kCheckpointFormat = 1;

struct SimCheckpoint {
  std::uint64_t config_hash = 0;          ///< FNV-1a of the resolved config.toml
  Index variant = 0;                      ///< the run in progress
  long long metrics_bytes = 0;            ///< metrics.jsonl's complete bytes at the checkpoint
  std::vector<VariantSummary> completed;  ///< the runs before it
  std::string observer;                   ///< the round observer's state (JSON)
  RunSnapshot run;                        ///< the library's snapshot of the run in progress (read_checkpoint)
};

/// FNV-1a of a text (the resolved configuration).
std::uint64_t text_hash(const std::string& text);

/// Writes `file` as a whole or not at all, with `run` as the snapshot (c.run is not read: the caller's snapshot is
/// not copied); OutputError naming the file on failure.
void write_checkpoint(const std::filesystem::path& file, const SimCheckpoint& c, const RunSnapshot& run);

/// Reads `file`; DataError naming the file and what is wrong (missing, damaged, another format version).
SimCheckpoint read_checkpoint(const std::filesystem::path& file);

}  // namespace lgm::sim
