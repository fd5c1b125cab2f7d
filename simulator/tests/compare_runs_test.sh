#!/usr/bin/env bash
# scripts/compare-runs.py (docs/gpu.md §The device check): equal runs agree, a different batch decision or a
# loss past the tolerance is found (exit 1), a missing file is exit 2.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v python3 >/dev/null || { echo "SKIP: python3 not found"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
record() {  # record RUN ROUND BATCH LOSS
  echo "{\"run\":\"$1\",\"round\":$2,\"step\":$((4 * $2)),\"samples\":$((100 * $2)),\"comm_rounds\":$2,\"bytes\":0,\"H\":4,\"batch_min\":$3,\"batch_mean\":$3,\"batch_max\":$3,\"batch_loss\":$4,\"loss\":$4,\"test_loss\":null,\"test_accuracy\":null,\"wall_time_s\":0.$RANDOM}"
}
mkdir -p "$tmp"/{a,b,c,d}
{ record norm 1 8 2.5; record norm 2 16 2.0; } >"$tmp/a/metrics.jsonl"
{ record norm 1 8 2.5000001; record norm 2 16 2.0000004; } >"$tmp/b/metrics.jsonl"  # within 1e-3
{ record norm 1 8 2.5; record norm 2 17 2.0; } >"$tmp/c/metrics.jsonl"              # another decision
{ record norm 1 8 2.5; record norm 2 16 2.1; } >"$tmp/d/metrics.jsonl"              # 5 % off
cmp=("$root/scripts/compare-runs.py")
python3 "${cmp[@]}" "$tmp/a" "$tmp/b" >"$tmp/out" || fail "equal runs differ: $(cat "$tmp/out")"
grep -q "^norm: 2 records, agree" "$tmp/out" || fail "unexpected report: $(cat "$tmp/out")"
python3 "${cmp[@]}" "$tmp/a" "$tmp/c" >"$tmp/out"
[ $? -eq 1 ] || fail "another batch decision was not found"
grep -q "batch_min 16 against 17" "$tmp/out" || fail "the decision is not named: $(cat "$tmp/out")"
python3 "${cmp[@]}" "$tmp/a" "$tmp/d" >"$tmp/out"
[ $? -eq 1 ] || fail "a loss 5 % off passed"
python3 "${cmp[@]}" "$tmp/a" "$tmp/d" --rtol 0.1 >/dev/null || fail "--rtol 0.1 does not accept 5 %"
python3 "${cmp[@]}" "$tmp/a" "$tmp/nowhere" >/dev/null 2>&1
[ $? -eq 2 ] || fail "a missing metrics.jsonl is not exit 2"
python3 "${cmp[@]}" "$tmp/a" "$tmp/b" --markdown >"$tmp/out" || fail "markdown: equal runs differ"
grep -q "^| norm | 2 | yes |" "$tmp/out" || fail "markdown table: $(cat "$tmp/out")"
echo "compare-runs tests passed"
