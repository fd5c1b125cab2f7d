// The property that fuzz_config checks, shared with the regression test of its inputs
// (simulator/tests/test_fuzz_regressions.cpp). An input is TOML text, optionally followed by a NUL byte and
// override lines ("key=value"), and by a second NUL byte and grid lines ("key=v1,v2"). It must either be
// rejected with lgm::ConfigError or give runs that survive the documented round trip: parse_experiment of a
// run's to_toml() (the config.toml lgm-sim writes beside its outputs) yields one run equal to it.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"

namespace lgm::fuzz {

inline std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto end = text.find('\n');
    if (end != 0) out.emplace_back(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return out;
}

/// A grid's runs multiply: inputs whose lists could give more than 64 runs are skipped (a time limit of the
/// fuzzer, not a limit of lgm-sim). Commas are counted high (those inside [...] or quotes do not split).
inline bool grid_small(const std::vector<std::string>& grid) {
  double runs = 1;
  for (const std::string& g : grid) runs *= 1.0 + static_cast<double>(std::count(g.begin(), g.end(), ','));
  return runs <= 64;
}

/// "" when the input holds the property, else what went wrong. Exceptions other than ConfigError propagate.
inline std::string config_violation(std::string_view input) {
  const auto first = input.find('\0');
  const std::string_view toml = input.substr(0, first);
  std::vector<std::string> overrides, grid;
  if (first != std::string_view::npos) {
    const std::string_view rest = input.substr(first + 1);
    const auto second = rest.find('\0');
    overrides = lines_of(rest.substr(0, second));
    if (second != std::string_view::npos) grid = lines_of(rest.substr(second + 1));
  }
  if (!grid_small(grid)) return "";
  sim::ExperimentConfig experiment;
  try {
    experiment = sim::parse_experiment(toml, "fuzz.toml", overrides);
    if (!grid.empty()) experiment = sim::expand_grid(experiment, grid);
  } catch (const ConfigError&) {
    return "";
  }
  if (experiment.runs.empty()) return "an experiment without runs";
  for (const sim::RunConfig& run : experiment.runs) {
    const std::string text = run.to_toml();
    sim::ExperimentConfig again;
    try {
      again = sim::parse_experiment(text, "config.toml");
    } catch (const ConfigError& e) {
      return "the config.toml written for run '" + run.name() + "' is rejected: " + e.what();
    }
    if (again.runs.size() != 1) return "the config.toml written for run '" + run.name() + "' holds several runs";
    if (!(again.runs[0] == run)) return "the config.toml written for run '" + run.name() + "' reads as another run";
  }
  return "";
}

}  // namespace lgm::fuzz
