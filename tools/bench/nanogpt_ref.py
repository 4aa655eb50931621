#!/usr/bin/python3
"""Independent PyTorch (eager, Python) run of nanoGPT's CPU recipe, to check lmgrid's GPT result.

Written from the recipe's description (4 layers, 4 heads, 128 wide, context 64, batch 12, 2000
steps, AdamW lr 1e-3 with 100 warm-up steps and cosine decay to 1e-4, betas 0.9/0.99, weight
decay 0.1 on matrices, clip 1.0, no bias, no dropout, GPT-2 initialisation, tied embeddings,
90/10 split of tiny Shakespeare). It evaluates the same model two ways at every eval step:

  full   the mean loss over the whole val split in non-overlapping 64-token windows (lmgrid's
         `val/loss`), and
  est20  nanoGPT's estimator: the mean over 20 random batches of 12 windows (eval_iters=20),
         drawn 30 times to show its spread.

At the end it prints what nanoGPT would report as best_val_loss (the minimum over evaluations
of one estimator draw each), summarised over the 30 simulated logs.

Usage: tools/bench/nanogpt_ref.py [--seed S] [--threads N] [--data PATH] [--steps N] [--no-eval]
Needs python3-torch (Debian). Prints one line per evaluation and a summary.
"""
import argparse
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def find_data(explicit):
    if explicit:
        return explicit
    for d in os.environ.get("LMGRID_DATA_PATH", "../shared/data").split(":"):
        p = os.path.join(d, "tinyshakespeare", "input.txt")
        if os.path.exists(p):
            return p
    raise SystemExit("tiny Shakespeare not found: pass --data or set LMGRID_DATA_PATH")


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d, bias=False)
        self.fc_proj = nn.Linear(4 * d, d, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.h)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, block, n_layer=4, n_head=4, d=128):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(block, d)
        self.blocks = nn.ModuleList(Block(d, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.LayerNorm) and m.bias is not None:
                # the recipe has no biases: keep LayerNorm's bias at zero and frozen
                m.bias.requires_grad_(False)
        for b in self.blocks:
            nn.init.normal_(b.proj.weight, 0.0, 0.02 / math.sqrt(2 * n_layer))
            nn.init.normal_(b.fc_proj.weight, 0.0, 0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.blocks:
            x = b(x)
        return self.ln_f(x) @ self.wte.weight.t()


def lr_at(it, lr=1e-3, lr_min=1e-4, warmup=100, decay=2000):
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return lr_min
    r = (it - warmup) / (decay - warmup)
    return lr_min + 0.5 * (1.0 + math.cos(math.pi * r)) * (lr - lr_min)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--no-eval", action="store_true", help="train only (speed comparisons: tools/bench/vs_eager.sh)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    text = open(find_data(a.data), encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    train, val = data[:n], data[n:]
    T, B = 64, 12
    model = GPT(len(chars), T)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(a.seed + 1)

    def batch(split, g):
        ix = torch.randint(len(split) - T, (B,), generator=g)
        return torch.stack([split[i:i + T] for i in ix]), torch.stack([split[i + 1:i + T + 1] for i in ix])

    @torch.no_grad()
    def evaluate():
        model.eval()
        nw = (len(val) - 1) // T
        xs = val[: nw * T].view(nw, T)
        ys = val[1: nw * T + 1].view(nw, T)
        losses = []
        for i in range(0, nw, 64):
            lg = model(xs[i:i + 64])
            losses.append(F.cross_entropy(lg.reshape(-1, lg.shape[-1]), ys[i:i + 64].reshape(-1), reduction="sum"))
        full = float(sum(losses)) / (nw * T)
        eg = torch.Generator().manual_seed(99)
        est = []
        for _ in range(30):
            ls = []
            for _ in range(20):
                x, y = batch(val, eg)
                lg = model(x)
                ls.append(F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1)).item())
            est.append(sum(ls) / len(ls))
        model.train()
        m = sum(est) / len(est)
        sd = math.sqrt(sum((e - m) ** 2 for e in est) / (len(est) - 1))
        return full, m, sd, min(est), max(est), est

    t0 = time.time()
    draws = []  # per evaluation: the 30 draws of nanoGPT's estimator
    for it in range(1, a.steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(it - 1, decay=a.steps)
        x, y = batch(train, gen)
        lg = model(x)
        loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if a.no_eval:
            continue
        if it % 250 == 0 or it == a.steps:
            full, m, sd, lo, hi, est = evaluate()
            draws.append(est)
            print(f"step {it} train {loss.item():.4f} val_full {full:.4f} est20 mean {m:.4f} sd {sd:.4f} "
                  f"range [{lo:.4f}, {hi:.4f}] {it * B * T / (time.time() - t0):.0f} tok/s", flush=True)

    if a.no_eval:
        print(f"train {loss.item():.4f} after {a.steps} steps, {a.steps * B * T / (time.time() - t0):.0f} tok/s")
        return
    # What nanoGPT itself would print as best_val_loss: the minimum over its evaluations of one
    # estimator draw each (draw k of every evaluation taken together = one simulated nanoGPT log).
    best = [min(d[k] for d in draws) for k in range(len(draws[0]))]
    m = sum(best) / len(best)
    sd = math.sqrt(sum((b - m) ** 2 for b in best) / (len(best) - 1))
    print(f"nanogpt-style best_val_loss over {len(best)} simulated logs: mean {m:.4f} sd {sd:.4f} "
          f"<=1.90 {sum(b <= 1.90 for b in best)}/{len(best)} <=1.88 {sum(b <= 1.88 for b in best)}/{len(best)}",
          flush=True)


if __name__ == "__main__":
    main()
