// lgm-sim: local gradient methods simulated with many workers in one process (docs/simulator.md).
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "config.hpp"
#include "demo_config.hpp"
#include "lgm/core/error.hpp"
#include "runner.hpp"

namespace {

std::atomic<bool> g_interrupt{false};

extern "C" void on_sigint(int) {
  // first Ctrl-C: finish the current round and write the summary; a second one ends the process at once
  g_interrupt.store(true);
  std::signal(SIGINT, SIG_DFL);
}

struct CommonOptions {
  std::vector<std::string> overrides;
  std::string out;
  bool quiet = false;
  bool no_plots = false;
};

void add_common(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--set", o.overrides, "override a key, e.g. --set optimizer.lr=0.05 (repeatable)");
  cmd->add_option("--out", o.out, "output directory (default: runs/<name>)");
  cmd->add_flag("--quiet", o.quiet, "no progress display");
  cmd->add_flag("--no-plots", o.no_plots, "do not call gnuplot");
}

int run(lgm::sim::ExperimentConfig experiment, const CommonOptions& o) {
  lgm::sim::RunnerOptions ro;
  ro.out_dir = o.out.empty() ? std::filesystem::path("runs") / experiment.name : std::filesystem::path(o.out);
  ro.quiet = o.quiet;
  ro.plots = !o.no_plots;
  ro.interrupt = &g_interrupt;
  std::signal(SIGINT, on_sigint);
  const lgm::sim::ExperimentOutcome outcome = lgm::sim::run_experiment(std::move(experiment), ro);
  if (outcome.exit_code == lgm::sim::kExitInterrupted)
    std::cerr << "lgm-sim: interrupted; the summary of what ran is in " << ro.out_dir.string() << "\n";
  return outcome.exit_code;
}

}  // namespace

int main(int argc, char** argv) {
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

  auto* list_cmd = app.add_subcommand("list", "list every configuration key: type, default, accepted values");
  auto* validate_cmd = app.add_subcommand("validate", "check a configuration (and its data files) without running");
  validate_cmd->add_option("config", config_path, "TOML configuration file")->required();
  validate_cmd->add_option("--set", validate_opts.overrides, "override a key (repeatable)");
  auto* demo_cmd = app.add_subcommand("demo-config", "print the built-in demo configuration");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
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
      lgm::sim::validate_experiment(experiment);
      std::cout << config_path << ": valid, " << experiment.runs.size() << " run(s)\n";
      return 0;
    }
    if (*run_cmd) return run(lgm::sim::load_experiment(config_path, run_opts.overrides), run_opts);
    if (*sweep_cmd)
      return run(lgm::sim::expand_grid(lgm::sim::load_experiment(config_path, sweep_opts.overrides), grid), sweep_opts);
    return run(lgm::sim::parse_experiment(lgm::sim::kDemoConfig, "built-in demo", demo_opts.overrides), demo_opts);
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
