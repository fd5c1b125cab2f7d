// The network problems of lgm-sim (docs/simulator.md §Networks): a ResNet on images or a GPT on text, as
// objectives of the GPU backend (lgm/gpu/nn), on Thrust's OpenMP system here or on a CUDA device. Everything
// that touches the backend lives in network.cpp, so that the rest of the simulator compiles without Thrust.
#pragma once

#include <memory>
#include <string>

#include "build.hpp"
#include "config.hpp"
#include "records.hpp"

namespace lgm::sim {

struct RunEnv;  // run_variant.hpp

/// True for problem.type = resnet or gpt.
inline bool is_network_type(const std::string& type) { return type == "resnet" || type == "gpt"; }

/// "cpu" where the networks run on Thrust's OpenMP system (lgm-sim), "cuda" on a CUDA device (lgm-sim-cuda), ""
/// where this build cannot run networks.
const char* network_device();

/// Loads the data and builds the network objective of cfg's [problem] section into `problem` (network,
/// description, x0, labels). Throws ConfigError (a key, its value, the accepted range) or DataError (a file).
void build_network_problem(const RunConfig& cfg, Problem& problem);

/// Checks the method against the network objective (the driver's validate and the network's batch-rule
/// requirements) before any run starts.
void validate_network_method(const RunConfig& cfg, ConfiguredMethod& method, const Problem& problem);

/// Seconds per sample of one training gradient of the network at x0, batches of 32, one replica (median).
double measure_network_seconds_per_sample(const Problem& problem);

/// One run of a configured variant on the network problem: the device twin of run_variant.
VariantSummary run_network_variant(const Problem& problem, const RunConfig& cfg, ConfiguredMethod& method, RunEnv& env);

}  // namespace lgm::sim
