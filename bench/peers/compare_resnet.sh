#!/usr/bin/env bash
# lgm's ResNet-20 training step against the same network in PyTorch on the CPU (docs/performance.md §Networks
# (ResNet-20) against PyTorch): lgm_nn_bench_omp and torch_resnet.py with the same thread count, the same shapes and
# batches, one after the other; prints both figures and the ratios lgm/PyTorch for
#   (a) one model, b = 128 (goal >= 1.0x) and (b) 8 replicas x b = 32 (goal >= 2x; PyTorch: 8 models in a loop).
#   bench/peers/compare_resnet.sh [BUILD_DIR] [THREADS]   (defaults: build/release, all cores)
# BUILD_DIR needs gpu/lgm_nn_bench_omp (configured with -DLGM_BUILD_BENCH=ON or -DLGM_BUILD_GPU_BENCH=ON).
# Extra arguments for both programs: LGM_NN_ARGS (e.g. "--quick"), TORCH_ARGS (e.g. "--reps 9 --seconds 4").
# Exit status 77 (skipped) when python3-torch is not installed: it is a peer-only dependency, not one of lgm's.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-build/release}"
threads="${2:-$(nproc)}"
bench="$build/gpu/lgm_nn_bench_omp"
# Debian's python3-torch belongs to the system interpreter, not to a pyenv/venv python3 that may come first in PATH.
python=python3
[[ -x /usr/bin/python3 ]] && python=/usr/bin/python3
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "skipped: python3-torch not installed (apt-get install --no-install-recommends python3-torch)"
  exit 77
fi
if [[ ! -x "$bench" ]]; then
  echo "compare_resnet.sh: $bench not found (configure with -DLGM_BUILD_GPU_BENCH=ON and build lgm_nn_bench_omp)" >&2
  exit 1
fi
out="$(mktemp -d "${TMPDIR:-/tmp}/lgm-resnet.XXXXXX")"
trap 'rm -rf "$out"' EXIT

echo "== lgm ($bench, OMP_NUM_THREADS=$threads)"
# shellcheck disable=SC2086
OMP_NUM_THREADS="$threads" "$bench" --cases a,b ${LGM_NN_ARGS:-} | tee "$out/lgm.txt"
echo
echo "== PyTorch ($python $here/torch_resnet.py, torch.set_num_threads($threads))"
quick=""
[[ " ${LGM_NN_ARGS:-} " == *" --quick "* ]] && quick="--quick"
# shellcheck disable=SC2086
OMP_NUM_THREADS="$threads" "$python" "$here/torch_resnet.py" --threads "$threads" --cases a,b $quick ${TORCH_ARGS:-} |
  tee "$out/torch.txt"

# img_per_s of case $2 from the key=value lines of program output $1
rate() { sed -n "s/^[a-z_]* case=$2 .*[[:space:]]img_per_s=\([^[:space:]]*\).*/\1/p" "$1" | head -n 1; }
echo
echo "== ratios lgm / PyTorch ($threads threads each; img/s, median of the repetitions)"
for c in a b; do
  l="$(rate "$out/lgm.txt" "$c")"
  t="$(rate "$out/torch.txt" "$c")"
  goal=1.0
  [[ $c == b ]] && goal=2.0
  awk -v c="$c" -v l="$l" -v t="$t" -v g="$goal" 'BEGIN {
    desc = (c == "a") ? "one model, b = 128       " : "8 replicas x b = 32      "
    r = l / t
    printf "(%s) %s lgm %9.1f img/s | torch %9.1f img/s | ratio %5.2fx | goal >= %.1fx: %s\n", c, desc, l, t, r, g,
           (r >= g ? "met" : "NOT met")
  }'
done
