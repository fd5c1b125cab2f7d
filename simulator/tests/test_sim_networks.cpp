// lgm-sim's network problems (docs/simulator.md §Networks): a tiny ResNet on a generated CIFAR-10 directory and a
// tiny GPT on a generated text file run through the same runner and outputs as the convex problems, bitwise the
// same for 1 and 2 threads; bad keys are refused before any run, naming the key.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config.hpp"
#include "report.hpp"
#include "runner.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace lgm::sim;
using lgm::sim::test::quiet_options;
using lgm::sim::test::TempDir;
using lgm::sim::test::write_cifar_dir;
using lgm::sim::test::write_text;

namespace {

std::vector<nlohmann::json> metrics_without_wall_time(const fs::path& file) {
  std::ifstream in(file);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    j.erase("wall_time_s");
    out.push_back(j);
  }
  return out;
}

std::string resnet_config(const fs::path& cifar) {
  return R"(
name = "resnet"
[run]
seed = 2
workers = 2
max_steps = 8
eval_points = 2
[problem]
type = "resnet"
data = "cifar10"
path = ")" +
         cifar.string() +
         R"("
depth = 8
width = 2
augment = true
eval_samples = 40
[optimizer]
type = "heavy_ball"
lr = 0.05
[sync]
H = 2
[batch]
b = 8
[[variant]]
name = "local SHB"
[[variant]]
name = "norm test"
batch.type = "norm"
batch.b = 4
batch.b_min = 4
batch.b_max = 16
batch.estimator = "micro_batch_means"
batch.micro_batches = 2
batch.eta = 0.2
)";
}

std::string gpt_config(const fs::path& text) {
  return R"(
name = "gpt"
[run]
seed = 2
workers = 2
max_steps = 6
eval_points = 2
[problem]
type = "gpt"
data = "text"
path = ")" +
         text.string() +
         R"("
layers = 1
heads = 2
width = 16
context = 16
eval_samples = 8
[optimizer]
type = "adamw"
lr = 0.01
weight_decay = 0.1
[sync]
H = 3
[batch]
b = 4
)";
}

}  // namespace

TEST_CASE("sim networks: a ResNet on CIFAR-10 files runs through the runner, bitwise the same for 1 and 2 threads") {
  TempDir dir;
  write_cifar_dir(dir.path / "cifar", 20);
  std::vector<std::vector<nlohmann::json>> runs;
  for (const char* threads : {"run.threads=1", "run.threads=2"}) {
    const fs::path out = dir.path / threads;
    const ExperimentOutcome o =
        run_experiment(parse_experiment(resnet_config(dir.path / "cifar"), "r.toml", {threads}), quiet_options(out));
    CHECK(o.exit_code == kExitOk);
    REQUIRE(o.summary.variants.size() == 2);
    for (const VariantSummary& v : o.summary.variants) {
      CHECK(v.status == RunStatus::completed);
      CHECK(v.steps == 8);
      REQUIRE(v.test_accuracy.has_value());
      CHECK(*v.test_accuracy >= 0.0);
      REQUIRE(v.loss.has_value());
      CHECK(std::isfinite(*v.loss));
    }
    runs.push_back(metrics_without_wall_time(out / "metrics.jsonl"));
  }
  REQUIRE(runs[0].size() == runs[1].size());
  for (size_t i = 0; i < runs[0].size(); ++i) CHECK(runs[0][i].dump() == runs[1][i].dump());
}

TEST_CASE("sim networks: a GPT on a text file runs, evaluating training and validation loss") {
  TempDir dir;
  write_text(dir.path / "t.txt");
  const ExperimentOutcome o =
      run_experiment(parse_experiment(gpt_config(dir.path / "t.txt"), "g.toml"), quiet_options(dir.path / "out"));
  CHECK(o.exit_code == kExitOk);
  REQUIRE(o.summary.variants.size() == 1);
  const VariantSummary& v = o.summary.variants[0];
  CHECK(v.status == RunStatus::completed);
  CHECK(v.comm_rounds == 2);
  REQUIRE(v.loss.has_value());
  REQUIRE(v.test_loss.has_value());
  CHECK(*v.test_loss > 0.0);
  CHECK(*v.test_loss < 6.0);  // ln 256 = 5.55 at the start; a diverged model would exceed it
}

TEST_CASE("sim networks: bad keys are refused before any run, naming the key") {
  TempDir dir;
  write_text(dir.path / "t.txt");
  const std::string gpt = gpt_config(dir.path / "t.txt");
  auto refused = [&](const std::string& text, std::vector<std::string> sets, const char* key) {
    CHECK_THROWS_WITH_AS(validate_experiment(parse_experiment(text, "x.toml", sets)), doctest::Contains(key),
                         lgm::ConfigError);
  };
  refused(gpt, {"problem.heads=3"}, "problem.heads");
  refused(gpt, {"problem.data=\"synthetic\""}, "problem.data");
  refused(gpt, {"problem.device=\"cuda\""}, "problem.device");
  refused(gpt, {"batch.type=\"norm\"", "batch.estimator=\"per_sample\""}, "batch.estimator");
  refused(gpt, {"problem.path=\"\""}, "problem.path");
  const std::string resnet = resnet_config(dir.path / "nowhere");
  refused(resnet, {"problem.depth=10"}, "problem.depth");
  refused(resnet, {"problem.data=\"fortunes\""}, "problem.data");
  refused(resnet, {"problem.type=\"softmax\""}, "problem.data");                             // cifar10 is the ResNet's
  CHECK_THROWS_AS(validate_experiment(parse_experiment(resnet, "x.toml")), lgm::DataError);  // no such directory
}

TEST_CASE("sim networks: problem.device = cuda goes to lgm-sim-cuda or is refused before the run, saying why") {
  TempDir dir;
  write_text(dir.path / "t.txt");
  const fs::path file = dir.path / "gpt.toml";
  std::ofstream(file) << gpt_config(dir.path / "t.txt");
  auto lgm_sim = [&](const std::string& args) {
    const std::string cmd = std::string(LGM_SIM_EXE) + " " + args + " 2>&1";
    FILE* pipe = popen(cmd.c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::string out;
    char buf[256];
    while (std::fgets(buf, sizeof buf, pipe)) out += buf;
    const int status = pclose(pipe);
    return std::pair{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
  };
  // here no GPU is usable: without lgm-sim-cuda beside lgm-sim (no CUDA toolkit) or with it (no device), exit 2
  const auto [code, out] = lgm_sim("run " + file.string() + " --out " + (dir.path / "out").string() +
                                   " --quiet --no-plots --set problem.device=cuda");
  if (out.find("lgm-sim-cuda is not beside") == std::string::npos &&
      out.find("CUDA device") == std::string::npos) {  // a machine with a usable GPU ran it
    CHECK(code == 0);
    return;
  }
  CHECK(code == 2);
  CHECK_MESSAGE(out.find("problem.device") != std::string::npos, out);
  CHECK_FALSE(fs::exists(dir.path / "out" / "metrics.jsonl"));  // refused before anything was written
  // one device for every network run of an experiment
  std::ofstream(dir.path / "mixed.toml") << gpt_config(dir.path / "t.txt")
                                         << "\n[[variant]]\nname = \"a\"\n[[variant]]\nname = \"b\"\n"
                                            "problem.device = \"cuda\"\n";
  const auto [mixed_code, mixed] = lgm_sim("validate " + (dir.path / "mixed.toml").string());
  CHECK(mixed_code == 2);
  CHECK_MESSAGE(mixed.find("one device for every run") != std::string::npos, mixed);
}
