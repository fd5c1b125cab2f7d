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

# --out at a directory that holds an earlier run: refused, then replaced with --overwrite
"$sim" run "$tmp/small.toml" --out "$tmp/noplot" --no-plots >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--overwrite" "$tmp/err" || fail "non-empty --out: exit $rc, $(cat "$tmp/err")"
"$sim" run "$tmp/small.toml" --out "$tmp/noplot" --no-plots --overwrite >"$tmp/out" 2>"$tmp/err" ||
  fail "--overwrite: $(cat "$tmp/err")"

# a sweep with a repeated grid value is refused; a sweep's config.toml runs again
"$sim" sweep "$tmp/small.toml" --grid sync.H=2,2 --out "$tmp/dup" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "H=2" "$tmp/err" || fail "duplicate grid value: exit $rc, $(cat "$tmp/err")"
[ ! -e "$tmp/dup/config.toml" ] || fail "duplicate grid value: a config.toml was written"
"$sim" sweep "$tmp/small.toml" --grid sync.H=2,3 --quiet --no-plots --out "$tmp/sweep" >/dev/null 2>"$tmp/err" ||
  fail "sweep: $(cat "$tmp/err")"
"$sim" run "$tmp/sweep/config.toml" --quiet --no-plots --out "$tmp/sweep2" >/dev/null 2>"$tmp/err" ||
  fail "run of a sweep's config.toml: $(cat "$tmp/err")"
cmp -s <(grep -o '"run":"[^"]*"' "$tmp/sweep/metrics.jsonl") <(grep -o '"run":"[^"]*"' "$tmp/sweep2/metrics.jsonl") ||
  fail "the sweep's config.toml ran other runs"

# every metrics line is a whole JSON object, and the file ends with a newline
check_jsonl() {
  [ -s "$1" ] || fail "$1 is empty"
  [ "$(tail -c 1 "$1" | od -An -c | tr -d ' ')" = '\n' ] || fail "$1 does not end with a whole line"
  while IFS= read -r line; do
    case "$line" in "{"*"}") ;; *) fail "metrics line is not a JSON object: $line" ;; esac
  done <"$1"
}

# SIGINT, SIGTERM, SIGHUP: a long run is interrupted after its first metrics lines; exit 128 + signal
for sig in INT:130 TERM:143 HUP:129; do
  name=${sig%%:*}; code=${sig##*:}
  "$sim" run "$tmp/small.toml" --set run.max_samples=2000000000 --set run.eval_every_round=true --quiet \
    --no-plots --out "$tmp/int$name" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  for _ in $(seq 1 300); do
    [ -s "$tmp/int$name/metrics.jsonl" ] && break
    sleep 0.1
  done
  [ -s "$tmp/int$name/metrics.jsonl" ] || { kill -9 $pid; fail "no metrics line after 30 s"; }
  kill -$name $pid
  wait $pid; rc=$?
  [ $rc -eq $code ] || fail "SIG$name: exit $rc, expected $code; $(cat "$tmp/err")"
  grep -q '"interrupted": *true' "$tmp/int$name/summary.json" || fail "SIG$name: summary.json does not say interrupted"
  grep -q "interrupted" "$tmp/int$name/summary.md" || fail "SIG$name: summary.md does not say interrupted"
  grep -q "SIG$name" "$tmp/int$name/summary.json" || fail "SIG$name: the summary does not name the signal"
  check_jsonl "$tmp/int$name/metrics.jsonl"
done

# a full disk mid-run, made deterministic by a file-size limit (writes past it fail with EFBIG): metrics.jsonl
# keeps whole lines, the summaries and the table are written with the real counters, the reason is named
(ulimit -f 8 && exec "$sim" run "$tmp/small.toml" --set run.eval_every_round=true --quiet --out "$tmp/full") \
  >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] || fail "full disk: exit $rc, expected 1; $(cat "$tmp/err")"
grep -q "metrics.jsonl" "$tmp/err" && grep -q "File too large" "$tmp/err" || fail "full disk message: $(cat "$tmp/err")"
grep -q "Success" "$tmp/err" && fail "full disk message says Success: $(cat "$tmp/err")"
check_jsonl "$tmp/full/metrics.jsonl"
grep -q '"status": "failed"' "$tmp/full/summary.json" || fail "full disk: the run is not marked failed"
steps=$(grep -m1 '"steps"' "$tmp/full/summary.json" | tr -dc 0-9)
last=$(tail -n 1 "$tmp/full/metrics.jsonl" | grep -o '"step":[0-9]*' | tr -dc 0-9)
[ -n "$steps" ] && [ "$steps" -gt 0 ] && [ "$steps" -ge "$last" ] || fail "full disk: summary steps $steps, last line $last"
grep -q "| a " "$tmp/out" || fail "full disk: the table is not printed"
ls "$tmp/full" | grep -q '\.tmp$' && fail "full disk: a temporary file is left"
[ ! -e "$tmp/full/plots" ] || fail "full disk: plots were attempted"

# the first file cannot be written: nothing runs, no half file
(ulimit -f 1 && exec "$sim" run "$tmp/small.toml" --quiet --out "$tmp/full1") >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "config.toml" "$tmp/err" && grep -q "File too large" "$tmp/err" ||
  fail "config.toml on a full disk: exit $rc, $(cat "$tmp/err")"
[ ! -e "$tmp/full1/config.toml" ] && [ ! -e "$tmp/full1/config.toml.tmp" ] || fail "a half config.toml is left"
[ ! -e "$tmp/full1/metrics.jsonl" ] || fail "a run started although config.toml could not be written"
echo "cli tests passed"
