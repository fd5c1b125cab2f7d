#!/usr/bin/env bash
# Command-line behaviour of lgm-sim that only the real process shows: exit statuses, messages on stderr,
# SIGINT (ends the current round, writes the summary, exits 130), plots skipped without gnuplot.
# Usage: cli_test.sh /path/to/lgm-sim
set -uo pipefail
sim=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cat > "$tmp/small.toml" <<'TOML'
name = "cli"
[run]
workers = 4
max_samples = 20000
[problem]
type = "logistic"
N = 1000
d = 8
[[variant]]
name = "a"
[[variant]]
name = "b"
sync.H = 2
TOML

# list and validate
"$sim" list >"$tmp/list" && grep -q "^\[optimizer\]" "$tmp/list" && grep -q "^  lr " "$tmp/list" || fail "list does not show [optimizer] lr"
"$sim" validate "$tmp/small.toml" | grep -q "valid, 2 run" || fail "validate of a good file"
"$sim" validate "$tmp/small.toml" --set optimizer.lrr=1 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "unknown key: exit $rc, expected 2"
grep -q "optimizer.lrr" "$tmp/err" && grep -q "lr" "$tmp/err" || fail "unknown key message: $(cat "$tmp/err")"
"$sim" run "$tmp/small.toml" --set run.workers=0 --out "$tmp/bad" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "workers=0: exit $rc, expected 2"
grep -q "run.workers" "$tmp/err" || fail "workers=0 message: $(cat "$tmp/err")"
[ ! -e "$tmp/bad/metrics.jsonl" ] || fail "a bad config must fail before any run"
"$sim" run "$tmp/missing.toml" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "missing.toml" "$tmp/err" || fail "missing file: exit $rc, $(cat "$tmp/err")"

# a run without gnuplot on PATH succeeds and says the plots were skipped
PATH=/nonexistent "$sim" run "$tmp/small.toml" --out "$tmp/noplot" >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 0 ] || fail "run without gnuplot: exit $rc, $(cat "$tmp/err")"
grep -q "skipped" "$tmp/err" || fail "no 'plots skipped' message: $(cat "$tmp/err")"
grep -q "| a " "$tmp/out" || fail "the table is not printed"
for f in config.toml metrics.jsonl summary.json summary.md; do [ -s "$tmp/noplot/$f" ] || fail "missing $f"; done

# SIGINT: a long run is interrupted after its first metrics lines
"$sim" run "$tmp/small.toml" --set run.max_samples=2000000000 --set run.eval_every_round=true --quiet \
  --no-plots --out "$tmp/int" >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 300); do
  [ -s "$tmp/int/metrics.jsonl" ] && break
  sleep 0.1
done
[ -s "$tmp/int/metrics.jsonl" ] || { kill -9 $pid; fail "no metrics line after 30 s"; }
kill -INT $pid
wait $pid; rc=$?
[ $rc -eq 130 ] || fail "SIGINT: exit $rc, expected 130; $(cat "$tmp/err")"
grep -q '"interrupted": *true' "$tmp/int/summary.json" || fail "summary.json does not say interrupted"
grep -q "interrupted" "$tmp/int/summary.md" || fail "summary.md does not say interrupted"
while IFS= read -r line; do
  case "$line" in "{"*"}") ;; *) fail "metrics line is not a JSON object: $line" ;; esac
done <"$tmp/int/metrics.jsonl"
echo "cli tests passed"
