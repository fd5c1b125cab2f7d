// Test main of the GPU backend's tests. The CUDA build needs a device: without one every test is reported
// skipped, with the reason, through ctest's SKIP_RETURN_CODE 77. The OpenMP build always runs.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "lgm/gpu/backend.hpp"

int main(int argc, char** argv) {
  const std::string reason = lgm::gpu::device_unavailable_reason();
  if (!reason.empty()) {
    std::printf("skipped: %s\n", reason.c_str());
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
