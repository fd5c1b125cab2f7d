// Runs an experiment (one or more variants) and writes its outputs: config.toml, metrics.jsonl,
// summary.json, summary.md and the plots (docs/simulator.md describes each file).
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <vector>

#include "config.hpp"
#include "records.hpp"
#include "report.hpp"

namespace lgm::sim {

struct SimCheckpoint;  // checkpoint_file.hpp

/// Where the workers of a run live (docs/mpi.md).
enum class Engine {
  in_process,  ///< all M workers in this process (the default)
  mpi          ///< M workers over the P ranks of MPI_COMM_WORLD, M/P per rank; rank 0 writes the outputs
};

/// True when this lgm-sim was built with the MPI engine (CMake LGM_HAVE_MPI).
bool mpi_engine_available() noexcept;

struct RunnerOptions {
  std::filesystem::path out_dir;    ///< where the outputs go (created; must be new or empty)
  bool overwrite = false;           ///< out_dir may hold an earlier run: lgm-sim's own files there are removed first
  bool quiet = false;               ///< no progress display
  bool plots = true;                ///< make the gnuplot PNGs (skipped with a message without gnuplot)
  std::string gnuplot = "gnuplot";  ///< the gnuplot program
  std::ostream* log = nullptr;      ///< progress and messages (default: std::cerr)
  std::ostream* table = nullptr;    ///< where the comparison table is printed (default: std::cout)
  const std::atomic<bool>* interrupt = nullptr;        ///< set asynchronously (SIGINT, SIGTERM, SIGHUP): stop after
                                                       ///< the current round
  const std::atomic<int>* interrupt_signal = nullptr;  ///< the signal that set `interrupt` (messages, exit status)
  std::function<void(const RoundRecord&)> on_round;    ///< called after every metrics line is written
  Engine engine = Engine::in_process;                  ///< mpi: the caller has initialized MPI
  const SimCheckpoint* resume = nullptr;               ///< continue the experiment of out_dir from this checkpoint
  bool mpi_ordered = false;  ///< mpi: MpiReduction::ordered (bitwise equal to in_process) instead of allreduce
};

/// MPI engine: another rank failed in a phase all ranks pass together (loading, checking, writing the
/// configuration). This rank ends quietly with `exit_code`; the failed rank reported the error.
class PeerRankFailed : public std::runtime_error {
 public:
  PeerRankFailed(int failed_rank, int exit_code)
      : std::runtime_error("rank " + std::to_string(failed_rank) + " failed"), rank(failed_rank), code(exit_code) {}
  int rank;
  int code;
};

/// Runs `phase` on this process. Under the MPI engine (MPI initialized, more than one rank) the ranks then
/// agree: if `phase` threw on any rank, the lowest such rank rethrows its exception and the others throw
/// PeerRankFailed, so that all ranks leave together and the error is printed once. `phase` must not
/// communicate.
void run_on_all_ranks(const std::function<void()>& phase);

/// Exit statuses of `lgm-sim run`: 128 + the signal when interrupted (130 for SIGINT, 143 SIGTERM, 129 SIGHUP).
enum ExitCode : int { kExitOk = 0, kExitRunFailed = 1, kExitBadInput = 2, kExitInterrupted = 130 };

struct ExperimentOutcome {
  ExperimentSummary summary;
  PlotResult plots;
  int exit_code = kExitOk;  ///< 0; 1 when a run diverged or failed or an output could not be written; 128 + signal
  std::vector<std::string> output_errors;  ///< files that could not be written, with the OS's reason
};

/// Builds every run first (all configuration and data errors surface before any run starts, as ConfigError
/// or DataError; so does a run that would not fit in memory, or an output directory that holds an earlier run
/// without `overwrite`), then runs them in order. A run that diverges or fails is reported and the next one
/// runs; when an output file cannot be written the experiment stops, and the files already written stay whole.
ExperimentOutcome run_experiment(ExperimentConfig experiment, const RunnerOptions& options);

/// The checks of the experiment as a whole: its name is a plain directory name (the default output directory is
/// runs/<name>: no '/', not "." or "..", no control characters, not empty) and no two runs share a name (a
/// --grid list with a repeated value would make two). Throws ConfigError.
void check_experiment(const ExperimentConfig& experiment);

/// The files and directories lgm-sim writes in an output directory, relative to it, that are there now
/// (config.toml, metrics.jsonl, summary.json, summary.md, their temporaries, and under plots/ the script, the
/// data files, the log and the PNGs it names). --overwrite removes exactly these.
std::vector<std::filesystem::path> own_output_files(const std::filesystem::path& out_dir);

/// The resolved configuration of a whole experiment as one TOML document: every run as a [[variant]] with all
/// keys, so that `lgm-sim run config.toml` reproduces the metrics bitwise.
std::string experiment_to_toml(const ExperimentConfig& experiment);

/// Checks an experiment as `run` would before running: parses (done by the caller), builds every problem and
/// method, and estimates the memory of each (memory_plan.hpp). Throws ConfigError or DataError.
void validate_experiment(const ExperimentConfig& experiment);

}  // namespace lgm::sim
