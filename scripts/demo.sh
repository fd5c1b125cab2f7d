#!/usr/bin/env bash
# Installs what is needed, builds lgm-sim and runs the main job: its built-in demo, the experiment of Lau et al.
# 2024 in miniature (softmax regression on Fashion-MNIST, 8 simulated workers, 11 variants: minibatch SGD, Local
# SGD/SHB with small and large constant batches, local and global norm tests, QSR, post-local SGD). Prints the
# comparison table; writes runs/demo/{config.toml,metrics.jsonl,summary.json,summary.md,plots/*.png}.
# Extra arguments go to lgm-sim (e.g. scripts/demo.sh --out /tmp/demo --set run.max_samples=120000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$(nproc)" --target lgm-sim
# --overwrite: the demo is rerun into the same runs/demo; only the files lgm-sim wrote there are replaced
./build/release/simulator/lgm-sim --overwrite "$@"
