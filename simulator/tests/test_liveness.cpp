// Liveness of the configuration (issue 12): every key that `lgm-sim list` shows reaches the code that honours
// it. Each key is run with other values in many small configurations; a run must differ from the
// configuration's own run in its outputs (metrics.jsonl, summary.json), unless a rule of
// lgm::sim::no_effect_rules() says the key has no effect there: then the outputs must be bitwise the same and
// `validate` must say so. A key without a liveness entry here fails the test, so a new key is covered at once.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "build.hpp"
#include "config.hpp"
#include "report.hpp"
#include "runner.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace lgm::sim;

namespace {

using lgm::sim::test::TempDir;

// ---------------------------------------------------------------------------------------------------------
// Tiny data files: two LIBSVM training and test files, two Fashion-MNIST directories (real IDX, few images).

void write_libsvm(const fs::path& file, int samples, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::ofstream out(file);
  for (int i = 0; i < samples; ++i) {
    double x[4];
    for (double& v : x) v = normal(rng);
    out << (x[0] + 0.5 * x[1] + 0.3 * normal(rng) > 0 ? "+1" : "-1");
    for (int j = 0; j < 4; ++j) out << ' ' << j + 1 << ':' << x[j];
    out << '\n';
  }
  REQUIRE(out.good());
}

void put_u32(std::vector<unsigned char>& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>((v >> s) & 0xff));
}

