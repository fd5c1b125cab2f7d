// Faults and hostile input at the level of a whole experiment (issue 12, items 7, 8, 10, 11): runs too large
// for the memory, allocation failures during a run, output directories that hold an earlier run, names that
// would leave the output root, duplicate run names from a grid, and finite but enormous losses.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <new>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "build.hpp"
#include "config.hpp"
#include "memory_plan.hpp"
#include "report.hpp"
#include "runner.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace lgm::sim;

namespace {

using lgm::sim::test::TempDir;

/// Sets an environment variable for the scope (the tests of this binary run one after another).
struct ScopedEnv {
  std::string name;
  std::optional<std::string> old;
  ScopedEnv(std::string n, const std::string& value) : name(std::move(n)) {
    if (const char* v = std::getenv(name.c_str())) old = v;
    ::setenv(name.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old)
      ::setenv(name.c_str(), old->c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

using lgm::sim::test::quiet_options;

const char* kTwoRuns = R"(
name = "robust"
[run]
workers = 2
threads = 1
max_samples = 6000
eval_points = 4
[problem]
type = "logistic"
N = 400
d = 6
[optimizer]
lr = 0.5
[sync]
H = 2
[batch]
b = 8
[[variant]]
name = "a"
[[variant]]
name = "b"
sync.H = 4
)";

std::vector<RoundRecord> records_of(const fs::path& file, const std::string& run) {
  std::vector<RoundRecord> out;
  for (const RoundRecord& r : read_metrics(file))
    if (r.run == run) out.push_back(r);
  return out;
}

std::string config_error_of(const ExperimentConfig& e) {
  try {
    validate_experiment(e);
  } catch (const lgm::ConfigError& err) {
    return err.what();
  }
  return "";
}

}  // namespace

// ---------------------------------------------------------------- item 7: memory

TEST_CASE("memory: LGM_MEMORY_LIMIT caps the budget; a bad value names the variable") {
  {
    ScopedEnv env("LGM_MEMORY_LIMIT", "1G");
    const auto budget = available_memory();
    REQUIRE(budget.has_value());
    CHECK(budget->bytes <= 1073741824.0);
    CHECK(budget->source.find("LGM_MEMORY_LIMIT") != std::string::npos);
  }
  ScopedEnv bad("LGM_MEMORY_LIMIT", "lots");
  CHECK_THROWS_WITH_AS(available_memory(), doctest::Contains("LGM_MEMORY_LIMIT"), lgm::ConfigError);
}

TEST_CASE("memory: the plans count the data, the index buffers up to b_max and the optimizer state") {
  const ExperimentConfig e = parse_experiment(
      "[run]\nworkers = 4\nmax_samples = 1000\n[problem]\nN = 1000000000\nd = 50\nlambda = 0\n"
      "[batch]\ntype = \"norm\"\nb = 8\nb_max = 1073741824\n[optimizer]\ntype = \"adamw\"\n",
      "x.toml");
  const MemoryPlan data = plan_problem_memory(e.runs[0]);
  CHECK(data.total_bytes() >= 8.0 * 50 * 1e9);
  CHECK(data.largest().keys == std::vector<std::string>{"problem.N", "problem.d"});

  const ExperimentConfig small = parse_experiment(
      "[run]\nworkers = 4\nmax_samples = 1000\n[problem]\nN = 100\nd = 5\n"
      "[batch]\ntype = \"norm\"\nb = 8\nb_max = 1073741824\n[optimizer]\ntype = \"adamw\"\n",
      "x.toml");
  const auto problem = build_problem(small.runs[0]);
  const MemoryPlan run = plan_run_memory(small.runs[0], *problem);
  // 4 workers × 2^30 × (index + cached norm terms)
  CHECK(run.largest().keys == std::vector<std::string>{"run.workers", "batch.b_max"});
  CHECK(run.largest().bytes >= 4.0 * 1073741824.0 * 8);
  bool adam_state = false;
  for (const MemoryItem& i : run.items) adam_state = adam_state || i.what.find("optimizer state") != std::string::npos;
  CHECK(adam_state);
}

TEST_CASE("memory: runs that cannot fit are rejected before they start, naming the keys and the figures") {
  TempDir dir;
  ScopedEnv env("LGM_MEMORY_LIMIT", "2G");
  const std::string base = "[run]\nworkers = 4\nmax_samples = 1000\n[problem]\nN = 1000\nd = 10\n";
  SUBCASE("batch.b = 2^30") {
    const std::string msg = config_error_of(parse_experiment(base + "[batch]\nb = 1073741824\n", "x.toml"));
    CHECK(msg.find("batch.b") != std::string::npos);
    CHECK(msg.find("run.workers") != std::string::npos);
    CHECK(msg.find("1073741824") != std::string::npos);
    CHECK(msg.find("GiB") != std::string::npos);
    CHECK(msg.find("LGM_MEMORY_LIMIT") != std::string::npos);
  }
  SUBCASE("a norm test growing towards b_max = 2^30") {
    const std::string msg =
        config_error_of(parse_experiment(base + "[batch]\ntype = \"norm\"\nb = 8\nb_max = 1073741824\n", "x.toml"));
    CHECK(msg.find("batch.b_max") != std::string::npos);
  }
  SUBCASE("problem.N = 1e9") {
    const std::string msg =
        config_error_of(parse_experiment("[run]\nmax_samples = 1000\n[problem]\nN = 1000000000\n", "x.toml"));
    CHECK(msg.find("problem.N") != std::string::npos);
    CHECK(msg.find("loading the problem") != std::string::npos);
  }
  SUBCASE("problem.d = 1e5") {
    const std::string msg =
        config_error_of(parse_experiment("[run]\nmax_samples = 1000\n[problem]\nd = 100000\n", "x.toml"));
    CHECK(msg.find("problem.d") != std::string::npos);
  }
  SUBCASE("a LIBSVM feature index of 2^31 - 1: the scan finds it before the dense features are allocated") {
    const fs::path file = dir.path / "huge.svm";
    std::ofstream(file) << "+1 1:0.5 2147483647:1\n-1 3:1\n";
    const std::string msg = config_error_of(parse_experiment(
        "[run]\nmax_samples = 100\n[problem]\ndata = \"libsvm\"\npath = \"" + file.string() + "\"\n", "x.toml"));
    CHECK(msg.find("problem.path") != std::string::npos);
    CHECK(msg.find("2147483647") != std::string::npos);
  }
  SUBCASE("run also refuses, before writing anything") {
    ExperimentConfig e = parse_experiment(base + "[batch]\nb = 1073741824\n", "x.toml");
    CHECK_THROWS_AS(run_experiment(e, quiet_options(dir.path / "out")), lgm::ConfigError);
    CHECK_FALSE(fs::exists(dir.path / "out" / "metrics.jsonl"));
  }
}

TEST_CASE("memory: sizes no machine has are rejected without any override") {
  // 10^9 × 10^7 doubles: 80 PB
  const std::string msg = config_error_of(
      parse_experiment("[run]\nmax_samples = 1000\n[problem]\nN = 1000000000\nd = 10000000\n", "x.toml"));
  CHECK(msg.find("problem.N, problem.d") != std::string::npos);
}

TEST_CASE("sim: an allocation failure during a run ends it as failed, with its real counters and whole outputs") {
  TempDir dir;
  RunnerOptions o = quiet_options(dir.path);
  o.on_round = [](const RoundRecord& r) {
    if (r.run == "a" && r.round == 4) throw std::bad_alloc();
  };
  const ExperimentOutcome out = run_experiment(parse_experiment(kTwoRuns, "x.toml"), o);
  CHECK(out.exit_code == kExitRunFailed);
  REQUIRE(out.summary.variants.size() == 2);
  const VariantSummary& a = out.summary.variants[0];
  CHECK(a.status == RunStatus::failed);
  CHECK(a.message.find("out of memory") != std::string::npos);
  CHECK(a.message.find("round") != std::string::npos);
  // the counters are those of the last round recorded, not zeros
  const std::vector<RoundRecord> recs = records_of(dir.path / "metrics.jsonl", "a");
  REQUIRE(recs.size() >= 5);
  CHECK(a.steps > 0);
  CHECK(a.steps == recs.back().step);
  CHECK(a.comm_rounds == recs.back().comm_rounds);
  CHECK(a.samples == recs.back().samples);
  CHECK(out.summary.variants[1].status == RunStatus::completed);
  const nlohmann::json summary = nlohmann::json::parse(std::ifstream(dir.path / "summary.json"));
  CHECK(summary["variants"][0]["status"] == "failed");
  CHECK(summary["variants"][0]["steps"].get<lgm::Index>() == a.steps);
  CHECK(fs::exists(dir.path / "summary.md"));
}

// ---------------------------------------------------------------- item 10: output directory and name

TEST_CASE("sim: --out at a directory holding an earlier run is refused; --overwrite clears lgm-sim's files only") {
  TempDir dir;
  const fs::path out = dir.path / "out";
  RunnerOptions o = quiet_options(out);
  const ExperimentConfig e = parse_experiment(kTwoRuns, "x.toml");
  REQUIRE(run_experiment(e, o).exit_code == kExitOk);
  // an earlier experiment's leftovers: a plot and a data file of a variant this one does not have
  fs::create_directories(out / "plots" / "data");
  std::ofstream(out / "plots" / "test_accuracy_vs_rounds.png") << "old";
  std::ofstream(out / "plots" / "data" / "07_gone.rounds.dat") << "old";
  std::ofstream(out / "notes.txt") << "mine";
  const auto before = fs::last_write_time(out / "metrics.jsonl");

  CHECK_THROWS_WITH_AS(run_experiment(e, o), doctest::Contains("--overwrite"), lgm::ConfigError);
  CHECK(fs::last_write_time(out / "metrics.jsonl") == before);  // nothing was touched
  CHECK(fs::exists(out / "plots" / "test_accuracy_vs_rounds.png"));

  o.overwrite = true;
  CHECK(run_experiment(e, o).exit_code == kExitOk);
  CHECK_FALSE(fs::exists(out / "plots" / "test_accuracy_vs_rounds.png"));
  CHECK_FALSE(fs::exists(out / "plots" / "data" / "07_gone.rounds.dat"));
  CHECK(fs::exists(out / "notes.txt"));  // not lgm-sim's
  CHECK(fs::exists(out / "summary.json"));
  CHECK(read_metrics(out / "metrics.jsonl").size() ==
        records_of(out / "metrics.jsonl", "a").size() + records_of(out / "metrics.jsonl", "b").size());
}

TEST_CASE("sim: a bad configuration with --overwrite leaves the earlier run as it was") {
  TempDir dir;
  RunnerOptions o = quiet_options(dir.path);
  REQUIRE(run_experiment(parse_experiment(kTwoRuns, "x.toml"), o).exit_code == kExitOk);
  o.overwrite = true;
  ExperimentConfig bad = parse_experiment(kTwoRuns, "x.toml");
  bad.runs[1].set("sampler.type", "dirichlet");
  bad.runs[1].set("problem.type", "least_squares");  // no labels: rejected while building
  CHECK_THROWS_AS(run_experiment(bad, o), lgm::ConfigError);
  CHECK(fs::exists(dir.path / "summary.json"));
  CHECK(fs::exists(dir.path / "config.toml"));
}

TEST_CASE("sim: an experiment name must not lead outside the output root") {
  for (const char* name : {"../escape", "a/b", "/abs", "..", ".", "tab\there"}) {
    CAPTURE(name);
    ExperimentConfig e = parse_experiment(kTwoRuns, "x.toml");
    e.name = name;
    CHECK_THROWS_WITH_AS(validate_experiment(e), doctest::Contains("invalid name"), lgm::ConfigError);
  }
  const ExperimentConfig parsed = parse_experiment("name = \"../../tmp/x\"\n[run]\nmax_samples = 100\n", "x.toml");
  CHECK_THROWS_WITH_AS(validate_experiment(parsed), doctest::Contains("runs/<name>"), lgm::ConfigError);
}

// ---------------------------------------------------------------- item 11: grids, signals, divergence

TEST_CASE("sim: a grid with a repeated value is rejected, naming the run") {
  const ExperimentConfig grid = expand_grid(parse_experiment(kTwoRuns, "x.toml"), {"sync.H=2,2"});
  CHECK_THROWS_WITH_AS(validate_experiment(grid), doctest::Contains("a/H=2"), lgm::ConfigError);
  TempDir dir;
  CHECK_THROWS_AS(run_experiment(grid, quiet_options(dir.path / "out")), lgm::ConfigError);
  CHECK_FALSE(fs::exists(dir.path / "out" / "config.toml"));
}

TEST_CASE("sim: the config.toml of a sweep runs again and reproduces its metrics") {
  TempDir a, b;
  const ExperimentConfig grid = expand_grid(parse_experiment(kTwoRuns, "x.toml"), {"sync.H=2,4", "run.seed=1,2"});
  REQUIRE(grid.runs.size() == 8);
  REQUIRE(run_experiment(grid, quiet_options(a.path)).exit_code == kExitOk);
  const ExperimentConfig again = load_experiment(a.path / "config.toml");
  CHECK(again.runs.size() == 8);
  REQUIRE(run_experiment(again, quiet_options(b.path)).exit_code == kExitOk);
  const auto ma = read_metrics(a.path / "metrics.jsonl"), mb = read_metrics(b.path / "metrics.jsonl");
  REQUIRE(ma.size() == mb.size());
  for (size_t i = 0; i < ma.size(); ++i) {
    CHECK(ma[i].run == mb[i].run);
    CHECK(ma[i].loss == mb[i].loss);
  }
}

TEST_CASE("sim: a finite but enormous loss (outer.lr = 1e30) is a divergence, not a completed run") {
  TempDir dir;
  // three rounds: the loss reaches ~1e167 and stays finite to the end (reported "completed" before the fix)
  ExperimentConfig e = parse_experiment(kTwoRuns, "x.toml", {"outer.type=\"sgd\"", "outer.lr=1e30", "sync.H=125"});
  const ExperimentOutcome out = run_experiment(e, quiet_options(dir.path));
  CHECK(out.exit_code == kExitRunFailed);
  REQUIRE(out.summary.variants.size() == 2);
  for (const VariantSummary& v : out.summary.variants) {
    CHECK(v.status == RunStatus::diverged);
    CHECK(v.message.find("diverged") != std::string::npos);
  }
  for (const RoundRecord& r : read_metrics(dir.path / "metrics.jsonl"))
    if (r.loss) CHECK(std::isfinite(*r.loss));  // finite throughout: the driver's own check does not fire
}

TEST_CASE("sim: the interrupt message and exit status name the signal (SIGTERM: 143)") {
  TempDir dir;
  std::atomic<bool> interrupt{false};
  std::atomic<int> signal{0};
  RunnerOptions o = quiet_options(dir.path);
  o.interrupt = &interrupt;
  o.interrupt_signal = &signal;
  o.on_round = [&](const RoundRecord& r) {
    if (r.round == 1) {
      signal = 15;
      interrupt = true;
    }
  };
  const ExperimentOutcome out = run_experiment(parse_experiment(kTwoRuns, "x.toml"), o);
  CHECK(out.exit_code == 128 + 15);
  REQUIRE(!out.summary.variants.empty());
  CHECK(out.summary.variants[0].message.find("SIGTERM") != std::string::npos);
  CHECK(out.summary.interrupted);
}
