// What the simulator tests share: a scratch directory (unique under the system temp directory, removed at scope
// exit) and runner options that keep a run quiet.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

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

/// A CIFAR-10 binary directory (data_batch_1.bin … data_batch_5.bin, test_batch.bin) of `per_file` records a
/// file: the label byte, then 3072 pixel bytes whose mean grows with the label (something to learn).
inline void write_cifar_dir(const std::filesystem::path& dir, int per_file, std::uint32_t seed = 12345) {
  std::filesystem::create_directories(dir);
  std::uint32_t state = seed;
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return static_cast<int>(state >> 24);
  };
  for (const char* f : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                        "data_batch_5.bin", "test_batch.bin"}) {
    std::ofstream out(dir / f, std::ios::binary);
    for (int r = 0; r < per_file; ++r) {
      const int label = r % 10;
      out.put(static_cast<char>(label));
      for (int p = 0; p < 3072; ++p) out.put(static_cast<char>(next() / 2 + label * 12));
    }
  }
}

/// A text file of ~7 KB with structure a small GPT picks up.
inline void write_text(const std::filesystem::path& file, int variant = 0) {
  std::ofstream out(file);
  for (int i = 0; i < 300; ++i)
    out << (variant ? "a dog ran in the fog " : "the cat sat on the mat ") << (i % 7) << ".\n";
}

}  // namespace lgm::sim::test
