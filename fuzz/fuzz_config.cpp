// libFuzzer target: lgm-sim's configuration reader (simulator/src/config.cpp): every input is rejected with
// lgm::ConfigError or gives runs whose written config.toml reads back as the same run (config_input.hpp).
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "config_input.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string violation =
      lgm::fuzz::config_violation(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!violation.empty()) std::fprintf(stderr, "%s\n", violation.c_str());
  lgm::fuzz::require(violation.empty(), "the configuration round trip");
  return 0;
}
