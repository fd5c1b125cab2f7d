// End-to-end tests of lgm-sim's runner: outputs, bitwise reproducibility from the written config.toml, NaN and
// SIGINT behaviour, errors before any run starts.
#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>

#include "build.hpp"
#include "config.hpp"
#include "report.hpp"
#include "runner.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace lgm::sim;

namespace {

using lgm::sim::test::TempDir;

const char* kSmall = R"(
name = "small"
[run]
seed = 3
workers = 4
threads = 2
max_samples = 40000
eval_points = 5
[problem]
type = "logistic"
N = 2000
d = 10
lambda = 1e-3
[optimizer]
lr = 0.5
[sync]
H = 4
[batch]
b = 16
b_min = 4
b_max = 256
[compute]
stragglers = 1
straggler_factor = 3.0
[[variant]]
name = "minibatch"
sync.type = "every_step"
[[variant]]
name = "local norm"
batch.type = "norm"
batch.b = 4
batch.eta = 0.8
[[variant]]
name = "hierarchical"
sync.type = "hierarchical"
sync.group_size = 2
sync.global_every = 3
)";

using lgm::sim::test::quiet_options;

std::vector<std::string> lines_of(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// metrics.jsonl without the one non-reproducible field.
std::vector<nlohmann::json> reproducible_metrics(const fs::path& file) {
  std::vector<nlohmann::json> out;
  for (const std::string& line : lines_of(file)) {
    nlohmann::json j = nlohmann::json::parse(line);
    j.erase("wall_time_s");
    out.push_back(j);
  }
  return out;
}

}  // namespace

TEST_CASE("sim: a run writes config.toml, metrics.jsonl, summary.json and summary.md") {
  TempDir dir;
  const ExperimentOutcome out = run_experiment(parse_experiment(kSmall, "small.toml"), quiet_options(dir.path));
  CHECK(out.exit_code == kExitOk);
  for (const char* f : {"config.toml", "metrics.jsonl", "summary.json", "summary.md"}) CHECK(fs::exists(dir.path / f));
  REQUIRE(out.summary.variants.size() == 3);
  for (const VariantSummary& v : out.summary.variants) {
    CHECK(v.status == RunStatus::completed);
    CHECK(v.samples >= 40000);
    REQUIRE(v.subopt.has_value());  // logistic with λ > 0: F* is known
    CHECK(*v.subopt >= -1e-12);
    CHECK(v.sim_time_10g_s > v.sim_time_100g_s);  // same compute, slower network
  }
  // the norm test grew the batches; minibatch SGD syncs every step
  CHECK(out.summary.variants[1].batch_max > 4);
  CHECK(out.summary.variants[0].comm_rounds == out.summary.variants[0].steps);

  // every line is a JSON object with the schema's keys; the last line of each run is evaluated
  const std::vector<RoundRecord> records = read_metrics(dir.path / "metrics.jsonl");
  REQUIRE(!records.empty());
  std::map<std::string, RoundRecord> last;
  for (const RoundRecord& r : records) last[r.run] = r;
  CHECK(last.size() == 3);
  for (const auto& [name, r] : last) {
    CHECK(r.loss.has_value());
    CHECK(r.grad_norm_sq.has_value());
  }
  for (const std::string& line : lines_of(dir.path / "metrics.jsonl")) {
    const nlohmann::json j = nlohmann::json::parse(line);
    for (const char* key : {"run", "round", "step", "samples", "comm_rounds", "bytes", "sim_time_s", "wall_time_s",
                            "lr", "H", "batch_min", "batch_mean", "batch_max", "loss", "grad_norm_sq", "subopt"})
      CHECK_MESSAGE(j.contains(key), key);
  }
  // stragglers: the simulated compute waits for the slowest worker (factor 3)
  const nlohmann::json summary = nlohmann::json::parse(std::ifstream(dir.path / "summary.json"));
  CHECK(summary.dump().find("hierarchical") != std::string::npos);
}