void write_gz(const fs::path& file, const std::vector<unsigned char>& bytes) {
  gzFile f = gzopen(file.string().c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

void write_fashion_split(const fs::path& dir, const std::string& prefix, std::uint32_t n, std::mt19937& rng) {
  std::vector<unsigned char> images, labels;
  put_u32(images, 0x00000803);
  for (std::uint32_t d : {n, 28u, 28u}) put_u32(images, d);
  put_u32(labels, 0x00000801);
  put_u32(labels, n);
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto y = static_cast<unsigned char>(rng() % 3);  // three of the ten classes, told apart by brightness
    labels.push_back(y);
    for (int p = 0; p < 28 * 28; ++p) images.push_back(static_cast<unsigned char>(rng() % 64 + 64 * y));
  }
  write_gz(dir / (prefix + "-images-idx3-ubyte.gz"), images);
  write_gz(dir / (prefix + "-labels-idx1-ubyte.gz"), labels);
}

void write_fashion(const fs::path& dir, std::uint32_t seed) {
  fs::create_directories(dir);
  std::mt19937 rng(seed);
  write_fashion_split(dir, "train", 24, rng);
  write_fashion_split(dir, "t10k", 16, rng);
}

struct DataFiles {
  TempDir dir;
  std::string libsvm_a, libsvm_b, libsvm_test_a, libsvm_test_b, fashion_a, fashion_b, cifar_a, cifar_b, text_a, text_b;
  DataFiles() {
    libsvm_a = (dir.path / "a.svm").string();
    libsvm_b = (dir.path / "b.svm").string();
    libsvm_test_a = (dir.path / "a.t").string();
    libsvm_test_b = (dir.path / "b.t").string();
    fashion_a = (dir.path / "fashion_a").string();
    fashion_b = (dir.path / "fashion_b").string();
    write_libsvm(libsvm_a, 40, 1);
    write_libsvm(libsvm_b, 40, 2);
    write_libsvm(libsvm_test_a, 20, 3);
    write_libsvm(libsvm_test_b, 20, 4);
    write_fashion(fashion_a, 5);
    write_fashion(fashion_b, 6);
    cifar_a = (dir.path / "cifar_a").string();
    cifar_b = (dir.path / "cifar_b").string();
    text_a = (dir.path / "a.txt").string();
    text_b = (dir.path / "b.txt").string();
    lgm::sim::test::write_cifar_dir(cifar_a, 12, 1);
    lgm::sim::test::write_cifar_dir(cifar_b, 12, 2);
    lgm::sim::test::write_text(text_a, 0);
    lgm::sim::test::write_text(text_b, 1);
  }
};

const DataFiles& data_files() {
  static const DataFiles files;
  return files;
}

// ---------------------------------------------------------------------------------------------------------
// The configurations every key is tried in: a tiny template, and contexts that switch on the families.

std::vector<std::string> run_template() {
  return {"run.workers=2", "run.max_steps=24", "run.eval_points=3", "run.threads=1", "problem.N=64", "problem.d=4",
          "problem.lambda=0.001", "optimizer.lr=0.5", "sync.H=4", "sync.alpha=3", "batch.b=4", "batch.b_max=64",
          // real data only where a context asks for it, but never the full Fashion-MNIST of the system
          "problem.path=" + data_files().fashion_a};
}

struct Context {
  std::string name;
  std::vector<std::string> overrides;
};

std::vector<Context> contexts() {
  const DataFiles& f = data_files();
  return {
      {"logistic, local SGD", {}},
      {"least squares, local norm test, heavy ball",
       {"problem.type=least_squares", "optimizer.type=heavy_ball", "optimizer.lr=0.05", "batch.type=norm", "batch.b=2",
        "batch.eta=1"}},
      {"least squares, exact norm test before the draw",
       {"problem.type=least_squares", "optimizer.lr=0.05", "batch.type=norm", "batch.b=2", "batch.eta=1",
        "batch.variance=exact", "batch.apply_at=this_step", "batch.harmonize=none"}},
      {"minibatch SGD (every_step), nesterov, local norm test",
       {"sync.type=every_step", "optimizer.type=nesterov", "optimizer.lr=0.1", "batch.type=norm", "batch.b=2",
        "batch.eta=0.3"}},
      {"hierarchical, adamw, outer nesterov, 4 workers",
       {"run.workers=4", "sync.type=hierarchical", "sync.group_size=2", "sync.global_every=2", "sync.H=2",
        "optimizer.type=adamw", "optimizer.lr=0.05", "outer.type=nesterov"}},
      {"qsr, cosine schedule, global inner-product test",
       {"run.max_steps=40", "sync.type=qsr", "sync.alpha=1", "sync.warmup=0.25", "schedule.type=warmup_cosine",
        "schedule.min_lr=0.01", "batch.type=inner_product", "batch.scope=global", "batch.b=2", "batch.theta=0.5"}},
      {"post-local, step decay, augmented test with micro-batch means",
       {"sync.type=post_local", "sync.switch_at=0.25", "schedule.type=step_decay", "schedule.decay_every=0.3",
        "batch.type=augmented_inner_product", "batch.estimator=micro_batch_means", "batch.micro_batches=2",
        "batch.b_min=4", "batch.b=4", "batch.theta=2", "batch.nu=2"}},
      {"linear sync, cross-worker norm test, custom network, a straggler, 3 workers",
       {"run.workers=3", "run.max_steps=40", "sync.type=linear", "sync.alpha=1.5", "schedule.type=warmup_linear",
        "batch.type=norm", "batch.estimator=cross_worker", "batch.b=2", "batch.eta=1", "network.preset=custom",
        "network.latency_s=1e-4", "compute.stragglers=1"}},
      {"quadratic, shuffled sampler, budget in samples, outer sgd",
       {"problem.type=quadratic", "sampler.type=shuffled", "run.max_steps=0", "run.max_samples=200", "optimizer.lr=0.3",
        "outer.type=sgd", "outer.lr=0.5"}},
      {"nonconvex logistic, sharded sampler, every round evaluated, per-worker slowdown",
       {"problem.type=nonconvex_logistic", "sampler.type=sharded", "run.eval_every_round=true",
        "compute.slowdown=[1, 2]"}},
      {"softmax, dirichlet sampler, norm test harmonized by the mean and applied at the next step",
       {"problem.type=softmax", "problem.classes=3", "sampler.type=dirichlet", "batch.type=norm", "batch.b=2",
        "batch.eta=1", "batch.harmonize=mean", "batch.apply_at=next_step"}},
      {"mlp on synthetic data", {"problem.type=mlp", "problem.classes=3", "problem.hidden=4", "optimizer.lr=0.2"}},
      {"logistic on LIBSVM files with a test file",
       {"problem.data=libsvm", "problem.path=" + f.libsvm_a, "problem.test_path=" + f.libsvm_test_a}},
      {"softmax on Fashion-MNIST files", {"problem.type=softmax", "problem.data=fashion_mnist"}},
      {"resnet on CIFAR-10 files, heavy ball",
       {"problem.type=resnet", "problem.data=cifar10", "problem.path=" + f.cifar_a, "problem.depth=8",
        "problem.width=2", "problem.eval_samples=12", "run.max_steps=6", "run.eval_points=1", "batch.b=10",
        "optimizer.type=heavy_ball", "optimizer.lr=0.05", "sync.H=2"}},
      {"gpt on a text file, adamw with weight decay",
       {"problem.type=gpt", "problem.data=text", "problem.path=" + f.text_a, "problem.layers=1", "problem.width=16",
        "problem.context=8", "problem.eval_samples=4", "run.max_steps=6", "run.eval_points=1", "batch.b=10",
        "optimizer.type=adamw", "optimizer.lr=0.01", "optimizer.weight_decay=0.1", "sync.H=2"}},
  };
}

// Other values to try for every key (for a choice key: all its values). A value equal to the context's is
// skipped, a value the context rejects (ConfigError, DataError) too.
std::map<std::string, std::vector<std::string>> candidates() {
  const DataFiles& f = data_files();
  std::map<std::string, std::vector<std::string>> c = {
      {"run.seed", {"2"}},
      {"run.workers", {"3"}},
      {"run.threads", {"2"}},
      {"run.max_samples", {"100"}},
      {"run.max_steps", {"12"}},
      {"run.eval_points", {"1"}},
      {"run.eval_every_round", {"true", "false"}},
      {"run.save_model", {"true"}},
      {"problem.path", {f.fashion_b, f.libsvm_b, f.cifar_b, f.text_b}},
      {"problem.test_path", {f.libsvm_test_b}},
      {"problem.train_limit", {"20"}},
      {"problem.test_limit", {"10"}},
      {"problem.bias", {"true"}},
      {"problem.N", {"48"}},
      {"problem.d", {"3"}},
      {"problem.classes", {"4"}},
      {"problem.hidden", {"3"}},
      {"problem.lambda", {"0.05"}},
      {"problem.mu", {"0.3"}},
      {"problem.L", {"2"}},
      {"problem.condition", {"10"}},
      {"problem.rank", {"2"}},
      {"problem.noise", {"0.5"}},
      {"problem.signal", {"4"}},
      {"problem.separation", {"4"}},
      {"problem.seed", {"5"}},
      {"problem.depth", {"14"}},
      {"problem.width", {"4"}},
      {"problem.layers", {"2"}},
      {"problem.heads", {"4"}},
      {"problem.context", {"16"}},
      {"problem.augment", {"true"}},
      {"problem.val_fraction", {"0.3"}},
      {"problem.eval_samples", {"6"}},
      {"problem.decay_all", {"true"}},
      {"optimizer.lr", {"0.2"}},
      {"optimizer.momentum", {"0.5"}},
      {"optimizer.weight_decay", {"0.1"}},
      {"optimizer.beta1", {"0.5"}},
      {"optimizer.beta2", {"0.9"}},
      {"optimizer.eps", {"0.1"}},
      {"optimizer.average_state", {"true"}},
      {"schedule.warmup", {"0.5"}},
      {"schedule.min_lr", {"0.05"}},
      {"schedule.decay_factor", {"0.5"}},
      {"schedule.decay_every", {"0.5"}},
      {"sync.H", {"2"}},
      {"sync.switch_at", {"0.5"}},
      {"sync.alpha", {"4", "1"}},
      {"sync.warmup", {"0.5"}},
      {"sync.global_every", {"3"}},
      {"sync.group_size", {"1"}},
      {"batch.b", {"16"}},  // with this_step, a smaller b than the first test asks for is never drawn
      {"batch.b_min", {"3"}},
      {"batch.b_max", {"4"}},
      {"batch.eta", {"0.1"}},
      {"batch.theta", {"0.1"}},
      {"batch.nu", {"0.3"}},
      {"batch.micro_batches", {"3"}},
      {"batch.test_interval", {"2"}},
      {"batch.eta_is_global_target", {"true"}},
      {"sampler.concentration", {"5"}},
      {"outer.lr", {"0.3"}},
      {"outer.momentum", {"0.5"}},
      {"network.latency_s", {"0.001"}},
      {"network.bandwidth_gbps", {"1"}},
      {"network.element_bytes", {"8"}},
      {"compute.seconds_per_sample", {"1e-5"}},
      {"compute.seconds_per_step", {"1e-4"}},
      {"compute.measure", {"true"}},
      {"compute.stragglers", {"1"}},
      {"compute.straggler_factor", {"3"}},
      {"compute.slowdown", {"[1, 3]"}},
      {"checkpoint.every_steps", {"4"}},
      {"checkpoint.every_seconds", {"0.001"}},
  };
  for (const KeySpec& spec : schema())
    if (!spec.choices.empty()) c[spec.key] = spec.choices;
  return c;
}

// Keys that never change a run's outputs, by design; each is checked for its own effect below.
const std::set<std::string> kNeverLive = {
    "run.threads",     // speed only: results never depend on the thread count
    "batch.b_min",     // a bound on batch.b and batch.micro_batches (adaptive sizes start at batch.b, never shrink)
    "problem.device",  // cuda needs a GPU; without one it is refused (test_sim_networks.cpp)
    "checkpoint.every_steps",    // writes checkpoint.bin, never changes a run (resume_test.sh)
    "checkpoint.every_seconds",  // the same, by wall time
    "run.save_model",            // writes model_*.npy, never changes a run (test_sim_outputs.cpp)
};

// Keys tried in the first context that accepts them only: compute.measure times gradients for 0.1 s per run,
// whatever the context.
const std::set<std::string> kOnce = {"compute.measure"};

// ---------------------------------------------------------------------------------------------------------
// Running a configuration.

/// What a run leaves that can be compared: every metrics line and the summary, without the wall times.
struct Outputs {
  std::vector<std::string> records;
  std::string summary;
  bool operator==(const Outputs&) const = default;
};

struct Attempt {
  std::optional<ExperimentConfig> experiment;  ///< empty when the configuration was rejected
  std::optional<Outputs> outputs;
  std::string rejection;
};

Attempt run_config(const std::vector<std::string>& overrides) {
  Attempt a;
  static std::ostringstream sink;
  TempDir out;
  RunnerOptions o;
  o.out_dir = out.path / "out";
  o.quiet = true;
  o.plots = false;
  o.log = &sink;
  o.table = &sink;
  std::vector<RoundRecord> records;
  o.on_round = [&](const RoundRecord& r) { records.push_back(r); };
  try {
    a.experiment = parse_experiment("", "live.toml", overrides);
    const ExperimentOutcome outcome = run_experiment(*a.experiment, o);
    Outputs out_;
    for (const RoundRecord& r : records) {
      nlohmann::ordered_json j = to_json(r);
      j.erase("wall_time_s");
      out_.records.push_back(j.dump());
    }
    REQUIRE(outcome.summary.variants.size() == 1);
    nlohmann::ordered_json s = to_json(outcome.summary.variants[0]);
    s.erase("wall_time_s");
    out_.summary = s.dump();
    a.outputs = std::move(out_);
  } catch (const lgm::ConfigError& e) {
    a.experiment.reset();
    a.rejection = e.what();
  } catch (const lgm::DataError& e) {
    a.experiment.reset();
    a.rejection = e.what();
  }
  return a;
}

std::vector<std::string> with(std::vector<std::string> base, const std::vector<std::string>& more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

/// The context's value of `key`, as text comparable with a candidate (TOML without the quotes of strings).
std::string value_text(const RunConfig& rc, const KeySpec& spec) {
  switch (spec.type) {
    case KeyType::integer:
      return std::to_string(rc.integer(spec.key));
    case KeyType::number: {
      std::ostringstream os;
      os.precision(17);
      os << rc.number(spec.key);
      return os.str();
    }
    case KeyType::text:
      return rc.text(spec.key);
    case KeyType::boolean:
      return rc.flag(spec.key) ? "true" : "false";
    case KeyType::numbers: {
      std::string s = "[";
      for (double v : rc.numbers(spec.key)) s += (s.size() > 1 ? ", " : "") + std::to_string(v);
      return s + "]";
    }
  }
  return "";
}

/// The candidate as the config parses it, rendered like value_text.
std::string candidate_text(const KeySpec& spec, const std::string& value) {
  RunConfig rc;
  rc.set(spec.key, value);
  return value_text(rc, spec);
}

/// Why the runs `a` and `b`, which differ in `spec` only, must have the same outputs; nullopt when they must not:
/// a rule about the key applies to both, or a rule about one value says that it runs as the other.
std::optional<std::string> same_run_reason(const RunConfig& a, const RunConfig& b, const KeySpec& spec) {
  const std::optional<NoEffect> na = no_effect(a, spec.key), nb = no_effect(b, spec.key);
  if (na && nb && !na->same_as && !nb->same_as) return nb->reason;
  if (na && na->same_as && *na->same_as == value_text(b, spec)) return na->reason;
  if (nb && nb->same_as && *nb->same_as == value_text(a, spec)) return nb->reason;
  return std::nullopt;
}

bool contains(const std::vector<std::string>& xs, const std::string& x) {
  return std::find(xs.begin(), xs.end(), x) != xs.end();
}

}  // namespace

TEST_CASE("liveness: every key changes the outputs, except where a documented rule says it has no effect") {
  const auto all = candidates();
  // every key has an entry, and every entry is a key
  for (const KeySpec& spec : schema())
    if (!all.count(spec.key)) FAIL_CHECK("key " << spec.key << " has no liveness entry in test_liveness.cpp");
  for (const auto& [key, values] : all) CHECK_MESSAGE(find_key(key) != nullptr, key << " is not in the schema");

  std::map<std::string, int> live_in;  // key -> contexts (and values) where it changed the outputs
  std::set<std::string> tried;         // key=value run (and not rejected) in some context
  int runs = 0, rejected = 0, inert = 0;
  for (const Context& ctx : contexts()) {
    const std::vector<std::string> base_overrides = with(run_template(), ctx.overrides);
    const Attempt base = run_config(base_overrides);
    REQUIRE_MESSAGE(base.outputs.has_value(), "context '" << ctx.name << "' is rejected: " << base.rejection);
    const RunConfig& base_cfg = base.experiment->runs.at(0);
    for (const KeySpec& spec : schema()) {
      const auto it = all.find(spec.key);
      if (it == all.end()) continue;
      for (const std::string& value : it->second) {
        if (candidate_text(spec, value) == value_text(base_cfg, spec)) continue;
        if (kOnce.count(spec.key) && tried.count(spec.key + "=" + value)) continue;
        const std::string what = spec.key + " = " + value + " in context '" + ctx.name + "'";
        const Attempt alt = run_config(with(base_overrides, {spec.key + "=" + value}));
        ++runs;
        if (!alt.outputs) {
          ++rejected;
          continue;
        }
        tried.insert(spec.key + "=" + value);
        const RunConfig& cfg = alt.experiment->runs.at(0);
        const std::optional<NoEffect> none = no_effect(cfg, spec.key);
        if (none)
          CHECK_MESSAGE(contains(no_effect_notes(*alt.experiment), "note: " + none->reason), what << ": no note");
        const std::optional<std::string> reason = same_run_reason(base_cfg, cfg, spec);
        const bool same = *alt.outputs == *base.outputs;
        if (kNeverLive.count(spec.key)) {
          CHECK_MESSAGE(same, what << ": changed the outputs, but " << spec.key << " must never change them");
        } else if (reason) {
          ++inert;
          CHECK_MESSAGE(same, what << ": changed the outputs, but the rule says: " << *reason);
        } else {
          CHECK_MESSAGE(!same, what << ": the outputs are bitwise those of the context's own run (a dead key, or a "
                                       "missing rule in no_effect_rules())");
          if (!same) ++live_in[spec.key];
        }
      }
    }
  }
  for (const KeySpec& spec : schema())
    if (!kNeverLive.count(spec.key))
      CHECK_MESSAGE(live_in[spec.key] > 0, spec.key << " changed the outputs in no context");
  MESSAGE(runs << " runs, " << rejected << " rejected, " << inert << " with a documented no-effect rule");
}

TEST_CASE("liveness: keys that never change the outputs still do what they say") {
  const std::vector<std::string> base = run_template();
  SUBCASE("run.threads reaches the driver (the outputs do not depend on it: checked above)") {
    const ExperimentConfig e = parse_experiment("", "live.toml", with(base, {"run.threads=3"}));
    const auto problem = build_problem(e.runs[0]);
    CHECK(build_method(e.runs[0], *problem).options().threads == 3);
  }
  SUBCASE("batch.b_min bounds batch.b and batch.micro_batches of adaptive rules") {
    CHECK_THROWS_WITH_AS(parse_experiment("", "live.toml", with(base, {"batch.type=norm", "batch.b_min=8"})),
                         doctest::Contains("batch.b"), lgm::ConfigError);
    const ExperimentConfig e = parse_experiment(
        "", "live.toml",
        with(base, {"batch.type=norm", "batch.b_min=2", "batch.estimator=micro_batch_means", "batch.micro_batches=3"}));
    CHECK_THROWS_WITH_AS(validate_experiment(e), doctest::Contains("batch.micro_batches"), lgm::ConfigError);
  }
}

TEST_CASE("liveness: validate notes every given key that has no effect, and only those") {
  const ExperimentConfig e = parse_experiment(R"(
[run]
max_steps = 10
[batch]
eta = 0.5
b = 16
[outer]
momentum = 0.5
[[variant]]
name = "constant"
[[variant]]
name = "norm"
batch.type = "norm"
)",
                                              "notes.toml");
  const std::vector<std::string> notes = no_effect_notes(e);
  // batch.eta = its default is still noted: the user set it and it does nothing
  CHECK(contains(notes, "note: batch.eta has no effect with batch.type = \"constant\" (variant \"constant\")"));
  CHECK(contains(notes, "note: outer.momentum has no effect with outer.type = \"average\" (variant \"constant\")"));
  CHECK(contains(notes, "note: outer.momentum has no effect with outer.type = \"average\" (variant \"norm\")"));
  CHECK(notes.size() == 3);  // batch.b is live in both; batch.eta is live with the norm test
  // a key left at its default is not noted even where it has no effect
  for (const std::string& n : notes) CHECK(n.find("batch.theta") == std::string::npos);

  // and the binary prints them after "valid"
  TempDir dir;
  const fs::path file = dir.path / "notes.toml";
  std::ofstream(file) << "[run]\nmax_steps = 10\n[problem]\nN = 50\nd = 3\n[batch]\neta = 0.8\n";
  const std::string cmd = std::string(LGM_SIM_EXE) + " validate " + file.string() + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, pipe)) out += buf;
  CHECK(pclose(pipe) == 0);
  CHECK(out.find("valid, 1 run(s)") != std::string::npos);
  CHECK(out.find("note: batch.eta has no effect with batch.type = \"constant\"\n") != std::string::npos);
}

