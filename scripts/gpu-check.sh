#!/usr/bin/env bash
# The device check of a machine with a GPU (docs/gpu.md, docs/performance.md §Networks (ResNet-20) against PyTorch):
# configures a CUDA build in build/gpu-check (sm_90, Release, tests on; no header check, sanitizers, examples,
# simulator or theory), builds only the CUDA test binary and the two CUDA benchmarks with every core, runs the CUDA
# tests through ctest and both benchmarks, and writes one report (markdown): the device, the test summary, the
# benchmarks' figures. Everything has a timeout; the whole check stays under LGM_GPU_CHECK_SECONDS (default 480 s,
# 8 minutes on a 16-core H200 machine). It only queries the GPU (nvidia-smi -L / --query-gpu): it never resets or
# reconfigures it.
#   scripts/gpu-check.sh [REPORT]   (default build/gpu-check/report.md)
# Exit status: 0 when every step passed, 1 when one failed or timed out (the report says which), 77 without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
build="$root/build/gpu-check"
report="${1:-$build/report.md}"
budget="${LGM_GPU_CHECK_SECONDS:-480}"
nvcc=/usr/local/cuda/bin/nvcc

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1 || [[ ! -x $nvcc ]]; then
  echo "skipped: no GPU (needs a working nvidia-smi and $nvcc)"
  exit 77
fi

start=$(date +%s)
mkdir -p "$build" "$(dirname "$report")"
logs="$build/logs"
mkdir -p "$logs"
status=0
steps=()  # "name|result|seconds" for the report's table

# seconds left of the budget, less a reserve for writing the report
left() { echo $((budget - ($(date +%s) - start) - 10)); }
# run NAME CAP COMMAND...: at most CAP seconds (and never past the budget), output in $logs/NAME.log
run() {
  local name=$1 cap=$2
  shift 2
  local limit
  limit=$(left)
  ((limit > cap)) && limit=$cap
  if ((limit < 5)); then
    steps+=("$name|not run: out of time|0")
    status=1
    return 1
  fi
  echo "== $name (timeout ${limit}s)"
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$logs/$name.log" 2>&1
  rc=$?
  local took=$(($(date +%s) - t0)) result="ok"
  if ((rc == 124 || rc == 137)); then
    result="timed out after ${limit}s"
  elif ((rc != 0)); then
    result="failed (exit $rc)"
  fi
  [[ $result != ok ]] && status=1
  steps+=("$name|$result|$took")
  echo "   $result, ${took}s"
  return $rc
}

jobs=$(nproc)
configured=0
run configure 90 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLGM_WITH_CUDA=ON \
  -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES=90 -DLGM_BUILD_TESTS=ON -DLGM_HEADER_CHECK=OFF \
  -DLGM_SANITIZE=OFF -DLGM_BUILD_EXAMPLES=OFF -DLGM_BUILD_SIMULATOR=OFF -DLGM_BUILD_THEORY=OFF -DLGM_BUILD_BENCH=OFF \
  -DLGM_BUILD_GPU_BENCH=ON -DLGM_WITH_MPI=OFF && configured=1
built=0
((configured)) && run build 300 cmake --build "$build" -j "$jobs" --target lgm_gpu_cuda_tests lgm_gpu_bench lgm_nn_bench lgm_gpt_bench &&
  built=1
if ((built)); then
  run tests 150 ctest --test-dir "$build" -R '^(gpu_device_tests|nn_bench_smoke|gpt_bench_smoke)$' --output-on-failure \
    --timeout 140
  run gpu_bench 120 "$build/gpu/lgm_gpu_bench" --json "$build/gpu_bench.json"
  run nn_bench 150 "$build/gpu/lgm_nn_bench" --json "$build/nn_bench.json"
  run gpt_bench 90 "$build/gpu/lgm_gpt_bench" --seconds 1
fi

# ---------------------------------------------------------------- the report
section() {  # section TITLE LOG [LINES]: the tail of a log in a code block
  echo
  echo "## $1"
  echo
  if [[ -f $2 ]]; then
    echo '```'
    tail -n "${3:-200}" "$2"
    echo '```'
  else
    echo "(not run)"
  fi
}
{
  echo "# lgm GPU check"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "- device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 4 | paste -sd ';' -)"
  echo "- nvcc: $("$nvcc" --version 2>&1 | grep -m1 release || echo unknown)"
  echo "- host: $(nproc) cores; build jobs $jobs; budget ${budget}s, used $(($(date +%s) - start))s"
  echo
  echo "| step | result | seconds |"
  echo "|---|---|---|"
  for s in "${steps[@]}"; do
    IFS='|' read -r n r t <<<"$s"
    echo "| $n | $r | $t |"
  done
  if [[ -f $logs/tests.log ]]; then
    echo
    echo "## Tests (ctest -R 'gpu_device_tests|nn_bench_smoke|gpt_bench_smoke')"
    echo
    echo '```'
    grep -E 'tests passed|tests failed|Test +#|\[doctest\] (test cases|assertions)|skipped' "$logs/tests.log" | tail -n 40
    echo '```'
  fi
  section "gpu_bench (lgm_gpu_bench)" "$logs/gpu_bench.log"
  section "nn_bench (lgm_nn_bench)" "$logs/nn_bench.log"
  section "gpt_bench (lgm_gpt_bench: tokens/s and MFU of the char model and GPT-2 124M)" "$logs/gpt_bench.log"
  for n in configure build tests; do
    if grep -q "^$n|\(failed\|timed\)" <(printf '%s\n' "${steps[@]}"); then
      section "$n log (tail)" "$logs/$n.log" 60
    fi
  done
} >"$report"
echo "report: $report"
exit $status