TEST_CASE("sim: re-running the written config.toml reproduces the metrics bitwise") {
  TempDir a, b;
  ExperimentConfig first = parse_experiment(kSmall, "small.toml", {"compute.measure=true", "run.threads=1"});
  run_experiment(first, quiet_options(a.path));
  // the measured compute cost is resolved into the written file; threads differ and must not matter
  ExperimentConfig again = load_experiment(a.path / "config.toml", {"run.threads=2"});
  CHECK(again.runs.size() == 3);
  CHECK_FALSE(again.runs[0].flag("compute.measure"));
  run_experiment(again, quiet_options(b.path));
  const auto ma = reproducible_metrics(a.path / "metrics.jsonl");
  const auto mb = reproducible_metrics(b.path / "metrics.jsonl");
  REQUIRE(ma.size() == mb.size());
  for (size_t i = 0; i < ma.size(); ++i) CHECK(ma[i].dump() == mb[i].dump());
}

TEST_CASE("sim: a diverging run stops naming the round, its metrics stay valid JSON, the others continue") {
  TempDir dir;
  const ExperimentConfig e = parse_experiment(R"(
name = "nan"
[run]
workers = 2
max_samples = 20000
[problem]
type = "least_squares"
N = 500
d = 5
condition = 10
[optimizer]
lr = 0.05
[[variant]]
name = "too large lr"
optimizer.lr = 1e6
[[variant]]
name = "fine"
)",
                                              "nan.toml");
  const ExperimentOutcome out = run_experiment(e, quiet_options(dir.path));
  CHECK(out.exit_code == kExitRunFailed);
  REQUIRE(out.summary.variants.size() == 2);
  CHECK(out.summary.variants[0].status == RunStatus::diverged);
  CHECK(out.summary.variants[0].message.find("round") != std::string::npos);
  CHECK(out.summary.variants[1].status == RunStatus::completed);
  for (const std::string& line : lines_of(dir.path / "metrics.jsonl")) CHECK(nlohmann::json::accept(line));
  CHECK(fs::exists(dir.path / "summary.md"));
}

TEST_CASE("sim: an interrupt ends the current round, writes the summary of what ran and exits 130") {
  TempDir dir;
  std::atomic<bool> interrupt{false};
  RunnerOptions o = quiet_options(dir.path);
  o.interrupt = &interrupt;
  lgm::Index seen = 0;
  o.on_round = [&](const RoundRecord& r) {
    if (r.round == 2) interrupt = true;  // as if SIGINT arrived during round 3
    seen = r.round;
  };
  const ExperimentOutcome out = run_experiment(parse_experiment(kSmall, "small.toml"), o);
  CHECK(out.exit_code == kExitInterrupted);
  CHECK(out.summary.interrupted);
  REQUIRE(out.summary.variants.size() == 1);  // the later variants never started
  CHECK(out.summary.variants[0].status == RunStatus::interrupted);
  CHECK(seen == 3);  // the round in progress when the flag was seen at round 2's sync, i.e. the next sync
  CHECK(fs::exists(dir.path / "summary.json"));
  const std::vector<RoundRecord> records = read_metrics(dir.path / "metrics.jsonl");
  REQUIRE(!records.empty());
  CHECK(records.back().loss.has_value());  // the last round written is evaluated
}

TEST_CASE("sim: bad input is reported before any run starts") {
  TempDir dir;
  SUBCASE("missing data directory names the file") {
    ExperimentConfig e = parse_experiment(
        "[run]\nmax_samples = 100\n[problem]\ntype = \"softmax\"\ndata = \"fashion_mnist\"\npath = \"" +
            (dir.path / "nowhere").string() + "\"\n",
        "x.toml");
    try {
      validate_experiment(e);
      FAIL("expected DataError");
    } catch (const lgm::DataError& err) {
      CHECK(std::string(err.what()).find("nowhere") != std::string::npos);
    }
    CHECK_FALSE(fs::exists(dir.path / "out" / "metrics.jsonl"));
  }
  SUBCASE("a library range check names the config key") {
    ExperimentConfig e = parse_experiment(
        "[run]\nmax_samples = 100\nworkers = 4\n[batch]\ntype = \"norm\"\nb = 8\n"
        "estimator = \"micro_batch_means\"\nmicro_batches = 16\nb_min = 8\n",
        "x.toml");
    CHECK_THROWS_WITH_AS(validate_experiment(e), doctest::Contains("batch.micro_batches"), lgm::ConfigError);
  }
  SUBCASE("dirichlet needs labels") {
    ExperimentConfig e = parse_experiment(
        "[run]\nmax_samples = 100\n[problem]\ntype = \"least_squares\"\nN = 50\nd = 3\n[sampler]\ntype = "
        "\"dirichlet\"\n",
        "x.toml");
    CHECK_THROWS_WITH_AS(validate_experiment(e), doctest::Contains("sampler.type"), lgm::ConfigError);
  }
}

