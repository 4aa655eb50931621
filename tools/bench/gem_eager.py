#!/usr/bin/env python3
"""A plain eager PyTorch GEM, the Python baseline for tools/bench/bench_gem.sh.

Same model as plugins/arch/gem (written here from the equations in its README, batched: one memory
per sequence, out-of-place updates): pre-LN blocks, LayerNorm without bias, Q/K/V/proj with bias,
memory A = softmax(x K0^T / sqrt d), chunked dual-form read r = A_q V - tril(A_q A_k^T, -1) D,
write V <- V - A_k^T D, GELU MLP, learned positions, tied head. Trains on random windows of tiny
Shakespeare (char level) with AdamW (lr 1e-3, betas (0.9, 0.99), wd 0.01) and clip 1.0, and prints
tokens/s over the timed steps after a warm-up.

    python3 tools/bench/gem_eager.py --steps 40 --warmup 5 --threads 2
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import eager_train


class Block(nn.Module):
    def __init__(self, d, m, b):
        super().__init__()
        self.b = b
        self.ln1 = nn.LayerNorm(d, bias=False) if "bias" in nn.LayerNorm.__init__.__code__.co_varnames else nn.LayerNorm(d)
        if self.ln1.bias is not None:  # torch < 2.1 has no bias=False: freeze a zero bias
            self.ln1.bias.requires_grad_(False)
        self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))
        self.K0 = nn.Parameter(torch.randn(m, d))
        self.V0 = nn.Parameter(torch.randn(m, d))
        self.ln2 = nn.LayerNorm(d)
        if self.ln2.bias is not None:
            self.ln2.bias.requires_grad_(False)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def memory(self, q, k, v):
        B, T, d = q.shape
        aq = torch.softmax(q @ self.K0.t() / math.sqrt(d), -1)
        ak = torch.softmax(k @ self.K0.t() / math.sqrt(d), -1)
        V = self.V0.expand(B, -1, -1)
        outs = []
        for s in range(0, T, self.b):
            aq_c, ak_c, v_c = aq[:, s:s + self.b], ak[:, s:s + self.b], v[:, s:s + self.b]
            D = ak_c @ V - v_c
            S = torch.tril(aq_c @ ak_c.transpose(1, 2), -1)
            outs.append(aq_c @ V - S @ D)
            V = V - ak_c.transpose(1, 2) @ D
        return torch.cat(outs, 1)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.proj(self.memory(self.q(h), self.k(h), self.v(h)))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GEM(nn.Module):
    def __init__(self, vocab=65, T=64, d=128, layers=4, m=64, b=16):
        super().__init__()
        self.head = nn.Linear(d, vocab, bias=False)
        self.tok = nn.Embedding(vocab, d)
        self.tok.weight = self.head.weight
        self.pos = nn.Embedding(T, d)
        nn.init.normal_(self.pos.weight, 0, 0.02)
        self.blocks = nn.ModuleList(Block(d, m, b) for _ in range(layers))
        self.lnf = nn.LayerNorm(d)
        self.lnf.bias.requires_grad_(False)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.lnf(x))


def main():
    a = eager_train.parse_args("gem_eager.py")
    data, vocab = eager_train.char_data(a.data)
    eager_train.train("gem_eager", a, GEM(vocab=vocab, T=a.T), data, vocab, lr=1e-3, betas=(0.9, 0.99),
                      weight_decay=0.01)


if __name__ == "__main__":
    main()
