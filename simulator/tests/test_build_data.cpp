// The data files of lgm-sim's problems (build.cpp, issue 12 items 4 to 6): a LIBSVM test file is read with the
// training file's label mapping, a truncated Fashion-MNIST file is refused by `validate` even with a training
// limit, and an absurd LIBSVM feature index is an error, not a crash.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <lgm/data/data.hpp>
#include <random>
#include <string>
#include <vector>

#include "build.hpp"
#include "config.hpp"
#include "runner.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace lgm::sim;

namespace {

using lgm::sim::test::TempDir;

void write_text(const fs::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

/// The one run of a small configuration with the given overrides.
RunConfig run_config(const std::vector<std::string>& overrides) {
  const char* toml = R"(
name = "data"
[run]
workers = 1
threads = 1
max_steps = 4
[batch]
b = 1
b_max = 64
)";
  ExperimentConfig e = parse_experiment(toml, "data.toml", overrides);
  REQUIRE(e.runs.size() == 1);
  return e.runs[0];
}

/// LIBSVM lines: one sample per label, the feature of index `label` (1-based) set to 1.
std::string one_hot_lines(const std::vector<int>& labels) {
  std::string s;
  for (int y : labels) s += std::to_string(y) + " " + std::to_string(y) + ":1\n";
  return s;
}

std::string data_error_of(const RunConfig& cfg) {
  try {
    (void)build_problem(cfg);
  } catch (const lgm::DataError& e) {
    return e.what();
  }
  FAIL_CHECK("no lgm::DataError thrown");
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

#define CHECK_CONTAINS(message, part) CHECK_MESSAGE(contains(message, part), "message: ", message)

}  // namespace

TEST_CASE("build: a LIBSVM test file is scored with the training file's classes (issue 12 item 4)") {
  TempDir dir;
  const std::string train = (dir.path / "train.svm").string();
  write_text(train, one_hot_lines({1, 2, 3, 1, 2, 3}));
  // The weights W = I classify every one-hot sample correctly: class c has logit 1, the others 0.
  const auto perfect = [](const lgm::Softmax& model) {
    lgm::Vector x = lgm::Vector::Zero(model.dim());
    for (lgm::Index c = 0; c < model.classes(); ++c) x[c * model.num_features() + c] = 1.0;
    return x;
  };
  for (const std::vector<int>& test_labels : {std::vector<int>{2, 3, 3}, std::vector<int>{3, 3}}) {
    CAPTURE(test_labels.size());
    const std::string test = (dir.path / "test.svm").string();
    write_text(test, one_hot_lines(test_labels));
    const auto problem = build_problem(run_config(
        {"problem.type=softmax", "problem.data=libsvm", "problem.path=" + train, "problem.test_path=" + test}));
    const auto& model = std::get<lgm::Softmax>(*problem->train);
    REQUIRE(problem->test.has_value());
    const auto& held_out = std::get<lgm::Softmax>(*problem->test);
    CHECK(held_out.classes() == 3);
    CHECK(held_out.labels().back() == 2);  // label 3 is class 2, as in the training file
    CHECK(model.accuracy(perfect(model), model.features(), model.labels()) == 1.0);
    CHECK(held_out.accuracy(perfect(model), held_out.features(), held_out.labels()) == 1.0);
  }
}

TEST_CASE("build: a binary LIBSVM test file of one class keeps the training mapping (issue 12 item 4)") {
  TempDir dir;
  // Training labels {1, 2} (1 → −1); a test file holding only class 1 keeps 1 → −1.
  const std::string btrain = (dir.path / "btrain.svm").string(), btest = (dir.path / "btest.svm").string();
  write_text(btrain, "1 1:-1\n2 1:1\n1 1:-2\n2 1:3\n");
  write_text(btest, "1 1:-1\n1 1:-4\n");
  const auto problem = build_problem(run_config(
      {"problem.type=logistic", "problem.data=libsvm", "problem.path=" + btrain, "problem.test_path=" + btest}));
  const auto& held_out = std::get<lgm::Logistic>(*problem->test);
  CHECK(held_out.labels() == lgm::Vector{{-1.0, -1.0}});
  const lgm::Vector x{{1.0}};  // sign(a) is the label: every sample is classified correctly
  CHECK(lgm::binary_accuracy(x, {held_out.features(), held_out.labels()}) == 1.0);
}

TEST_CASE("build: a LIBSVM test label outside the training labels names both files (issue 12 item 4)") {
  TempDir dir;
  const std::string train = (dir.path / "train.svm").string(), test = (dir.path / "test.svm").string();
  write_text(train, one_hot_lines({1, 2, 3}));
  write_text(test, "3 3:1\n1 1:1\n5 2:1\n");
  std::string m = data_error_of(run_config(
      {"problem.type=softmax", "problem.data=libsvm", "problem.path=" + train, "problem.test_path=" + test}));
  CHECK_CONTAINS(m, test + ":3: label 5 is not one of the 3 labels of the training file " + train + " (1, 2, 3)");

  write_text(train, "0 1:1\n1 1:2\n");
  write_text(test, "1 1:1\n-1 1:2\n");
  m = data_error_of(run_config(
      {"problem.type=logistic", "problem.data=libsvm", "problem.path=" + train, "problem.test_path=" + test}));
  CHECK_CONTAINS(m, test + ":2: label -1 is not one of the 2 labels of the training file " + train + " (0, 1)");
}

TEST_CASE("build: validate refuses a truncated Fashion-MNIST file with train_limit set (issue 12 item 5)") {
  TempDir dir;
  const auto write_gz = [&](const std::string& name, std::uint32_t magic, std::vector<std::uint32_t> dims,
                            std::size_t data_bytes) {
    std::vector<unsigned char> b;
    dims.insert(dims.begin(), magic);
    for (std::uint32_t v : dims)
      for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(v >> s));
    b.resize(b.size() + data_bytes, 1);  // pixels 1, labels 1: valid values
    gzFile f = gzopen((dir.path / name).string().c_str(), "wb");
    REQUIRE(f != nullptr);
    REQUIRE(gzwrite(f, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
    REQUIRE(gzclose(f) == Z_OK);
  };
  // 60 training images declared, 30 present; the labels and the test split are whole.
  write_gz("train-images-idx3-ubyte.gz", 0x803, {60, 28, 28}, 30 * 784);
  write_gz("train-labels-idx1-ubyte.gz", 0x801, {60}, 60);
  write_gz("t10k-images-idx3-ubyte.gz", 0x803, {10, 28, 28}, 10 * 784);
  write_gz("t10k-labels-idx1-ubyte.gz", 0x801, {10}, 10);
  for (const char* limit : {"0", "10"}) {
    CAPTURE(limit);
    const std::vector<std::string> overrides = {"problem.type=softmax", "problem.data=fashion_mnist",
                                                "problem.path=" + dir.path.string(),
                                                std::string("problem.train_limit=") + limit};
    ExperimentConfig e = parse_experiment("name = \"f\"\n[run]\nmax_steps = 2\n", "f.toml", overrides);
    std::string m;
    try {
      validate_experiment(e);
    } catch (const lgm::DataError& err) {
      m = err.what();
    }
    CHECK_CONTAINS(m,
                   "train-images-idx3-ubyte.gz: truncated: expected 47040 bytes of data for [60, 28, 28], got "
                   "23520");
  }
}

TEST_CASE("build: a LIBSVM feature index of 2^63-1 with a bias is an error, not a crash (issue 12 item 6)") {
  TempDir dir;
  const std::string file = (dir.path / "one.svm").string();
  write_text(file, "1 9223372036854775807:1\n");
  const std::string m = data_error_of(
      run_config({"problem.type=logistic", "problem.data=libsvm", "problem.path=" + file, "problem.bias=true"}));
  CHECK_CONTAINS(m, file +
                        ":1: index 9223372036854775807 in \"9223372036854775807:1\" is too large (accepted: "
                        "indices in [1, 2147483647])");
}

TEST_CASE("build: problem.train_limit and problem.test_limit keep the first LIBSVM samples") {
  TempDir dir;
  const std::string train = (dir.path / "train.svm").string(), test = (dir.path / "test.svm").string();
  write_text(train, one_hot_lines({1, 2, 3, 1, 2, 3}));
  write_text(test, one_hot_lines({3, 2, 1, 3}));
  const std::vector<std::string> files = {"problem.type=softmax", "problem.data=libsvm", "problem.path=" + train,
                                          "problem.test_path=" + test};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), files.begin(), files.end());
    return run_config(more);
  };
  const auto problem = build_problem(with({"problem.train_limit=4", "problem.test_limit=2"}));
  const auto& model = std::get<lgm::Softmax>(*problem->train);
  const auto& held_out = std::get<lgm::Softmax>(*problem->test);
  CHECK(model.num_samples() == 4);
  CHECK(held_out.labels() == std::vector<lgm::Index>{2, 1});
  CHECK(held_out.features().cols() == 2);
  CHECK(std::get<lgm::Softmax>(*build_problem(with({"problem.test_limit=4"}))->test).features().cols() == 4);
  CHECK_THROWS_WITH_AS(
      (void)build_problem(with({"problem.test_limit=5"})),
      ("invalid problem.test_limit = 5 (accepted: 0 (all) or an integer in [1, 4], the samples in " + test + ")")
          .c_str(),
      lgm::ConfigError);
  CHECK_THROWS_AS((void)build_problem(with({"problem.train_limit=7"})), lgm::ConfigError);
}