TEST_CASE("sim: the built-in demo configuration parses and names the variants the demo must compare") {
  std::ifstream in(fs::path(LGM_SIM_SOURCE_DIR) / "configs" / "demo.toml");
  std::stringstream text;
  text << in.rdbuf();
  const ExperimentConfig e = parse_experiment(text.str(), "demo.toml");
  CHECK(e.runs.size() >= 11);
  int every_step = 0, qsr = 0, post_local = 0, global_norm = 0, local_norm = 0, shb = 0;
  for (const RunConfig& r : e.runs) {
    every_step += r.text("sync.type") == "every_step";
    qsr += r.text("sync.type") == "qsr";
    post_local += r.text("sync.type") == "post_local";
    global_norm += r.text("batch.type") == "norm" && r.text("batch.scope") == "global";
    local_norm += r.text("batch.type") == "norm" && r.text("batch.scope") == "local";
    shb += r.text("optimizer.type") == "heavy_ball";
    CHECK(r.text("problem.data") == "fashion_mnist");
    CHECK(r.integer("run.workers") == 8);
  }
  CHECK(every_step == 1);
  CHECK(qsr == 1);
  CHECK(post_local == 1);
  CHECK(global_norm == 1);
  CHECK(local_norm >= 3);
  CHECK(shb >= 3);
}

TEST_CASE(
    "sim: batch.apply_at = this_step is accepted only with exact variance (its effect: test_liveness, test_policies)") {
  const std::string base =
      "[run]\nworkers = 2\nmax_samples = 5000\n[problem]\ntype = \"least_squares\"\nN = 300\nd = 4\n"
      "[batch]\ntype = \"norm\"\nb = 2\napply_at = \"this_step\"\n";
  CHECK_NOTHROW(validate_experiment(parse_experiment(base + "variance = \"exact\"\n", "x.toml")));
  CHECK_THROWS_WITH_AS(validate_experiment(parse_experiment(base, "x.toml")), doctest::Contains("batch.apply_at"),
                       lgm::ConfigError);
}

TEST_CASE("sim: run.save_model writes each run's final averaged model as .npy, and F there is the summary's loss") {
  TempDir dir;
  const ExperimentConfig experiment = parse_experiment(kSmall, "small.toml", {"run.save_model=true"});
  const ExperimentOutcome out = run_experiment(experiment, quiet_options(dir.path));
  REQUIRE(out.exit_code == kExitOk);
  const auto problem = build_problem(experiment.runs[0]);
  for (size_t k = 0; k < out.summary.variants.size(); ++k) {
    const VariantSummary& v = out.summary.variants[k];
    const fs::path file = dir.path / model_file_name(static_cast<lgm::Index>(k), v.name);
    REQUIRE_MESSAGE(fs::exists(file), file.string());
    // the .npy layout read back by hand: magic, version 1.0, a little-endian header length, the header, the data
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(bytes.size() > 10);
    CHECK(bytes.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
    const std::size_t header_len = static_cast<unsigned char>(bytes[8]) + 256u * static_cast<unsigned char>(bytes[9]);
    CHECK((10 + header_len) % 64 == 0);
    const std::string header = bytes.substr(10, header_len);
    CHECK(header.find("'descr': '<f8'") != std::string::npos);
    CHECK(header.find("'shape': (10,)") != std::string::npos);
    CHECK(header.back() == '\n');
    REQUIRE(bytes.size() == 10 + header_len + 10 * sizeof(double));
    lgm::Vector x(10);
    std::memcpy(x.data(), bytes.data() + 10 + header_len, 10 * sizeof(double));
    const double f = with_objective(*problem->train, [&](const auto& obj) { return lgm::full_loss(obj, x); });
    REQUIRE(v.loss.has_value());
    CHECK(f == doctest::Approx(*v.loss).epsilon(1e-12));
  }
  CHECK(model_file_name(3, "a b/c") == "model_3_a_b_c.npy");
  // --overwrite removes them with the other outputs of the earlier run
  RunnerOptions again = quiet_options(dir.path);
  again.overwrite = true;
  run_experiment(parse_experiment(kSmall, "small.toml"), again);
  CHECK_FALSE(fs::exists(dir.path / model_file_name(0, out.summary.variants[0].name)));
}
