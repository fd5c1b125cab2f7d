// network.hpp where lgm-sim is built without Thrust (no libthrust-dev, no CUDA toolkit): a network problem is
// refused before anything runs, saying what the build lacks.
#include "network.hpp"

namespace lgm::sim {

namespace {
[[noreturn]] void unavailable(const std::string& type) {
  throw ConfigError("problem.type", "\"" + type + "\"",
                    "a host objective: this lgm-sim was built without Thrust (install libthrust-dev, "
                    "scripts/setup.sh, and rebuild) and cannot run networks");
}
}  // namespace

const char* network_device() { return ""; }
void build_network_problem(const RunConfig& cfg, Problem&) { unavailable(cfg.text("problem.type")); }
void validate_network_method(const RunConfig& cfg, ConfiguredMethod&, const Problem&) {
  unavailable(cfg.text("problem.type"));
}
double measure_network_seconds_per_sample(const Problem&) { unavailable("resnet"); }
VariantSummary run_network_variant(const Problem&, const RunConfig& cfg, ConfiguredMethod&, RunEnv&) {
  unavailable(cfg.text("problem.type"));
}

}  // namespace lgm::sim
