// lgm-sim: local gradient methods simulated with many workers in one process (docs/simulator.md), or spread
// over the ranks of `mpirun -np P lgm-sim run CONFIG --engine mpi` (docs/mpi.md).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <system_error>
#include <vector>

#include "checkpoint_file.hpp"
#include "config.hpp"
#include "demo_config.hpp"
#include "lgm/core/error.hpp"
#include "network.hpp"
#include "runner.hpp"

#if defined(LGM_HAVE_MPI) && LGM_HAVE_MPI
#include "lgm/comm/mpi.hpp"
#endif

namespace {

std::atomic<bool> g_interrupt{false};
std::atomic<int> g_interrupt_signal{0};

extern "C" void on_interrupt(int signal) {
  // the first SIGINT, SIGTERM or SIGHUP: finish the current round and write the summary; the handler is reset
  // (SA_RESETHAND), so a second one ends the process at once
  g_interrupt_signal.store(signal);
  g_interrupt.store(true);
}

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND;
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaction(signal, &action, nullptr);
}

struct CommonOptions {
  std::vector<std::string> overrides;
  std::string out;
  bool quiet = false;
  bool no_plots = false;
  bool overwrite = false;
  std::string engine = "in_process";
  std::string mpi_reduction = "allreduce";
};

void add_common(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--set", o.overrides, "override a key, e.g. --set optimizer.lr=0.05 (repeatable)");
  cmd->add_option("--out", o.out, "output directory (default: runs/<name>); must be new or empty");
  cmd->add_flag("--overwrite", o.overwrite,
                "the output directory may hold an earlier run: lgm-sim's files there are removed first");
  cmd->add_flag("--quiet", o.quiet, "no progress display");
  cmd->add_flag("--no-plots", o.no_plots, "do not call gnuplot");
  cmd->add_option("--engine", o.engine,
                  "in_process (default), or mpi: run.workers spread over the ranks of mpirun -np P (docs/mpi.md)")
      ->check(CLI::IsMember({"in_process", "mpi"}));
  cmd->add_option("--mpi-reduction", o.mpi_reduction,
                  "with --engine mpi: allreduce (default; one MPI_Allreduce per average, equal to in_process "
                  "within rounding) or ordered (MPI_Allgather, bitwise equal to in_process)")
      ->check(CLI::IsMember({"allreduce", "ordered"}));
}

// Under mpirun, only rank 0 prints command-line errors (every rank parses the same arguments).
bool is_secondary_rank() {
  const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
  if (!r) r = std::getenv("PMI_RANK");
  return r && std::string(r) != "0";
}

/// The device the experiment's networks run on ("" when it has none); one device for every run.
std::string network_device_of(const lgm::sim::ExperimentConfig& experiment) {
  std::string device;
  for (const lgm::sim::RunConfig& r : experiment.runs) {
    if (!lgm::sim::is_network_type(r.text("problem.type"))) continue;
    const std::string d = r.text("problem.device");
    if (!device.empty() && d != device)
      throw lgm::ConfigError("problem.device", "\"" + d + "\" in variant " + r.name() + ", \"" + device + "\" before",
                             "one device for every run of an experiment");
    device = d;
  }
  return device;
}

/// A network run for the other device is handed to the sibling executable beside this one (lgm-sim runs
/// problem.device = "cpu", lgm-sim-cuda "cuda": one process holds one Thrust system), with the same arguments,
/// before anything is written. Returns when this executable runs the experiment itself.
void hand_over_if_other_device(const lgm::sim::ExperimentConfig& experiment, char** argv) {
  const bool handed_over = std::getenv("LGM_SIM_HANDED_OVER") != nullptr;
  unsetenv("LGM_SIM_HANDED_OVER");  // not inherited by what this process starts (gnuplot)
  const std::string wanted = network_device_of(experiment), here = lgm::sim::network_device();
  const char* sibling_name = wanted == "cuda" && here != "cuda"  ? "lgm-sim-cuda"
                             : wanted == "cpu" && here == "cuda" ? "lgm-sim"
                                                                 : nullptr;
  if (sibling_name == nullptr) return;
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  const std::filesystem::path sibling = self.parent_path() / sibling_name;
  const std::string accepted = "\"" + std::string(here.empty() ? "cpu" : here) + "\"";
  if (ec || !std::filesystem::exists(sibling))
    throw lgm::ConfigError("problem.device", "\"" + wanted + "\"",
                           accepted + ": " + sibling_name + " is not beside this executable" +
                               (wanted == "cuda" ? " (a build without the CUDA toolkit has none: configure where "
                                                   "/usr/local/cuda/bin/nvcc exists; docs/simulator.md §Networks)"
                                                 : ""));
  if (handed_over)  // the sibling handed it back: never loop
    throw lgm::ConfigError("problem.device", "\"" + wanted + "\"", accepted + " (" + sibling_name + " handed it back)");
  setenv("LGM_SIM_HANDED_OVER", "1", 1);
  execv(sibling.c_str(), argv);
  throw std::runtime_error("cannot start " + sibling.string() + ": " + std::strerror(errno));
}