TEST_CASE("liveness: batch.apply_at = this_step sizes each step before its draw, and grows the batch") {
  // least squares N = 300, d = 4, M = 2, lr 0.05, norm test b = b_min = 2, b_max = 256, η = 0.2, exact variance
  const std::vector<std::string> base = {
      "run.workers=2",       "run.max_steps=200", "run.threads=1",     "problem.type=least_squares",
      "problem.N=300",       "problem.d=4",       "optimizer.lr=0.05", "batch.type=norm",
      "batch.b=2",           "batch.b_min=2",     "batch.b_max=256",   "batch.eta=0.2",
      "batch.variance=exact"};
  auto final_batches = [&](const std::string& apply_at, std::vector<std::string>* records) {
    const Attempt a = run_config(with(base, {"batch.apply_at=" + apply_at}));
    REQUIRE(a.outputs.has_value());
    *records = a.outputs->records;
    return nlohmann::json::parse(a.outputs->summary);
  };
  std::vector<std::string> next_records, this_records;
  const nlohmann::json next = final_batches("next_step", &next_records);
  const nlohmann::json now = final_batches("this_step", &this_records);
  CHECK(next["batch_max"].get<lgm::Index>() > 2);
  CHECK(now["batch_max"].get<lgm::Index>() > 2);  // the run-time rule forwards before_gradients to the library
  CHECK(now["samples"].get<lgm::Index>() != next["samples"].get<lgm::Index>());
  CHECK(this_records != next_records);
}
