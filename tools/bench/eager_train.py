"""What the eager PyTorch baselines (gem_eager.py, mamba2_eager.py) share: their command line, tiny
Shakespeare as characters, and the timed training loop (random windows, cross-entropy, AdamW with
clip 1.0), so that each script holds only its model."""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F


def parse_args(name, extra=None):
    """--steps, --warmup, --threads, --batch, --T, --data; threads and the seed set from them."""
    ap = argparse.ArgumentParser(prog=name)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--T", type=int, default=64)
    # Data as tools/setup.sh resolves it: the first LMGRID_DATA_PATH entry, else ../shared/data
    # beside the checkout.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    data_dir = os.environ.get("LMGRID_DATA_PATH", "").split(":")[0] or os.path.join(root, "..", "shared", "data")
    ap.add_argument("--data", default=os.path.join(data_dir, "tinyshakespeare", "input.txt"))
    if extra:
        extra(ap)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    if not os.path.exists(a.data):
        sys.exit(f"{name}: {a.data} not found (set LMGRID_DATA_PATH or --data)")
    return a


def char_data(path):
    """The first 200,000 characters of the file as ids, and the vocabulary size."""
    text = open(path).read()
    chars = sorted(set(text))
    return torch.tensor([chars.index(c) for c in text[:200000]], dtype=torch.long), len(chars)


def train(name, a, model, data, vocab, lr, betas, weight_decay):
    """a.warmup untimed steps, then a.steps timed ones; prints the tokens/s line the benchmarks read."""
    params = [p for p in model.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    T = a.T

    def step():
        ix = torch.randint(0, len(data) - T - 1, (a.batch,))
        x = torch.stack([data[i:i + T] for i in ix])
        y = torch.stack([data[i + 1:i + T + 1] for i in ix])
        loss = F.cross_entropy(model(x).view(-1, vocab), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    loss = float("nan")
    for _ in range(a.steps):
        loss = step()
    dt = time.perf_counter() - t0
    print(f"{name}: torch {torch.__version__} threads {a.threads} params {n} loss {loss:.3f} "
          f"{a.steps * a.batch * T / dt:.0f} tok/s")
