#!/usr/bin/env python3
"""The peer of lgm's Local SGD run in PyTorch on the CPU, written as a researcher would (issue 5).

One model copy per worker (torch.nn.Linear without bias), one torch.optim.SGD per copy, the parameters averaged
every H steps; logistic loss with the L2 term (lambda/2)||w||^2, in float64. It reads the data, the sample indices
of every worker and step and lgm's loss curve written by lgm_export_run, runs the same steps, and prints the largest
relative difference of the two loss curves and the worker-steps/s ratio lgm/torch, for lgm reading the features in
float64 (its default) and in float32 (use_float_features(), accumulating in double; torch stays float64).

usage: torch_local_sgd.py DIR [--threads N ...]   (DIR from lgm_export_run; default threads: 1 and all cores)
"""
import os
import sys
import time

import torch
import torch.nn.functional as F


def read_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition("=")
            meta[key.strip()] = value.strip()
    return meta


def read_tensor(path, dtype, shape):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    return torch.frombuffer(data, dtype=dtype).reshape(shape)


def run(features, labels, indices, M, H, lr, lam):
    """Local SGD with M model copies; returns the per-step mean over workers of the minibatch losses."""
    d = features.shape[1]
    models = [torch.nn.Linear(d, 1, bias=False, dtype=torch.float64) for _ in range(M)]
    for model in models:
        torch.nn.init.zeros_(model.weight)
    optimizers = [torch.optim.SGD(model.parameters(), lr=lr) for model in models]
    curve = []
    for k in range(indices.shape[0]):
        step_losses = []
        for m in range(M):
            idx = indices[k, m]
            xb, yb = features[idx], labels[idx]
            z = models[m](xb).squeeze(1)
            loss = F.softplus(-yb * z).mean() + 0.5 * lam * models[m].weight.pow(2).sum()
            optimizers[m].zero_grad()
            loss.backward()
            optimizers[m].step()
            step_losses.append(loss.item())
        curve.append(sum(step_losses) / M)
        if (k + 1) % H == 0:  # average the parameters of all workers
            with torch.no_grad():
                mean = torch.stack([model.weight for model in models]).mean(dim=0)
                for model in models:
                    model.weight.copy_(mean)
    return curve


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    folder = sys.argv[1]
    threads = [int(t) for t in sys.argv[sys.argv.index("--threads") + 1:]] if "--threads" in sys.argv else [1, os.cpu_count() or 1]
    meta = read_meta(folder + "/meta.txt")
    M, b, d, N, H, steps = (int(meta[k]) for k in ("M", "b", "d", "N", "H", "steps"))
    lr, lam = float(meta["lr"]), float(meta["lambda"])
    features = read_tensor(folder + "/features.f64", torch.float64, (N, d))
    labels = read_tensor(folder + "/labels.f64", torch.float64, (N,))
    indices = read_tensor(folder + "/indices.i64", torch.int64, (steps, M, b))
    lgm_curves = {"f64": read_tensor(folder + "/loss.f64", torch.float64, (steps,)).tolist()}
    if os.path.exists(folder + "/loss_f32.f64"):
        lgm_curves["f32"] = read_tensor(folder + "/loss_f32.f64", torch.float64, (steps,)).tolist()

    print(f"Local SGD, logistic regression: d = {d}, N = {N}, b = {b}, M = {M}, H = {H}, {steps} steps, lr = {lr}")
    for t in threads:
        torch.set_num_threads(t)
        run(features, labels, indices[: 2 * H], M, H, lr, lam)  # warm-up
        best, curve = 0.0, None
        for _ in range(3):
            t0 = time.perf_counter()
            curve = run(features, labels, indices, M, H, lr, lam)
            best = max(best, M * steps / (time.perf_counter() - t0))
        n = torch.get_num_threads()
        for prec, lgm_curve in lgm_curves.items():
            diff = max(abs(a - c) / abs(c) for a, c in zip(curve, lgm_curve))
            key = ("lgm_" if prec == "f64" else "lgm_f32_") + ("ws_per_s_1t" if n == 1 else "ws_per_s_2t")
            lgm_ws = float(meta[key])
            print(f"torch ({n} thread{'s' if n > 1 else ''}): {best:10.0f} worker-steps/s | lgm {prec} ({min(n, 2)} "
                  f"thread{'s' if n > 1 else ''}): {lgm_ws:10.0f} worker-steps/s | ratio lgm/torch = "
                  f"{lgm_ws / best:6.1f} | loss curves: largest relative difference {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
