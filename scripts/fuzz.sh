#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (AddressSanitizer + UndefinedBehaviorSanitizer) in build/fuzz and
# runs each on its seed corpus (fuzz/corpus/<target>/) and its regression inputs (fuzz/regressions/<target>/) for
# LGM_FUZZ_SECONDS seconds (default 20). A crash, sanitizer report, leak, timeout or violated property fails the
# script; the input that did it is saved as build/fuzz/artifacts/<target>-crash-*: add it under
# fuzz/regressions/<target>/ with the fix (tests read that folder). New inputs the fuzzer finds go to
# build/fuzz/corpus/<target>/, not into the repository.
#   bash scripts/fuzz.sh                      # all targets, 20 s each
#   LGM_FUZZ_SECONDS=600 bash scripts/fuzz.sh fuzz_libsvm
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${LGM_FUZZ_SECONDS:-20}
jobs=${LGM_JOBS:-$(nproc)}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_idx fuzz_libsvm fuzz_config)

echo "== fuzz targets (libFuzzer + ASan + UBSan, ${seconds} s each): ${targets[*]}"
cxx=$(command -v clang++ || command -v clang++-14 || true)
if [ -z "$cxx" ]; then
  echo "fuzz: clang++ not found (Debian packages clang and libclang-rt-14-dev: bash scripts/setup.sh)" >&2
  exit 1
fi
cmake -S . -B build/fuzz -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLGM_BUILD_FUZZ=ON \
      -DLGM_WERROR=ON -DLGM_BUILD_TESTS=OFF -DLGM_BUILD_EXAMPLES=OFF -DLGM_BUILD_SIMULATOR=OFF -DLGM_BUILD_THEORY=OFF \
      -DLGM_HEADER_CHECK=OFF -DLGM_WITH_CUDA=OFF -DLGM_WITH_MPI=OFF >/dev/null
cmake --build build/fuzz -j "$jobs" --target "${targets[@]}"

mkdir -p build/fuzz/artifacts
for t in "${targets[@]}"; do
  work=build/fuzz/corpus/$t
  mkdir -p "$work"
  # The first folder receives new inputs; the seeds and regressions are only read.
  inputs=("$work" "fuzz/corpus/$t")
  [ -d "fuzz/regressions/$t" ] && inputs+=("fuzz/regressions/$t")
  echo "-- $t"
  if ! ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 "build/fuzz/fuzz/$t" -max_total_time="$seconds" \
      -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
      -artifact_prefix="build/fuzz/artifacts/$t-" "${inputs[@]}" >"build/fuzz/$t.log" 2>&1; then
    tail -n 60 "build/fuzz/$t.log" >&2
    echo "fuzz: $t failed (log: build/fuzz/$t.log; input: build/fuzz/artifacts/$t-*)" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|INITED|DONE" "build/fuzz/$t.log" | tr '\n' ' '
  echo
done
echo "fuzz: no crash in ${targets[*]}"
