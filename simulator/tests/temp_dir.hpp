// The simulator tests' scratch directory: unique under the system temp directory, removed at scope exit.
#pragma once

#include <filesystem>
#include <random>
#include <string>
#include <system_error>

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

}  // namespace lgm::sim::test
