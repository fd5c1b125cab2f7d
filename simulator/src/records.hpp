// What the simulator records: one RoundRecord per communication round (a line of metrics.jsonl) and one
// VariantSummary per run (a row of summary.md, an entry of summary.json). Shared by the runner and the reports.
#pragma once

#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include "lgm/core/types.hpp"

namespace lgm::sim {

/// The state after one communication round of one run (variant). Fields without a value at this round
/// (evaluations happen only at evaluation rounds; `subopt` only where f* is known; `test_*` only with a test
/// set) are std::nullopt and are written as JSON null.
struct RoundRecord {
  std::string run;                      ///< variant name
  Index round = 0;                      ///< 0-based index of the round that just ended
  Index step = 0;                       ///< local steps taken by every worker so far
  Index samples = 0;                    ///< samples processed by all workers so far
  Index comm_rounds = 0;                ///< synchronizations so far (any scope)
  double bytes = 0.0;                   ///< bytes each worker sent so far (ring all-reduce model)
  double sim_time_s = 0.0;              ///< simulated time on the configured network
  double sim_time_10g_s = 0.0;          ///< simulated time on the 10 Gb/s preset (same compute)
  double sim_time_100g_s = 0.0;         ///< simulated time on the 100 Gb/s preset (same compute)
  double wall_time_s = 0.0;             ///< real time since the run started (the only non-reproducible field)
  double lr = 0.0;                      ///< learning rate of the round's last step
  Index H = 0;                          ///< period of the round that just ended
  Index batch_min = 0;                  ///< smallest local batch size for the next step
  double batch_mean = 0.0;              ///< mean local batch size for the next step
  Index batch_max = 0;                  ///< largest local batch size for the next step
  double batch_loss = 0.0;              ///< mean over workers of the last step's minibatch losses
  std::optional<double> loss;           ///< full training loss F(x̄) at the averaged point
  std::optional<double> grad_norm_sq;   ///< ‖∇F(x̄)‖²
  std::optional<double> subopt;         ///< F(x̄) − F*, where F* is known
  std::optional<double> test_loss;      ///< mean loss on the test set
  std::optional<double> test_accuracy;  ///< fraction of the test set classified correctly
};

/// How one run ended.
enum class RunStatus { completed, diverged, interrupted, failed };

inline const char* to_string(RunStatus s) {
  switch (s) {
    case RunStatus::completed:
      return "completed";
    case RunStatus::diverged:
      return "diverged";
    case RunStatus::interrupted:
      return "interrupted";
    case RunStatus::failed:
      return "failed";
  }
  return "?";
}

/// "SIGINT", "SIGTERM", "SIGHUP", or "signal N".
inline std::string signal_name(int signal) {
  switch (signal) {
    case SIGHUP:
      return "SIGHUP";
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "signal " + std::to_string(signal);
  }
}

/// What the MPI engine sent during one run: rank 0's counters (every rank sends the same amounts), beside
/// the cost model's `bytes` (docs/mpi.md). Absent for in-process runs.
struct MpiSummary {
  int ranks = 1;               ///< P
  std::string reduction;       ///< "ordered" or "allreduce"
  Index collectives = 0;       ///< MPI collective calls of the run (parameters, statistics, per-step scalars)
  double payload_bytes = 0.0;  ///< bytes of this rank's send buffers, summed over those calls (fp64)
  double wire_bytes = 0.0;     ///< bytes this rank sends under ring algorithms (comparable with `bytes`)
};

/// The end state of one run: a row of the comparison table.
struct VariantSummary {
  std::string name;
  RunStatus status = RunStatus::completed;
  std::string message;  ///< why it stopped, in words (names the round when it diverged)
  Index steps = 0;
  Index comm_rounds = 0;
  Index samples = 0;
  double bytes = 0.0;
  double sim_time_s = 0.0;
  double sim_time_10g_s = 0.0;
  double sim_time_100g_s = 0.0;
  double wall_time_s = 0.0;
  Index batch_min = 0;  ///< final local batch sizes
  double batch_mean = 0.0;
  Index batch_max = 0;
  std::optional<double> loss;  ///< last evaluated values (at the final round)
  std::optional<double> grad_norm_sq;
  std::optional<double> subopt;
  std::optional<double> test_loss;
  std::optional<double> test_accuracy;
  std::optional<MpiSummary> mpi;  ///< MPI engine only
};

/// A whole experiment: its name and one summary per run, in the order they ran.
struct ExperimentSummary {
  std::string name;
  std::string problem;  ///< one line describing the problem (e.g. "softmax regression on Fashion-MNIST, d = 7850")
  Index workers = 0;
  std::vector<VariantSummary> variants;
  bool interrupted = false;
};

}  // namespace lgm::sim