int run(lgm::sim::ExperimentConfig experiment, const CommonOptions& o, char** argv,
        const lgm::sim::SimCheckpoint* resume = nullptr) {
  if (o.engine != "mpi") hand_over_if_other_device(experiment, argv);  // a process under mpirun never execs
  lgm::sim::RunnerOptions ro;
  ro.resume = resume;
  ro.out_dir = o.out.empty() ? std::filesystem::path("runs") / experiment.name : std::filesystem::path(o.out);
  ro.quiet = o.quiet;
  ro.plots = !o.no_plots;
  ro.overwrite = o.overwrite;
  ro.interrupt = &g_interrupt;
  ro.interrupt_signal = &g_interrupt_signal;
  ro.engine = o.engine == "mpi" ? lgm::sim::Engine::mpi : lgm::sim::Engine::in_process;
  ro.mpi_ordered = o.mpi_reduction == "ordered";
  install_signal_handlers();
  const lgm::sim::ExperimentOutcome outcome = lgm::sim::run_experiment(std::move(experiment), ro);
  if (outcome.summary.interrupted)
    std::cerr << "lgm-sim: interrupted ("
              << lgm::sim::signal_name(g_interrupt_signal.load() > 0 ? g_interrupt_signal.load() : SIGINT)
              << "); the summary of what ran is in " << ro.out_dir.string() << "\n";
  for (const std::string& error : outcome.output_errors) std::cerr << "lgm-sim: output error: " << error << "\n";
  return outcome.exit_code;
}

