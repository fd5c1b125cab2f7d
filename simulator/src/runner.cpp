#include "runner.hpp"

#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include "build.hpp"
#include "progress.hpp"
#include "run_variant.hpp"

namespace lgm::sim {

namespace {

struct PreparedRun {
  std::shared_ptr<const Problem> problem;
  std::unique_ptr<ConfiguredMethod> method;
};

/// Loads each distinct problem once, resolves measured compute costs, builds and validates every method.
std::vector<PreparedRun> prepare(ExperimentConfig& experiment, std::ostream* log) {
  std::map<std::string, std::shared_ptr<const Problem>> problems;
  std::map<std::string, double> measured;
  std::vector<PreparedRun> prepared;
  for (RunConfig& cfg : experiment.runs) {
    const std::string key = problem_key(cfg);
    auto& problem = problems[key];
    if (!problem) {
      if (log) *log << "lgm-sim: loading " << cfg.text("problem.type") << " on " << cfg.text("problem.data") << "\n";
      problem = build_problem(cfg);
    }
    if (cfg.flag("compute.measure")) {
      // measured once per problem; the value goes into the resolved config, so a rerun of config.toml
      // charges exactly the same simulated time (bitwise reproducible metrics)
      auto it = measured.find(key);
      if (it == measured.end()) it = measured.emplace(key, measure_seconds_per_sample(*problem)).first;
      std::ostringstream v;
      v.precision(17);
      v << it->second;
      cfg.set("compute.seconds_per_sample", v.str());
      cfg.set("compute.measure", "false");
    }
    prepared.push_back({problem, std::make_unique<ConfiguredMethod>(build_method(cfg, *problem))});
  }
  return prepared;
}

VariantSummary run_one(const RunConfig& cfg, PreparedRun& run, RunEnv& env) {
  return with_objective(run.problem->train, [&](const auto& train) {
    using Obj = std::decay_t<decltype(train)>;
    const Obj* test = run.problem->test ? std::get_if<Obj>(&*run.problem->test) : nullptr;
    return run_variant<Obj>(train, test, *run.problem, cfg, *run.method, env);
  });
}

}  // namespace

std::string experiment_to_toml(const ExperimentConfig& experiment) {
  std::ostringstream os;
  os << "# lgm-sim resolved configuration: every key of every run, seeds included.\n"
     << "# `lgm-sim run config.toml` reproduces metrics.jsonl bitwise (all fields but wall_time_s).\n";
  RunConfig named;
  named.set_name(experiment.name);
  // the run's own to_toml writes its name as the first top-level key; reuse it for the experiment's name
  {
    const std::string doc = named.to_toml();
    std::istringstream in(doc);
    std::string line;
    while (std::getline(in, line) && (line.empty() || line.front() != '['))
      if (line.rfind("name", 0) == 0) os << line << "\n";
  }
  for (const RunConfig& run : experiment.runs) {
    os << "\n[[variant]]\n";
    std::istringstream in(run.to_toml());
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line.front() == '#') continue;
      if (line.front() == '[')
        os << "[variant." << line.substr(1) << "\n";  // [optimizer] → [variant.optimizer]
      else if (line.rfind("description", 0) != 0)
        os << line << "\n";
    }
  }
  return os.str();
}

void validate_experiment(const ExperimentConfig& experiment) {
  ExperimentConfig copy = experiment;
  for (RunConfig& cfg : copy.runs) cfg.set("compute.measure", "false");  // validate does not time anything
  (void)prepare(copy, nullptr);
}

ExperimentOutcome run_experiment(ExperimentConfig experiment, const RunnerOptions& options) {
  std::ostream& log = options.log ? *options.log : std::cerr;
  std::ostream& table = options.table ? *options.table : std::cout;
  std::vector<PreparedRun> prepared = prepare(experiment, options.quiet ? nullptr : &log);

  std::filesystem::create_directories(options.out_dir);
  {
    std::ofstream f(options.out_dir / "config.toml");
    f << experiment_to_toml(experiment);
    if (!f) throw std::runtime_error("cannot write " + (options.out_dir / "config.toml").string());
  }
  MetricsWriter metrics(options.out_dir / "metrics.jsonl");
  Progress progress(log, options.quiet, detect_terminal(stderr));

  ExperimentOutcome outcome;
  ExperimentSummary& summary = outcome.summary;
  summary.name = experiment.name;
  summary.problem = prepared.empty() ? "" : prepared.front().problem->description;
  summary.workers = experiment.runs.empty() ? 0 : experiment.runs.front().integer("run.workers");
  std::vector<std::vector<RoundRecord>> records;

  const Index count = static_cast<Index>(experiment.runs.size());
  for (Index i = 0; i < count; ++i) {
    if (options.interrupt && options.interrupt->load()) {
      summary.interrupted = true;
      break;
    }
    const RunConfig& cfg = experiment.runs[static_cast<size_t>(i)];
    records.emplace_back();
    RunEnv env{&metrics, &progress, options.interrupt, &records.back(), options.on_round};
    progress.begin_run(cfg.name(), i, count, cfg.integer("run.max_samples"), cfg.integer("run.max_steps"));
    VariantSummary s;
    try {
      s = run_one(cfg, prepared[static_cast<size_t>(i)], env);
    } catch (const std::exception& e) {
      // one failing run does not take the others down; its metrics lines so far stay in the file
      s.name = cfg.name();
      s.status = RunStatus::failed;
      s.message = e.what();
    }
    progress.end_run(s);
    if (s.status == RunStatus::diverged || s.status == RunStatus::failed)
      progress.message("lgm-sim: run '" + s.name + "' " + to_string(s.status) + ": " + s.message);
    summary.variants.push_back(std::move(s));
    if (summary.variants.back().status == RunStatus::interrupted) {
      summary.interrupted = true;
      break;
    }
  }

  write_summary_json(options.out_dir / "summary.json", summary);
  write_summary_markdown(options.out_dir / "summary.md", summary);
  table << "\n" << summary_table_markdown(summary) << "\n";
  if (options.plots) {
    outcome.plots = make_plots(options.out_dir, records, options.gnuplot);
    progress.message("lgm-sim: " + outcome.plots.message);
  }
  progress.message("lgm-sim: outputs in " + options.out_dir.string());

  if (summary.interrupted) {
    outcome.exit_code = kExitInterrupted;
  } else {
    for (const VariantSummary& v : summary.variants)
      if (v.status != RunStatus::completed) outcome.exit_code = kExitRunFailed;
  }
  return outcome;
}

}  // namespace lgm::sim
