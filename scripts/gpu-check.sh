#!/usr/bin/env bash
# The device check of a machine with a GPU (docs/gpu.md, docs/performance.md §Networks (ResNet-20) against PyTorch):
# configures a CUDA build in build/gpu-check (sm_90, Release, tests on; no header check, sanitizers, examples or
# theory), builds the CUDA test binary, the CUDA benchmarks and lgm-sim with lgm-sim-cuda with every core, runs the
# CUDA tests through ctest and the benchmarks, runs one short network experiment of each kind (a GPT, a ResNet) with
# lgm-sim on the CPU and on the GPU and compares them (scripts/compare-runs.py: the same batch-size decisions and
# rounds, losses within float32 tolerance), and writes one report (markdown): the device, the test summary, the
# benchmarks' figures, the comparison. The simulator needs toml++, CLI11 and nlohmann-json: from the machine, or
# from .deps/ (scripts/pack-device-deps.sh copies this machine's header-only dependencies there; carry .deps). Everything has a timeout; the whole check stays under LGM_GPU_CHECK_SECONDS (default 480 s,
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

# write_agreement_configs DIR: the short experiments run on both devices (docs/simulator.md §Networks on a GPU):
# a GPT on a text of this repository and a ResNet-8 on CIFAR-10-format files written here, constant batch and
# the local norm test, 4 workers.
write_agreement_configs() {
  local dir=$1
  arms() {  # the two arms of both experiments; $1: the norm test's eta
    cat <<TOML
[sync]
H = 4
[batch]
b = 8
[[variant]]
name = "constant b = 8"
[[variant]]
name = "local norm test"
batch.type = "norm"
batch.b_min = 8
batch.b_max = 128
batch.estimator = "micro_batch_means"
batch.micro_batches = 4
batch.eta = $1
TOML
  }
  cat >"$dir/gpt.toml" <<TOML
name = "agreement_gpt"
[run]
workers = 4
max_steps = 120
eval_points = 6
[problem]
type = "gpt"
data = "text"
path = "$root/docs/simulator.md"
layers = 2
width = 64
context = 32
eval_samples = 64
[optimizer]
type = "adamw"
lr = 0.003
weight_decay = 0.1
TOML
  arms 1.0 >>"$dir/gpt.toml"
  python3 - "$dir/cifar" <<'PY' || return 0  # no python3: the GPT case alone
import os, random, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True); random.seed(7)
for f in ["data_batch_%d.bin" % i for i in range(1, 6)] + ["test_batch.bin"]:
    with open(os.path.join(d, f), "wb") as out:
        for r in range(200):
            label = r % 10
            out.write(bytes([label]) + bytes(min(255, random.randrange(96) + 16 * label) for _ in range(3072)))
PY
  cat >"$dir/resnet.toml" <<TOML
name = "agreement_resnet"
[run]
workers = 4
max_steps = 120
eval_points = 6
[problem]
type = "resnet"
data = "cifar10"
path = "$dir/cifar"
depth = 8
width = 8
bn_sync = "averaged"
eval_samples = 200
[optimizer]
type = "heavy_ball"
lr = 0.05
TOML
  arms 2.0 >>"$dir/resnet.toml"
}

jobs=$(nproc)
prefix=()
[[ -d $root/.deps/usr ]] && prefix=(-DCMAKE_PREFIX_PATH="$root/.deps/usr" -DZLIB_ROOT="$root/.deps/usr")
simulator=OFF
targets=(lgm_gpu_cuda_tests lgm_gpu_bench lgm_nn_bench lgm_gpt_bench)
for d in /usr/include "$root/.deps/usr/include"; do
  [[ -f $d/toml++/toml.hpp && -f $d/CLI/CLI.hpp && -f $d/nlohmann/json.hpp ]] && simulator=ON
done
[[ $simulator == ON ]] && targets+=(lgm-sim lgm-sim-cuda)
configured=0
run configure 90 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLGM_WITH_CUDA=ON \
  -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES=90 -DLGM_BUILD_TESTS=ON -DLGM_HEADER_CHECK=OFF \
  -DLGM_SANITIZE=OFF -DLGM_BUILD_EXAMPLES=OFF -DLGM_BUILD_SIMULATOR=$simulator -DLGM_BUILD_THEORY=OFF \
  -DLGM_BUILD_BENCH=OFF -DLGM_BUILD_GPU_BENCH=ON -DLGM_WITH_MPI=OFF "${prefix[@]}" && configured=1
built=0
((configured)) && run build 300 cmake --build "$build" -j "$jobs" --target "${targets[@]}" && built=1
if ((built)); then
  run tests 150 ctest --test-dir "$build" -R '^(gpu_device_tests|nn_bench_smoke|gpt_bench_smoke)$' --output-on-failure \
    --timeout 140
fi

# ---------------------------------------------------------------- one network experiment on both devices
agree="$build/agreement"
if ((built)) && [[ $simulator == ON ]]; then
  rm -rf "$agree"  # no result of an earlier check is reported as this one's
  mkdir -p "$agree"
  write_agreement_configs "$agree"
  for case in gpt resnet; do
    [[ -f $agree/$case.toml ]] || continue
    for device in cpu cuda; do
      run "sim_${case}_$device" 90 "$build/simulator/lgm-sim" run "$agree/$case.toml" --out "$agree/$case-$device" \
        --overwrite --quiet --no-plots --set problem.device=$device
    done
    [[ -f $agree/$case-cpu/metrics.jsonl && -f $agree/$case-cuda/metrics.jsonl ]] &&
      run "compare_$case" 20 python3 "$root/scripts/compare-runs.py" "$agree/$case-cpu" "$agree/$case-cuda" --markdown
  done
fi
if ((built)); then
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
  echo
  echo "## The same network experiment on the CPU and on the GPU (lgm-sim, scripts/compare-runs.py)"
  if [[ $simulator != ON ]]; then
    echo
    echo "not run: lgm-sim was not built (toml++, CLI11 or nlohmann-json missing; scripts/pack-device-deps.sh)"
  fi
  for case in gpt resnet; do
    [[ -f $logs/compare_$case.log ]] || continue
    echo
    echo "### $case ($agree/$case.toml)"
    echo
    cat "$logs/compare_$case.log"
    for device in cpu cuda; do
      [[ -f $agree/$case-$device/summary.md ]] || continue
      echo
      echo "$device:"
      echo
      grep '^|' "$agree/$case-$device/summary.md"
    done
  done
  for n in configure build tests sim_gpt_cpu sim_gpt_cuda sim_resnet_cpu sim_resnet_cuda; do
    if grep -q "^$n|\(failed\|timed\)" <(printf '%s\n' "${steps[@]}"); then
      section "$n log (tail)" "$logs/$n.log" 60
    fi
  done
} >"$report"
echo "report: $report"
exit $status
