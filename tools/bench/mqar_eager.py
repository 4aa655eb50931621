# An independent eager-PyTorch check of MQAR learning (written from Zoology's description, like
# data/mqar): (seq_len 64, 4 pairs), vocabulary 512, a 2-layer width-64 one-head GPT with learned
# positions and a tied head, AdamW (0.9, 0.95), wd 0.1, constant lr; prints the val accuracy over
# 256 fixed examples every 250 steps. It tells whether a plateau lmgrid shows on mqar is the task's
# (induction must form) or lmgrid's. Usage: python mqar_eager.py [batch=128] [steps=2000] [lr=1e-3]
# Measured here (1 thread, batch 128, lr 1e-3): accuracy 0.24-0.26 from step 750 to 1750, then
# 0.825 at step 2000 (loss 0.59).
import math, sys, time, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1); torch.manual_seed(0)
V, L, D, B = 512, 64, 4, int(sys.argv[1]) if len(sys.argv) > 1 else 128
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
lr = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-3
rng = np.random.default_rng(0)
def batch(n, rng):
    x = np.zeros((n, L), np.int64); y = np.zeros((n, L), np.int64); m = np.zeros((n, L), np.float32)
    space = (L - 2 * D) // 2
    p = 0.01 * np.arange(1, space + 1) ** (0.01 - 1); p /= p.sum()
    for i in range(n):
        k = rng.choice(np.arange(1, V // 2), D, replace=False); v = rng.choice(np.arange(V // 2, V), D, replace=False)
        x[i, 0:2 * D:2] = k; x[i, 1:2 * D:2] = v
        g = rng.choice(space, D, replace=False, p=p)
        x[i, 2 * D + 2 * g] = k; y[i, 2 * D + 2 * g] = v; m[i, 2 * D + 2 * g] = 1
    return torch.tensor(x), torch.tensor(y), torch.tensor(m)
class Block(nn.Module):
    def __init__(s, d):
        super().__init__(); s.l1 = nn.LayerNorm(d); s.qkv = nn.Linear(d, 3 * d, bias=False); s.o = nn.Linear(d, d, bias=False)
        s.l2 = nn.LayerNorm(d); s.f = nn.Sequential(nn.Linear(d, 4 * d, bias=False), nn.GELU(), nn.Linear(4 * d, d, bias=False))
    def forward(s, x):
        q, k, v = s.qkv(s.l1(x)).chunk(3, -1)
        x = x + s.o(F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], is_causal=True)[:, 0])
        return x + s.f(s.l2(x))
class M(nn.Module):
    def __init__(s, d=64):
        super().__init__(); s.e = nn.Embedding(V, d); s.p = nn.Embedding(L, d); s.b = nn.ModuleList([Block(d), Block(d)]); s.ln = nn.LayerNorm(d)
    def forward(s, x):
        h = s.e(x) + s.p(torch.arange(x.shape[1]))
        for b in s.b: h = b(h)
        return s.ln(h) @ s.e.weight.T
m = M(); opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
vx, vy, vm = batch(256, np.random.default_rng(123)); t0 = time.time()
for step in range(1, steps + 1):
    x, y, mk = batch(B, rng)
    lo = (F.cross_entropy(m(x).reshape(-1, V), y.reshape(-1), reduction="none") * mk.reshape(-1)).sum() / mk.sum()
    opt.zero_grad(); lo.backward(); opt.step()
    if step % 250 == 0:
        with torch.no_grad():
            acc = ((m(vx).argmax(-1) == vy).float() * vm).sum() / vm.sum()
        print(f"step {step} loss {lo.item():.3f} val acc {acc:.3f} {time.time()-t0:.0f}s", flush=True)
