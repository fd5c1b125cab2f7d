// A test that cannot run here (no data set, no tool) says so through ctest instead of passing: under ctest
// (LGM_CTEST_SKIP set by the test's ENVIRONMENT property) the test process exits with 77, which
// SKIP_RETURN_CODE turns into "Skipped"; run by hand, the doctest binary prints the reason and goes on.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace lgm::test {

/// Ends the current test as skipped, naming what is missing. Returns only outside ctest (after a warning).
inline void skip(const std::string& reason) {
  std::printf("skipped: %s\n", reason.c_str());
  std::fflush(stdout);
  if (std::getenv("LGM_CTEST_SKIP") != nullptr) std::exit(77);
  MESSAGE("skipped: " << reason);
}

}  // namespace lgm::test
