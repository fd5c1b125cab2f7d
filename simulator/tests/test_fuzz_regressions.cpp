// The inputs that fuzz_config found wrong once (fuzz/regressions/fuzz_config/), and its seed corpus, checked on
// every test run with the fuzz target's own property (fuzz/config_input.hpp): rejected with a ConfigError, or
// written and read back as the same run. scripts/fuzz.sh runs the fuzzer itself.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../../fuzz/config_input.hpp"

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> inputs_in(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  return files;
}

void check_inputs(const fs::path& dir) {
  REQUIRE_MESSAGE(fs::is_directory(dir), dir.string());
  const std::vector<fs::path> files = inputs_in(dir);
  REQUIRE_FALSE(files.empty());
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    const std::string input{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    CHECK_MESSAGE(lgm::fuzz::config_violation(input).empty(), file.filename().string(), ": ",
                  lgm::fuzz::config_violation(input));
  }
}

}  // namespace

TEST_CASE("fuzz regressions: configuration inputs round-trip or are rejected (fuzz/regressions/fuzz_config)") {
  check_inputs(fs::path(LGM_SIM_SOURCE_DIR) / ".." / "fuzz" / "regressions" / "fuzz_config");
}

TEST_CASE("fuzz regressions: the configuration seed corpus round-trips or is rejected (fuzz/corpus/fuzz_config)") {
  check_inputs(fs::path(LGM_SIM_SOURCE_DIR) / ".." / "fuzz" / "corpus" / "fuzz_config");
}
