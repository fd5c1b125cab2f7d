// What the simulator tests share: a scratch directory (unique under the system temp directory, removed at scope
// exit) and runner options that keep a run quiet.
#pragma once

#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <system_error>

#include "runner.hpp"

namespace lgm::sim::test {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() / ("lgm_sim_test_" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

/// Options of a run that writes to `out` and prints nothing (no progress, no table, no plots).
inline RunnerOptions quiet_options(const std::filesystem::path& out) {
  static std::ostringstream sink;
  RunnerOptions o;
  o.out_dir = out;
  o.quiet = true;
  o.plots = false;
  o.log = &sink;
  o.table = &sink;
  return o;
}

}  // namespace lgm::sim::test
