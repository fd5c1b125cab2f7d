// From a resolved configuration to the objects of a run: the problem (data, objective, test set, starting
// point) and the method (the driver with its run-time policies, policies.hpp). Every check happens here,
// before any run starts, and names the configuration key.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "config.hpp"
#include "lgm/lgm.hpp"
#include "policies.hpp"

namespace lgm::sim {

/// The objectives the simulator runs (docs/problems.md).
using AnyObjective = std::variant<Quadratic, LeastSquares, Logistic, NonconvexLogistic, Softmax, Mlp>;

class NetworkProblem;  // network.hpp: a ResNet or GPT objective on a device (or Thrust's OpenMP system)

/// A loaded problem, shared by every run whose [problem] section is the same: a host objective, or a network.
struct Problem {
  std::optional<AnyObjective> train;              ///< the host objective; empty for a network
  std::optional<AnyObjective> test;               ///< same alternative as `train` (real data with a test split)
  std::shared_ptr<const NetworkProblem> network;  ///< problem.type = resnet or gpt
  std::vector<int> labels;                        ///< class of each training sample (binary: 0/1); empty for regression
  std::string description;                        ///< one line: model, data, N, d
  Vector x0;                                      ///< the starting point of every worker
};

/// The [problem] section as text: runs with equal keys share one loaded problem.
std::string problem_key(const RunConfig& cfg);

/// Loads or generates the data and builds the objective. Throws ConfigError (bad combination of keys) or
/// DataError (missing, truncated or corrupt data file, naming the file).
std::shared_ptr<const Problem> build_problem(const RunConfig& cfg);

/// Steps the budget allows: run.max_steps, or run.max_samples / (M · batch.b) rounded up when the budget is in
/// samples (the horizon for schedules and sync rules given as fractions of the budget).
Index budget_steps(const RunConfig& cfg);

/// Builds the method of a run and validates it against the problem; ConfigError names the config key.
ConfiguredMethod build_method(const RunConfig& cfg, const Problem& problem);

/// Seconds per sample of one gradient on this machine, measured on batches of 64 (one thread, median of runs).
double measure_seconds_per_sample(const Problem& problem);

/// Calls f(objective) with the concrete type of an AnyObjective.
template <class F>
decltype(auto) with_objective(const AnyObjective& obj, F&& f) {
  return std::visit(std::forward<F>(f), obj);
}

}  // namespace lgm::sim
