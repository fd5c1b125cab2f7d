#!/usr/bin/env bash
# Kill and resume (docs/simulator.md §Checkpoint and resume): runs with checkpoints are killed with SIGKILL at
# random points after their first checkpoint, continued with `lgm-sim resume DIR`, and their metrics.jsonl and
# summary.json must be byte for byte those of an uninterrupted run (wall times aside), and so must the final
# parameters of every run (run.save_model: model_<k>_<variant>.npy).
# Cases: a convex experiment of two variants (killed in either), a small ResNet on generated CIFAR-10 files, a
# small GPT on a generated text.
# Usage: resume_test.sh /path/to/lgm-sim [kills per case (default 2)]
set -uo pipefail
sim=$1
kills=${2:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
command -v python3 >/dev/null || { echo "SKIP: python3 not found (writes the test data)"; exit 77; }

python3 - "$tmp" <<'PY'
import os, random, sys
tmp = sys.argv[1]
random.seed(1)
d = os.path.join(tmp, "cifar"); os.makedirs(d)
for f in ["data_batch_%d.bin" % i for i in range(1, 6)] + ["test_batch.bin"]:
    with open(os.path.join(d, f), "wb") as out:
        for r in range(16):
            label = r % 10
            out.write(bytes([label]) + bytes(min(255, random.randrange(128) + 12 * label) for _ in range(3072)))
with open(os.path.join(tmp, "text.txt"), "w") as out:
    for i in range(400):
        out.write("the cat sat on the mat %d.\n" % (i % 7))
PY

cat > "$tmp/convex.toml" <<'TOML'
name = "convex"
[run]
workers = 4
max_steps = 40000
eval_points = 30
threads = 2
save_model = true
[problem]
type = "logistic"
N = 4000
d = 40
[sampler]
type = "shuffled"
[batch]
type = "norm"
b = 4
b_max = 64
[outer]
type = "nesterov"
[checkpoint]
every_steps = 2000
[[variant]]
name = "norm"
[[variant]]
name = "hb"
optimizer.type = "heavy_ball"
optimizer.lr = 0.05
TOML

cat > "$tmp/resnet.toml" <<TOML
name = "resnet"
[run]
workers = 2
max_steps = 160
eval_points = 8
threads = 2
save_model = true
[problem]
type = "resnet"
data = "cifar10"
path = "$tmp/cifar"
depth = 8
width = 4
augment = true
bn_sync = "averaged"
eval_samples = 16
[optimizer]
type = "heavy_ball"
lr = 0.05
[sync]
H = 2
[batch]
b = 8
[checkpoint]
every_steps = 4
TOML

cat > "$tmp/gpt.toml" <<TOML
name = "gpt"
[run]
workers = 2
max_steps = 80
eval_points = 8
threads = 2
save_model = true
[problem]
type = "gpt"
data = "text"
path = "$tmp/text.txt"
layers = 1
width = 32
context = 16
eval_samples = 8
[optimizer]
type = "adamw"
lr = 0.005
weight_decay = 0.1
[schedule]
type = "warmup_cosine"
warmup = 0.1
[sync]
H = 4
[batch]
type = "norm"
b = 4
b_min = 4
b_max = 32
estimator = "micro_batch_means"
micro_batches = 2
[checkpoint]
every_steps = 8
TOML

strip() { sed -E 's/"wall_time_s":[^,}]*//g' "$1"; }

cases="convex resnet gpt"
if ! "$sim" validate "$tmp/gpt.toml" >/dev/null 2>"$tmp/err"; then  # a build without Thrust runs no networks
  grep -q "cannot run networks" "$tmp/err" || fail "the GPT case is not valid: $(cat "$tmp/err")"
  echo "SKIP (in part): this lgm-sim runs no networks; the ResNet and GPT cases are skipped"
  cases="convex"
fi
for case in $cases; do
  "$sim" run "$tmp/$case.toml" --out "$tmp/$case-ref" --quiet --no-plots >/dev/null 2>"$tmp/err" ||
    fail "$case: the uninterrupted run failed: $(cat "$tmp/err")"
  [ ! -e "$tmp/$case-ref/checkpoint.bin" ] || fail "$case: a finished run keeps its checkpoint.bin"
  compgen -G "$tmp/$case-ref/model_*.npy" >/dev/null || fail "$case: run.save_model wrote no model_*.npy"
  for k in $(seq 1 "$kills"); do
    out="$tmp/$case-$k"
    "$sim" run "$tmp/$case.toml" --out "$out" --quiet --no-plots >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do [ -e "$out/checkpoint.bin" ] && break; sleep 0.05; done
    [ -e "$out/checkpoint.bin" ] || { kill -9 $pid 2>/dev/null; fail "$case: no checkpoint.bin after 30 s"; }
    sleep "0.$(( RANDOM % 9 ))$(( RANDOM % 10 ))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    if [ -e "$out/summary.json" ]; then
      echo "note: $case kill $k came after the run ended; nothing to resume"
      continue
    fi
    "$sim" resume "$out" --quiet --no-plots >/dev/null 2>"$tmp/err" || fail "$case: resume failed: $(cat "$tmp/err")"
    cmp -s <(strip "$tmp/$case-ref/metrics.jsonl") <(strip "$out/metrics.jsonl") ||
      fail "$case kill $k: metrics.jsonl differs from the uninterrupted run's"
    cmp -s <(strip "$tmp/$case-ref/summary.json") <(strip "$out/summary.json") ||
      fail "$case kill $k: summary.json differs from the uninterrupted run's"
    for m in "$tmp/$case-ref"/model_*.npy; do
      cmp -s "$m" "$out/$(basename "$m")" || fail "$case kill $k: $(basename "$m") differs from the uninterrupted run's"
    done
    [ ! -e "$out/checkpoint.bin" ] || fail "$case: the resumed run keeps its checkpoint.bin"
  done
done

# a damaged checkpoint and an edited config.toml are refused with exit 2, naming the file
out="$tmp/convex-damaged"
"$sim" run "$tmp/convex.toml" --out "$out" --quiet --no-plots >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -e "$out/checkpoint.bin" ] && break; sleep 0.05; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
[ -e "$out/checkpoint.bin" ] || fail "damaged-checkpoint case: no checkpoint.bin after 30 s"
cp "$out/checkpoint.bin" "$tmp/good.bin"
printf 'X' | dd of="$out/checkpoint.bin" bs=1 seek=100 conv=notrunc 2>/dev/null
"$sim" resume "$out" --quiet 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "checkpoint.bin" "$tmp/err" && grep -q "checksum" "$tmp/err" ||
  fail "damaged checkpoint: exit $rc, $(cat "$tmp/err")"
cp "$tmp/good.bin" "$out/checkpoint.bin"
cp "$out/config.toml" "$tmp/good.toml"
sed -i 's/^lr = 0.1$/lr = 0.2/' "$out/config.toml"
"$sim" resume "$out" --quiet 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "another configuration" "$tmp/err" || fail "edited config: exit $rc, $(cat "$tmp/err")"
cp "$tmp/good.toml" "$out/config.toml"
: >"$out/metrics.jsonl"  # lines the checkpoint counts were lost (a power loss before they reached the disk)
"$sim" resume "$out" --quiet 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "shorter than" "$tmp/err" || fail "short metrics.jsonl: exit $rc, $(cat "$tmp/err")"
"$sim" resume "$tmp/nowhere" --quiet 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "nowhere" "$tmp/err" || fail "missing directory: exit $rc, $(cat "$tmp/err")"

echo "resume tests passed"