/// --engine mpi: MPI_Init, then every rank loads the configuration and runs its M/P workers; rank 0 writes the
/// outputs. Errors found while loading and checking (identical on all ranks, or on one rank only, e.g. a data
/// file missing on one node) are printed once, by the lowest rank that saw them, and every rank exits with
/// status 2; a failure during a run ends all ranks through MPI_Abort (runner.cpp) with that rank's message.
int run_mpi([[maybe_unused]] int& argc, [[maybe_unused]] char**& argv,
            [[maybe_unused]] const std::function<lgm::sim::ExperimentConfig()>& load,
            [[maybe_unused]] const CommonOptions& o) {
#if defined(LGM_HAVE_MPI) && LGM_HAVE_MPI
  lgm::MpiSession session(argc, argv);
  const auto report = [&](const std::exception& e) {
    std::cerr << "lgm-sim: rank " << session.rank() << " of " << session.ranks() << ": " << e.what() << "\n";
  };
  try {
    lgm::sim::ExperimentConfig experiment;
    lgm::sim::run_on_all_ranks([&] {
      experiment = load();
      if (!network_device_of(experiment).empty())
        throw lgm::ConfigError("--engine", "mpi",
                               "in_process for problem.type = resnet or gpt (network runs keep their M replicas in "
                               "one process)");
    });
    return run(std::move(experiment), o, argv);
  } catch (const lgm::sim::PeerRankFailed& e) {
    return e.code;  // the failed rank printed the reason
  } catch (const lgm::ConfigError& e) {
    report(e);
    return lgm::sim::kExitBadInput;
  } catch (const lgm::DataError& e) {
    report(e);
    return lgm::sim::kExitBadInput;
  } catch (const std::exception& e) {
    lgm::abort_all_ranks(std::string("error: ") + e.what(), lgm::sim::kExitRunFailed, "lgm-sim");
  }
#else
  std::cerr << "lgm-sim: --engine mpi: this lgm-sim was built without MPI (CMake LGM_HAVE_MPI is off); rebuild "
               "with -DLGM_WITH_MPI=ON where Open MPI is installed (libopenmpi-dev, openmpi-bin), or use "
               "--engine in_process\n";
  return lgm::sim::kExitBadInput;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  // past a file-size limit (ulimit -f) a write fails with EFBIG and is reported like a full disk, instead of the
  // signal ending the process with half-written files
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{
      "lgm-sim: local gradient methods with many simulated workers (docs/simulator.md).\n"
      "Without a subcommand it runs the built-in demo (Fashion-MNIST, 8 workers, 11 variants)."};
  app.require_subcommand(0, 1);
  CommonOptions demo_opts;
  add_common(&app, demo_opts);

  std::string config_path;
  CommonOptions run_opts, sweep_opts, validate_opts;
  std::vector<std::string> grid;

  auto* run_cmd = app.add_subcommand("run", "run the experiment described by a TOML file (all its variants)");
  run_cmd->add_option("config", config_path, "TOML configuration file")->required();
  add_common(run_cmd, run_opts);

  auto* sweep_cmd = app.add_subcommand("sweep", "run the cross product of --grid values over a configuration");
  sweep_cmd->add_option("config", config_path, "TOML configuration file")->required();
  sweep_cmd->add_option("--grid", grid, "key=v1,v2,... (repeatable; the cross product is run)")->required();
  add_common(sweep_cmd, sweep_opts);

  std::string resume_dir;
  CommonOptions resume_opts;
  auto* resume_cmd = app.add_subcommand(
      "resume", "continue a killed or interrupted run from DIR/checkpoint.bin (checkpoint.every_steps or _seconds)");
  resume_cmd->add_option("dir", resume_dir, "the run's output directory")->required();
  resume_cmd->add_flag("--quiet", resume_opts.quiet, "no progress display");
  resume_cmd->add_flag("--no-plots", resume_opts.no_plots, "do not call gnuplot");

  auto* list_cmd = app.add_subcommand("list", "list every configuration key: type, default, accepted values");
  auto* validate_cmd = app.add_subcommand("validate", "check a configuration (and its data files) without running");
  validate_cmd->add_option("config", config_path, "TOML configuration file")->required();
  validate_cmd->add_option("--set", validate_opts.overrides, "override a key (repeatable)");
  auto* demo_cmd = app.add_subcommand("demo-config", "print the built-in demo configuration");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (is_secondary_rank()) return e.get_exit_code();
    return app.exit(e);
  }

  // --engine mpi: the run, sweep or demo on the ranks of MPI_COMM_WORLD
  const CommonOptions* engine_opts = *run_cmd ? &run_opts : *sweep_cmd ? &sweep_opts : &demo_opts;
  if (*resume_cmd && demo_opts.engine == "mpi") {
    std::cerr << "lgm-sim: resume: --engine mpi is not accepted (checkpoints are of in-process runs)\n";
    return lgm::sim::kExitBadInput;
  }
  if (engine_opts->engine == "mpi" && !*list_cmd && !*validate_cmd && !*demo_cmd && !*resume_cmd) {
    return run_mpi(
        argc, argv,
        [&] {
          if (*run_cmd) return lgm::sim::load_experiment(config_path, run_opts.overrides);
          if (*sweep_cmd)
            return lgm::sim::expand_grid(lgm::sim::load_experiment(config_path, sweep_opts.overrides), grid);
          return lgm::sim::parse_experiment(lgm::sim::kDemoConfig, "built-in demo", demo_opts.overrides);
        },
        *engine_opts);
  }

  try {
    if (*list_cmd) {
      std::cout << lgm::sim::schema_listing();
      return 0;
    }
    if (*demo_cmd) {
      std::cout << lgm::sim::kDemoConfig;
      return 0;
    }
    if (*validate_cmd) {
      const auto experiment = lgm::sim::load_experiment(config_path, validate_opts.overrides);
      hand_over_if_other_device(experiment, argv);
      lgm::sim::validate_experiment(experiment);
      std::cout << config_path << ": valid, " << experiment.runs.size() << " run(s)\n";
      for (const std::string& note : lgm::sim::no_effect_notes(experiment)) std::cout << note << "\n";
      return 0;
    }
    if (*run_cmd) return run(lgm::sim::load_experiment(config_path, run_opts.overrides), run_opts, argv);
    if (*resume_cmd) {
      // the resolved config.toml of the run (every key, the measured costs): the checkpoint names its hash
      const std::filesystem::path dir(resume_dir);
      const lgm::sim::SimCheckpoint checkpoint = lgm::sim::read_checkpoint(dir / "checkpoint.bin");
      resume_opts.out = resume_dir;
      resume_opts.quiet = resume_opts.quiet || demo_opts.quiet;  // `lgm-sim --quiet resume DIR` too
      resume_opts.no_plots = resume_opts.no_plots || demo_opts.no_plots;
      return run(lgm::sim::load_experiment((dir / "config.toml").string(), {}), resume_opts, argv, &checkpoint);
    }
    if (*sweep_cmd)
      return run(lgm::sim::expand_grid(lgm::sim::load_experiment(config_path, sweep_opts.overrides), grid), sweep_opts,
                 argv);
    return run(lgm::sim::parse_experiment(lgm::sim::kDemoConfig, "built-in demo", demo_opts.overrides), demo_opts,
               argv);
  } catch (const lgm::ConfigError& e) {
    std::cerr << "lgm-sim: " << e.what() << "\n";
    return lgm::sim::kExitBadInput;
  } catch (const lgm::DataError& e) {
    std::cerr << "lgm-sim: " << e.what() << "\n";
    return lgm::sim::kExitBadInput;
  } catch (const std::exception& e) {
    std::cerr << "lgm-sim: error: " << e.what() << "\n";
    return lgm::sim::kExitRunFailed;
  }
}
