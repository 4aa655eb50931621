#!/usr/bin/env python3
"""A plain eager PyTorch Mamba-2, the Python baseline for lmgrid's mamba2 in speed comparisons.

Same model as plugins/arch/mamba2 at the quickstart size (written here from the equations in its
header and README): embedding, n_layer x [x + Mixer(RMSNorm(x))], RMSNorm, tied head, no positions.
Mixer: in_proj (no bias) -> z, xBC, dt_raw; depthwise causal conv (width d_conv, bias) + SiLU over
xBC; dt = softplus(dt_raw + dt_bias), A = -exp(A_log); y = SSD(x, dt, A, B, C) + D x;
y = RMSNorm(y * silu(z)) * w; out_proj (no bias). The SSD scan is the chunked algorithm of the
Mamba-2 paper in einsums: per chunk the masked decay matrix exp(S_l - S_s) for the diagonal block,
the chunk's state, the recurrence over chunks and the state's read-out. Trains on random windows of
tiny Shakespeare (char level) with AdamW (lr 1e-3, betas (0.9, 0.95), wd 0.1) and clip 1.0, and
prints tokens/s over the timed steps after a warm-up.

    python3 tools/bench/mamba2_eager.py --steps 40 --warmup 5 --threads 2
    python3 tools/bench/mamba2_eager.py --check   # the chunked scan against the token-by-token recurrence
"""
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import eager_train


def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def ssd_chunked(x, dt, A, Bm, Cm, Q):
    """x (b,L,H,P), dt (b,L,H), A (H), Bm/Cm (b,L,G,N) with G = 1 here; L a multiple of Q."""
    b, L, H, P = x.shape
    N = Bm.shape[-1]
    c = L // Q
    a = (dt * A).view(b, c, Q, H).permute(0, 3, 1, 2)  # (b,H,c,Q) log-decays
    S = a.cumsum(-1)
    xdt = (x * dt.unsqueeze(-1)).view(b, c, Q, H, P)
    Bc = Bm.view(b, c, Q, N)  # one group: shared by every head
    Cc = Cm.view(b, c, Q, N)
    # Diagonal blocks: Y[l] = sum_{s<=l} (C_l . B_s) exp(S_l - S_s) xdt_s.
    seg = S.unsqueeze(-1) - S.unsqueeze(-2)  # (b,H,c,Q,Q): S_l - S_s
    mask = torch.ones(Q, Q, dtype=torch.bool).tril()
    decay = torch.exp(seg.masked_fill(~mask, -math.inf))
    scores = torch.einsum("bcln,bcsn->bcls", Cc, Bc)  # (b,c,Q,Q)
    y_diag = torch.einsum("bcls,bhcls,bcshp->bclhp", scores, decay, xdt)
    # Each chunk's own state: sum_s exp(S_last - S_s) xdt_s (x) B_s.
    to_end = torch.exp(S[..., -1:] - S)  # (b,H,c,Q)
    states = torch.einsum("bcsn,bhcs,bcshp->bchpn", Bc, to_end, xdt)
    # The recurrence over chunks: h_k = exp(S^k_last) h_{k-1} + states_{k-1}; h_0 = 0.
    h = x.new_zeros(b, H, P, N)
    incoming = []
    for k in range(c):
        incoming.append(h)
        h = torch.exp(S[:, :, k, -1]).view(b, H, 1, 1) * h + states[:, k]
    h_in = torch.stack(incoming, 1)  # (b,c,H,P,N)
    # The state's read-out: Y_off[l] = exp(S_l) C_l . h_in.
    y_off = torch.einsum("bcln,bchpn,bhcl->bclhp", Cc, h_in, torch.exp(S))
    return (y_diag + y_off).reshape(b, L, H, P)


class Mixer(nn.Module):
    def __init__(self, d, d_state=64, d_conv=4, expand=2, headdim=64, chunk=64):
        super().__init__()
        self.di, self.N, self.P, self.Q, self.k = expand * d, d_state, headdim, chunk, d_conv
        self.H = self.di // headdim
        self.conv_dim = self.di + 2 * d_state
        self.in_proj = nn.Linear(d, 2 * self.di + 2 * d_state + self.H, bias=False)
        self.conv = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, padding=d_conv - 1)
        dt = torch.exp(torch.rand(self.H) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp_min(1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.empty(self.H).uniform_(1, 16).log())
        self.D = nn.Parameter(torch.ones(self.H))
        self.norm_w = nn.Parameter(torch.ones(self.di))
        self.out_proj = nn.Linear(self.di, d, bias=False)

    def forward(self, u):
        b, L, _ = u.shape
        z, xBC, dt_raw = self.in_proj(u).split([self.di, self.conv_dim, self.H], -1)
        xBC = F.silu(self.conv(xBC.transpose(1, 2))[..., :L].transpose(1, 2))
        x, Bm, Cm = xBC.split([self.di, self.N, self.N], -1)
        dt = F.softplus(dt_raw + self.dt_bias)
        x = x.reshape(b, L, self.H, self.P)
        y = ssd_chunked(x, dt, -torch.exp(self.A_log), Bm, Cm, min(self.Q, L))
        y = (y + self.D.view(1, 1, -1, 1) * x).reshape(b, L, self.di)
        return self.out_proj(rms_norm(y * F.silu(z), self.norm_w))


class Mamba2(nn.Module):
    def __init__(self, vocab, d=128, layers=7):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        nn.init.normal_(self.emb.weight, 0, 0.02)
        self.mixers = nn.ModuleList(Mixer(d) for _ in range(layers))
        self.norms = nn.ParameterList(nn.Parameter(torch.ones(d)) for _ in range(layers))
        self.norm_f = nn.Parameter(torch.ones(d))

    def forward(self, idx):
        x = self.emb(idx)
        for mixer, w in zip(self.mixers, self.norms):
            x = x + mixer(rms_norm(x, w))
        return rms_norm(x, self.norm_f) @ self.emb.weight.t()


def check_scan():
    """ssd_chunked against h_t = exp(dt_t A) h_{t-1} + dt_t x_t (x) B_t, y_t = h_t . C_t (float64)."""
    torch.manual_seed(0)
    b, L, H, P, N, Q = 2, 48, 3, 4, 5, 16
    f = dict(dtype=torch.float64)
    x, dt, A = torch.randn(b, L, H, P, **f), 0.5 * torch.rand(b, L, H, **f), -2 * torch.rand(H, **f)
    Bm, Cm = torch.randn(b, L, 1, N, **f), torch.randn(b, L, 1, N, **f)
    y = ssd_chunked(x, dt, A, Bm, Cm, Q)
    h, ys = torch.zeros(b, H, P, N, **f), []
    for t in range(L):
        inject = (x[:, t] * dt[:, t, :, None])[..., None] * Bm[:, t, 0][:, None, None, :]
        h = torch.exp(dt[:, t] * A).view(b, H, 1, 1) * h + inject
        ys.append((h * Cm[:, t, 0][:, None, None, :]).sum(-1))
    ref = torch.stack(ys, 1)
    err = ((y - ref).abs().max() / ref.abs().max()).item()
    print(f"mamba2_eager --check: chunked scan vs recurrence, max relative error {err:.1e}")
    sys.exit(0 if err < 1e-12 else 1)


def main():
    if "--check" in sys.argv:
        check_scan()
    a = eager_train.parse_args("mamba2_eager.py")
    data, vocab = eager_train.char_data(a.data)
    eager_train.train("mamba2_eager", a, Mamba2(vocab), data, vocab, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)


if __name__ == "__main__":
    main()
