#!/usr/bin/env python3
"""The PyTorch peer of lgm's network benchmark (lgm_nn_bench_omp, docs/performance.md, "Networks (ResNet-20) against
PyTorch"): training throughput of the same ResNet-20 on the CPU, written as a researcher would.

The network is the one lgm/gpu/nn/resnet.hpp builds for ResNetSpec::cifar(20, 16, 1, 28, 10): a 3x3 stem convolution
(no bias) + batch norm + ReLU, three stages of three basic blocks at 16, 32, 64 channels (stride 2 at the first block
of stages 2 and 3), each block relu(bn2(conv2(relu(bn1(conv1(a))))) + shortcut(a)) with the shortcut a 1x1
convolution + batch norm where the shape changes (option B), global average pooling and a linear classifier with
bias. Batch norm in training mode (eps 1e-5, momentum 0.1), one set of statistics per model. One step = forward,
cross-entropy, backward, torch.optim.SGD step (no momentum, no weight decay), fp32, synthetic images and labels made
once (as lgm's are already on the device).
  a  one model, b = 128
  b  8 separate models, one optimizer each, stepped one after another in a Python loop, b = 32 each

usage: torch_resnet.py [--threads N] [--cases a,b] [--reps R] [--seconds S] [--quick]
Prints human-readable lines and one "torch_resnet case=... img_per_s=..." line a case (median of R repetitions).
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet of depth 6n + 2, first-stage width w (ResNet-20: depth 20, w = 16)."""

    def __init__(self, depth=20, w=16, in_channels=1, classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Conv2d(in_channels, w, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(w)
        blocks, c = [], w
        for channels, stride in ((w, 1), (2 * w, 2), (4 * w, 2)):
            for i in range(n):
                blocks.append(BasicBlock(c, channels, stride if i == 0 else 1))
                c = channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.blocks(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def measure(models, batches, reps, seconds, warmup):
    """Median and best seconds of one step of every model (one after another), after `warmup` steps."""
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.01) for m in models]

    def step():
        for model, opt, (x, y) in zip(models, optimizers, batches):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        return loss.item()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    step()
    estimate = time.perf_counter() - t0
    steps = max(1, round(seconds / estimate))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times), min(times), steps, loss


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--cases", default="a,b")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0, help="length of one timed repetition")
    p.add_argument("--quick", action="store_true", help="a depth-8, width-4 network on 8x8 images, one step a rep")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    depth, width, side = (8, 4, 8) if args.quick else (20, 16, 28)
    if args.quick:
        args.reps, args.seconds = 2, 0.0
    cases = {"a": (1, 8 if args.quick else 128), "b": (2 if args.quick else 8, 4 if args.quick else 32)}
    print(f"PyTorch {torch.__version__} peer: ResNet-{depth} (w = {width}), {side}x{side}x1, 10 classes, fp32, "
          f"{torch.get_num_threads()} threads; median of {args.reps} repetitions")
    for case in args.cases.split(","):
        M, b = cases[case]
        models = [CifarResNet(depth, width, 1, 10).train() for _ in range(M)]
        batches = [(torch.randn(b, 1, side, side), torch.randint(0, 10, (b,))) for _ in range(M)]
        median, best, steps, loss = measure(models, batches, args.reps, args.seconds, 1 if args.quick else 2)
        images = M * b
        print(f"  case {case}: {M} model{'s' if M > 1 else ''} x b = {b}: {median * 1e3:9.2f} ms/step "
              f"{images / median:9.1f} img/s (best {images / best:.1f}; {steps} steps a repetition)")
        print(f"torch_resnet case={case} replicas={M} batch={b} threads={torch.get_num_threads()} "
              f"img_per_s={images / median:.6g} best_img_per_s={images / best:.6g} ms_per_step={median * 1e3:.6g} "
              f"last_loss={loss:.6g}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
