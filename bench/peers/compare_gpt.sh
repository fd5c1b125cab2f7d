#!/usr/bin/env bash
# lgm's GPT training step against the same model in PyTorch on the CPU
# (docs/performance.md §Transformer against PyTorch): lgm_gpt_bench_omp and torch_gpt.py bench with the same thread count, shapes and batches, one after the
# other; prints both figures and the ratios lgm/PyTorch in tokens/s for
#   (a) the CI model, b = 16 × 64   (b) the char model, b = 4 × 256   (goal >= 1.0x each)
#   (c) the CI model, 8 replicas x b = 16 × 64 in one call (goal >= 2x; PyTorch: 8 models in a loop).
#   bench/peers/compare_gpt.sh [BUILD_DIR] [THREADS]   (defaults: build/release, all cores)
# BUILD_DIR needs gpu/lgm_gpt_bench_omp (-DLGM_BUILD_BENCH=ON or -DLGM_BUILD_GPU_BENCH=ON). Exit status 77
# (skipped) when python3-torch is not installed: a peer-only dependency.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-build/release}"
threads="${2:-$(nproc)}"
bench="$build/gpu/lgm_gpt_bench_omp"
python=python3
[[ -x /usr/bin/python3 ]] && python=/usr/bin/python3
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "skipped: python3-torch not installed (apt-get install --no-install-recommends python3-torch)"
  exit 77
fi
[[ -x "$bench" ]] || { echo "compare_gpt.sh: $bench not found (configure with -DLGM_BUILD_GPU_BENCH=ON)" >&2; exit 1; }
echo "== lgm ($bench, OMP_NUM_THREADS=$threads)"
lgm_out="$(OMP_NUM_THREADS="$threads" "$bench" --cases a,b,c)"
echo "$lgm_out"
echo "== PyTorch ($python $here/torch_gpt.py bench, torch.set_num_threads($threads))"
torch_out=""
for c in "a 2,2,64,64,256 1 16 64" "b 6,6,384,256,256 1 4 256" "c 2,2,64,64,256 8 16 64"; do
  read -r id spec m b t <<<"$c"
  line="$(OMP_NUM_THREADS="$threads" "$python" "$here/torch_gpt.py" bench --case "$id" --spec "$spec" --replicas "$m" \
          --batch "$b" --seq "$t" --threads "$threads")"
  echo "$line"
  torch_out+="$line"$'\n'
done
rate() { sed -n "s/^[a-z_]* case=$2 .*[[:space:]]tokens_per_s=\([^[:space:]]*\).*/\1/p" <<<"$1" | head -n 1; }
echo "== ratios lgm / PyTorch ($threads threads each; tokens/s, median of 3)"
for id in a b c; do
  awk -v c="$id" -v l="$(rate "$lgm_out" "$id")" -v t="$(rate "$torch_out" "$id")" 'BEGIN {
    g = (c == "c") ? 2.0 : 1.0
    printf "(%s) lgm %10.1f | torch %10.1f | ratio %6.2fx | goal >= %.1fx: %s\n", c, l, t, l / t, g, (l / t >= g ? "met" : "NOT met")
  }'
done
