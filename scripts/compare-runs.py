#!/usr/bin/env python3
"""Compares two lgm-sim runs of one configuration on different devices (docs/simulator.md §Networks on a GPU).

    scripts/compare-runs.py DIR_A DIR_B [--rtol 1e-3] [--markdown]

The runs agree when their metrics.jsonl have the same records (run, round) with the same decisions, every
integer counter and batch size equal (round, step, samples, comm_rounds, bytes, H, batch_min, batch_mean,
batch_max), and every loss within a relative tolerance of the other's (batch_loss, loss, test_loss); the largest
test-accuracy gap is reported (an image whose two best classes are within rounding may flip). float32 kernels that add in another order (cuBLAS against Eigen's GEMM)
differ in the last bits at the first step and the differences grow with the steps, hence a tolerance well above
float32's epsilon for a short run. Prints one line (or a markdown table) per run; exit status 0 when they agree,
1 when they do not, 2 on a missing or malformed file.
"""
import argparse
import json
import math
import sys
from pathlib import Path

EXACT = ["step", "samples", "comm_rounds", "bytes", "H", "batch_min", "batch_mean", "batch_max"]
LOSSES = ["batch_loss", "loss", "test_loss"]


def read_records(directory):
    path = Path(directory) / "metrics.jsonl"
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        print(f"compare-runs: cannot read {path}: {e.strerror}", file=sys.stderr)
        sys.exit(2)
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            print(f"compare-runs: {path}:{n}: not JSON ({e.msg})", file=sys.stderr)
            sys.exit(2)
    return records


def relative(a, b):
    if a is None or b is None:
        return 0.0 if a is None and b is None else math.inf
    if a == b:
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def compare(a_records, b_records, rtol):
    """Per run name: (records, first mismatch or None, worst relative loss difference, worst accuracy gap)."""
    out = {}
    by_run = {}
    for r in a_records:
        by_run.setdefault(r["run"], [[], []])[0].append(r)
    for r in b_records:
        by_run.setdefault(r["run"], [[], []])[1].append(r)
    for run, (ra, rb) in by_run.items():
        mismatch, worst_loss, worst_acc = None, 0.0, 0.0
        if len(ra) != len(rb):
            mismatch = f"{len(ra)} records against {len(rb)}"
        for x, y in zip(ra, rb):
            if mismatch:
                break
            for key in ["round"] + EXACT:
                if x.get(key) != y.get(key):
                    mismatch = f"round {x.get('round')}: {key} {x.get(key)} against {y.get(key)}"
                    break
            for key in LOSSES:
                d = relative(x.get(key), y.get(key))
                worst_loss = max(worst_loss, d)
                if d > rtol and not mismatch:
                    mismatch = f"round {x.get('round')}: {key} {x.get(key)} against {y.get(key)} (relative {d:.2e})"
            acc_a, acc_b = x.get("test_accuracy"), y.get("test_accuracy")
            if (acc_a is None) != (acc_b is None):
                mismatch = mismatch or f"round {x.get('round')}: test_accuracy on one side only"
            elif acc_a is not None:
                worst_acc = max(worst_acc, abs(acc_a - acc_b))
        out[run] = (len(ra), mismatch, worst_loss, worst_acc)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance of the losses (default 1e-3)")
    p.add_argument("--markdown", action="store_true", help="a markdown table instead of lines")
    args = p.parse_args()
    a, b = read_records(args.a), read_records(args.b)
    if not a or not b:
        print("compare-runs: a run without records", file=sys.stderr)
        return 2
    result = compare(a, b, args.rtol)
    agree = True
    if args.markdown:
        print(f"| run | records | same decisions and counters | worst relative loss difference (tolerance {args.rtol:g}) "
              "| worst test-accuracy gap |")
        print("|---|---|---|---|---|")
    for run, (n, mismatch, worst_loss, worst_acc) in result.items():
        ok = mismatch is None
        agree &= ok
        if args.markdown:
            print(f"| {run} | {n} | {'yes' if mismatch is None else 'no: ' + mismatch} | {worst_loss:.2e} | "
                  f"{worst_acc:.4f} |")
        else:
            print(f"{run}: {n} records, {'agree' if ok else 'differ: ' + mismatch}, "
                  f"worst relative loss difference {worst_loss:.2e}, worst test-accuracy gap {worst_acc:.4f}")
    if args.markdown:
        print()  # the verdict is not a row of the table
    print(("agree" if agree else "differ") + f": {args.a} and {args.b}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
