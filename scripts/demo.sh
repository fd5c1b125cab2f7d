#!/usr/bin/env bash
# Installs what is needed, builds, and runs the main job: the comparison of local methods with constant
# and adaptive batch sizes, QSR and post-local SGD (examples/compare_methods.cpp until lgm-sim lands).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$(nproc)" --target example_compare_methods example_local_sgd_norm_test
./build/release/examples/example_local_sgd_norm_test
echo
./build/release/examples/example_compare_methods
