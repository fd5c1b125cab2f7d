#!/usr/bin/env bash
# The MPI engine's tests (issue 6): equivalence with the in-process run for P = 1, 2, 4 ranks, failure handling
# (an exception, bad data or a killed process on one rank ends the whole job, with that rank's message, instead
# of hanging), and lgm-sim --engine mpi. Every mpirun runs under `timeout`: a hang fails the test.
# Usage: run_mpi_tests.sh MPIRUN LGM_MPI_TESTS LGM_MPI_FAIL [LGM_SIM]
set -uo pipefail
mpirun=$1 tests=$2 failprog=$3 sim=${4:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # CI containers run as root
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
# keep Open MPI quiet and local: no network interfaces to probe in a container
export OMPI_MCA_btl=self,vader OMPI_MCA_plm_rsh_agent=false
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
mpi() { local p=$1; shift; timeout 120 "$mpirun" --oversubscribe -np "$p" "$@"; }

# ---- the library: MpiCommunicator against InProcessCommunicator
for p in 1 2 4; do
  mpi $p "$tests" >"$tmp/out" 2>&1; rc=$?
  [ $rc -eq 0 ] || { cat "$tmp/out"; fail "lgm_mpi_tests with P = $p: exit $rc"; }
  echo "ok: lgm_mpi_tests, P = $p"
done

# ---- failure on one rank: the job ends (no timeout, status 124) with that rank's message
mpi 4 "$failprog" ok >"$tmp/out" 2>&1 || fail "fail_program ok: $(cat "$tmp/out")"
grep -q "^ok: budget reached" "$tmp/out" || fail "fail_program ok: $(cat "$tmp/out")"
mpi 4 "$failprog" throw 2 >"$tmp/out" 2>&1; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "exception on rank 2: exit $rc (124 = hang); $(cat "$tmp/out")"
grep -q "fail_program: rank 2 of 4: worker batch check failed at step 5" "$tmp/out" || fail "exception message: $(cat "$tmp/out")"
echo "ok: an exception on rank 2 ends all ranks (exit $rc)"
mpi 4 "$failprog" baddata 1 >"$tmp/out" 2>&1; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "bad data on rank 1: exit $rc; $(cat "$tmp/out")"
grep -q "fail_program: rank 1 of 4: .*finite" "$tmp/out" || fail "bad data message: $(cat "$tmp/out")"
echo "ok: bad data on rank 1 ends all ranks (exit $rc)"
mpi 4 "$failprog" kill 3 >"$tmp/out" 2>&1; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "killed rank 3: exit $rc; $(cat "$tmp/out")"
grep -qi "signal 9\|killed" "$tmp/out" || fail "killed rank message: $(cat "$tmp/out")"
echo "ok: a killed rank ends all ranks (exit $rc)"
mpi 4 "$failprog" diverge 1 >"$tmp/out" 2>&1 || fail "NaN gradients on rank 1: $(cat "$tmp/out")"
grep -q "^diverged: diverged: the minibatch loss is nan at step 5" "$tmp/out" || fail "diverge: $(cat "$tmp/out")"
echo "ok: NaN gradients on rank 1 stop every rank at the same step"

[ -n "$sim" ] || { echo "lgm-sim not built: its MPI checks skipped"; exit 0; }

# ---- lgm-sim --engine mpi: the same metrics as the in-process run
cat >"$tmp/small.toml" <<'TOML'
name = "mpi"
[run]
workers = 4
max_samples = 12000
eval_every_round = true
[problem]
type = "logistic"
N = 600
d = 8
[[variant]]
name = "local_sgd"
sync.H = 4
[[variant]]
name = "norm_test"
batch.type = "norm"
batch.b_max = 64
[[variant]]
name = "shb_avg"
optimizer.type = "heavy_ball"
optimizer.average_state = true
TOML
strip() { sed -E 's/"wall_time_s": *[^,}]*//' "$1"; }
"$sim" run "$tmp/small.toml" --quiet --no-plots --out "$tmp/ref" >/dev/null 2>"$tmp/err" || fail "in-process: $(cat "$tmp/err")"
for p in 1 2 4; do
  mpi $p "$sim" run "$tmp/small.toml" --engine mpi --mpi-reduction ordered --quiet --no-plots --out "$tmp/o$p" \
    >"$tmp/out" 2>&1 || fail "lgm-sim --engine mpi, P = $p: $(cat "$tmp/out")"
  cmp -s <(strip "$tmp/ref/metrics.jsonl") <(strip "$tmp/o$p/metrics.jsonl") ||
    fail "P = $p ordered: metrics.jsonl differs from the in-process run"
  grep -q "\"ranks\": $p" "$tmp/o$p/summary.json" || fail "summary.json has no mpi.ranks = $p"
  echo "ok: lgm-sim --engine mpi --mpi-reduction ordered, P = $p: metrics.jsonl bitwise equal to in-process"
done
mpi 2 "$sim" run "$tmp/small.toml" --engine mpi --quiet --no-plots --out "$tmp/a2" >"$tmp/out" 2>&1 ||
  fail "lgm-sim --engine mpi (allreduce), P = 2: $(cat "$tmp/out")"
if command -v python3 >/dev/null; then
  python3 - "$tmp/ref/metrics.jsonl" "$tmp/a2/metrics.jsonl" <<'PY' || fail "allreduce P = 2: metrics differ by more than 1e-12"
import json, sys
ref = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
assert len(ref) == len(got), (len(ref), len(got))
for r, g in zip(ref, got):
    for k, v in r.items():
        if k == "wall_time_s" or v is None or isinstance(v, str):
            assert v == g[k] or k == "wall_time_s", (k, v, g[k])
            continue
        assert abs(g[k] - v) <= 1e-12 * max(abs(v), 1e-300), (r["run"], r["round"], k, v, g[k])
PY
  echo "ok: lgm-sim --engine mpi (allreduce), P = 2: metrics within 1e-12 relative"
fi

# M not divisible by P: rejected before any run, the message printed once, status 2
mpi 3 "$sim" run "$tmp/small.toml" --engine mpi --quiet --no-plots --out "$tmp/bad" >"$tmp/out" 2>&1; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "M = 4 over 3 ranks: exit $rc; $(cat "$tmp/out")"
[ "$(grep -c "a multiple of the number of MPI ranks P = 3" "$tmp/out")" -eq 1 ] || fail "M % P message: $(cat "$tmp/out")"
[ ! -e "$tmp/bad/metrics.jsonl" ] || fail "M % P: a run started"
echo "ok: M = 4 over P = 3 ranks is rejected (exit $rc)"

# a network under --engine mpi: refused before any run, once, status 2 (its replicas live in one process)
printf 'the cat sat on the mat.\n%.0s' $(seq 1 200) >"$tmp/text.txt"
mpi 2 "$sim" run "$tmp/small.toml" --engine mpi --quiet --no-plots --out "$tmp/net" --set problem.type=gpt \
  --set problem.data=text --set problem.path="$tmp/text.txt" --set problem.device=cuda >"$tmp/out" 2>&1; rc=$?
[ $rc -eq 2 ] || fail "a network under --engine mpi: exit $rc (expected 2); $(cat "$tmp/out")"
[ "$(grep -c "invalid --engine = mpi" "$tmp/out")" -eq 1 ] || fail "network under mpi message: $(cat "$tmp/out")"
echo "ok: a network run under --engine mpi is refused once (exit 2)"

# a data file missing on one rank (MPMD: rank 1 runs in a directory without it): one message, every rank exits
mkdir -p "$tmp/with" "$tmp/without"
printf '+1 1:0.5 2:1.0\n-1 1:-0.5 2:0.25\n+1 1:1.5 2:-1.0\n-1 1:-1.0 2:0.5\n' >"$tmp/with/data.svm"
cat >"$tmp/svm.toml" <<'TOML'
name = "svm"
[run]
workers = 2
max_steps = 10
[problem]
type = "logistic"
data = "libsvm"
path = "data.svm"
[[variant]]
name = "a"
batch.b = 2
TOML
timeout 120 "$mpirun" --oversubscribe -np 1 -wdir "$tmp/with" "$sim" run "$tmp/svm.toml" --engine mpi --quiet --no-plots \
  --out "$tmp/svm" : -np 1 -wdir "$tmp/without" "$sim" run "$tmp/svm.toml" --engine mpi --quiet --no-plots \
  --out "$tmp/svm" >"$tmp/out" 2>&1; rc=$?
[ $rc -eq 2 ] || fail "data file missing on rank 1: exit $rc (expected 2); $(cat "$tmp/out")"
[ "$(grep -c "lgm-sim: rank 1 of 2: .*data.svm" "$tmp/out")" -eq 1 ] || fail "missing file message: $(cat "$tmp/out")"
echo "ok: a data file missing on rank 1 is reported once by rank 1, every rank exits 2"

# a rank of lgm-sim killed mid-run: mpirun ends the job
mpi 2 "$sim" run "$tmp/small.toml" --engine mpi --set run.max_samples=2000000000 --quiet --no-plots \
  --out "$tmp/kill" >"$tmp/out" 2>&1 &
job=$!
for _ in $(seq 1 300); do [ -s "$tmp/kill/metrics.jsonl" ] && break; sleep 0.1; done
victim=$(pgrep -n -f "lgm-sim run $tmp/small.toml --engine mpi --set run.max_samples=2000000000" || true)
[ -n "$victim" ] || { kill $job; fail "no lgm-sim rank to kill"; }
kill -9 "$victim"
wait $job; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "killed lgm-sim rank: exit $rc; $(cat "$tmp/out")"
echo "ok: a killed lgm-sim rank ends the job (exit $rc)"
echo "all MPI tests passed"
