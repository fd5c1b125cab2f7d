#!/usr/bin/env python3
"""The GPT of lgm (gpu/include/lgm/gpu/nn/gpt.hpp) written the usual PyTorch way, two uses
(docs/nn.md §PyTorch parity, docs/performance.md §Transformer against PyTorch):

  torch_gpt.py parity DIR   loads what lgm_gpt_parity_omp wrote into DIR (spec, weights, tokens, lgm's loss and
                            gradient), runs the same model in fp32 and compares: loss to 1e-5 and every tensor's
                            gradient to 1e-4 relative (max |diff| / max |torch|). Exit 0 when both hold, 1 if not.
  torch_gpt.py bench ...    tokens/s of a training step (forward, backward, AdamW) of the model, one model or M
                            models in a loop; key=value lines as lgm_gpt_bench_omp prints.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        # nanoGPT's explicit path (Debian's torch 1.13 has no scaled_dot_product_attention)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        y = att.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Mlp(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, 4 * width)
        self.proj = nn.Linear(4 * width, width)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, width, heads, eps):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.mlp = Mlp(width)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt(nn.Module):
    """GPT-2: token + position embedding, pre-LN blocks, final layer norm, output projection tied to wte."""

    def __init__(self, layers, heads, width, context, vocab, eps=1e-5):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList([Block(width, heads, eps) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width, eps=eps)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def torch_name(lgm_name):
    """lgm's 'h0.attn.qkv.weight' is this module's 'h.0.attn.qkv.weight'; 'wte.weight' is lgm's 'wte'."""
    if lgm_name in ("wte", "wpe"):
        return lgm_name + ".weight"
    if lgm_name.startswith("h"):
        layer, rest = lgm_name[1:].split(".", 1)
        return "h." + layer + "." + rest
    return lgm_name


def parity(directory):
    meta = json.load(open(os.path.join(directory, "meta.json")))
    params = np.fromfile(os.path.join(directory, "params.f32"), dtype=np.float32)
    grad = np.fromfile(os.path.join(directory, "grad.f32"), dtype=np.float32)
    shape = (meta["batch"], meta["seq"])
    tokens = torch.from_numpy(np.fromfile(os.path.join(directory, "tokens.i32"), dtype=np.int32).astype(np.int64))
    targets = torch.from_numpy(np.fromfile(os.path.join(directory, "targets.i32"), dtype=np.int32).astype(np.int64))
    model = Gpt(meta["layers"], meta["heads"], meta["width"], meta["context"], meta["vocab"], meta["ln_eps"])
    named = dict(model.named_parameters())
    assert len(named) == len(meta["tensors"]), (len(named), len(meta["tensors"]))
    with torch.no_grad():
        for t in meta["tensors"]:
            p = named[torch_name(t["name"])]
            size = int(np.prod(t["shape"]))
            assert list(p.shape) == t["shape"], (t["name"], list(p.shape), t["shape"])
            p.copy_(torch.from_numpy(params[t["offset"]:t["offset"] + size].reshape(t["shape"])))
    loss = model(tokens.view(shape), targets.view(shape))
    loss.backward()
    loss_diff = abs(loss.item() - meta["loss"])
    print(f"torch_gpt parity: loss lgm {meta['loss']:.9f} torch {loss.item():.9f} |diff| {loss_diff:.3e}")
    worst = 0.0
    for t in meta["tensors"]:
        g = named[torch_name(t["name"])].grad.numpy().reshape(-1)
        ours = grad[t["offset"]:t["offset"] + g.size]
        rel = float(np.abs(ours - g).max() / max(np.abs(g).max(), 1e-30))
        worst = max(worst, rel)
        print(f"  {t['name']:<24} {str(t['shape']):<14} max|g| {np.abs(g).max():.3e}  relative diff {rel:.2e}")
    ok = loss_diff <= 1e-5 * max(1.0, abs(loss.item())) and worst <= 1e-4
    print(f"torch_gpt parity: loss diff {loss_diff:.2e} (<= 1e-5), worst gradient {worst:.2e} (<= 1e-4): "
          + ("agree" if ok else "DISAGREE"))
    return 0 if ok else 1


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers, heads, width, context, vocab = (int(v) for v in args.spec.split(","))
    models = [Gpt(layers, heads, width, context, vocab) for _ in range(args.replicas)]
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.1) for m in models]
    idx = torch.randint(0, vocab, (args.batch, args.seq))
    tgt = torch.randint(0, vocab, (args.batch, args.seq))

    def step():
        for m, o in zip(models, opts):
            o.zero_grad(set_to_none=True)
            m(idx, tgt).backward()
            o.step()

    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.reps):
        n, t0 = 0, time.perf_counter()
        while True:
            step()
            n += 1
            if time.perf_counter() - t0 >= args.seconds:
                break
        rates.append(n * args.replicas * args.batch * args.seq / (time.perf_counter() - t0))
    print(f"torch_gpt case={args.case} spec={args.spec} replicas={args.replicas} batch={args.batch} seq={args.seq} "
          f"threads={args.threads} tokens_per_s={statistics.median(rates):.1f}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("parity")
    p.add_argument("dir")
    b = sub.add_parser("bench")
    b.add_argument("--case", default="a")
    b.add_argument("--spec", default="2,2,64,64,256", help="layers,heads,width,context,vocab")
    b.add_argument("--replicas", type=int, default=1)
    b.add_argument("--batch", type=int, default=16)
    b.add_argument("--seq", type=int, default=64)
    b.add_argument("--threads", type=int, default=os.cpu_count())
    b.add_argument("--warmup", type=int, default=2)
    b.add_argument("--reps", type=int, default=3)
    b.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    return parity(args.dir) if args.mode == "parity" else bench(args)


if __name__ == "__main__":
    sys.exit(main())
