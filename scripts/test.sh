#!/usr/bin/env bash
# Installs what is needed, builds with warnings as errors, runs every test: once normally, once under
# AddressSanitizer + UndefinedBehaviorSanitizer; checks formatting; builds examples/ against an install.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=${LGM_JOBS:-$(nproc)}
bash scripts/setup.sh

echo "== format check (clang-format, .clang-format)"
bash scripts/format.sh --check

echo "== release build + tests"
# one CUDA architecture (sm_90) is enough to check that the CUDA build compiles; a user's build makes 90 and 80
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DLGM_WERROR=ON -DLGM_HEADER_CHECK=ON -DLGM_BUILD_BENCH=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build build/release -j "$jobs"
ctest --test-dir build/release --output-on-failure -j "$jobs"

echo "== benchmark smoke run (the full suite and its figures: docs/performance.md)"
./build/release/bench/lgm_bench --benchmark_filter='BM_Limits|BM_Average' --benchmark_min_time=0.01 >/dev/null

echo "== sanitizer build + tests (ASan + UBSan; gpu/ against Debian's Thrust, the release build uses CCCL's)"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DLGM_WERROR=ON -DLGM_SANITIZE=ON -DLGM_HEADER_CHECK=OFF \
      -DLGM_BUILD_EXAMPLES=OFF -DLGM_WITH_CUDA=OFF -DLGM_THRUST_INCLUDE_DIR=/usr/include \
      -DCMAKE_CXX_FLAGS="-O1" -DCMAKE_CXX_FLAGS_DEBUG="-g1" >/dev/null  # -g1: line tables for the reports, 40 % less compile
cmake --build build/asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build/asan --output-on-failure -j "$jobs"

bash scripts/fuzz.sh  # libFuzzer targets of fuzz/, LGM_FUZZ_SECONDS each (default 20)

echo "== install + examples/ built against the installed package"
rm -rf build/prefix build/examples-installed
cmake --install build/release --prefix build/prefix >/dev/null
cmake -S examples -B build/examples-installed -DCMAKE_PREFIX_PATH="$root/build/prefix" -DLGM_WERROR=ON >/dev/null
cmake --build build/examples-installed -j "$jobs"
for exe in build/examples-installed/example_*; do
  echo "-- $exe"
  "$exe" --smoke
done
echo "all checks passed"
