"""PyTorch twins of three genjax architectures, for side-by-side train-step timing
(``benchmarks/run.py --torch``). Not a genjax dependency: ``pip install torch``.

- ``vae_digits``: configs/vae_digits.py (benchmarks/torch_vae_digits.py's encoder/decoder).
- ``pixelcnn``: configs/pixelcnn.py on binarized_digits: genjax.nn.masked.PixelCNN
  (mask-A 7x7, 5 residual blocks of 1x1 / 3x3 / 1x1 mask-B convs, 64 features,
  ReLU-1x1-ReLU-1x1 head), Bernoulli logits, binary cross-entropy.
- ``ddpm_digits``: configs/ddpm_digits.py: genjax.nn.unet.UNet (base 32, mults (1, 2),
  one ResBlock per level, attention at 8x8 and in the middle, AdaGN, 4 heads) with the
  eps-prediction loss on 16x16 images, grad clipping at 1, Adam.

Each twin has the same parameter count as the genjax network (``run.py`` prints both).
"""

from __future__ import annotations

import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_vae_digits import Decoder, Encoder, discretized_logistic_log_prob  # noqa: E402


# ---------------------------------------------------------------------------- PixelCNN

class MaskedConv(nn.Conv2d):
    """k x k conv whose kernel sees the rows above and, in the centre row, the columns to
    the left (and the centre for mask B): one colour group."""

    def __init__(self, cin, cout, k, mask_type):
        super().__init__(cin, cout, k, padding=k // 2)
        mask = torch.ones(k, k)
        mask[k // 2, k // 2 + (mask_type == "B"):] = 0
        mask[k // 2 + 1:] = 0
        self.register_buffer("mask", mask[None, None])

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNN(nn.Module):
    def __init__(self, features=64, num_layers=5, first_kernel=7, kernel=3, out=1):
        super().__init__()
        f = features
        self.first = MaskedConv(1, f, first_kernel, "A")
        self.blocks = nn.ModuleList(nn.ModuleList([
            MaskedConv(f, f // 2, 1, "B"), MaskedConv(f // 2, f // 2, kernel, "B"),
            MaskedConv(f // 2, f, 1, "B")]) for _ in range(num_layers))
        self.head = nn.ModuleList([MaskedConv(f, f, 1, "B"), MaskedConv(f, out, 1, "B")])

    def forward(self, x):
        h = self.first(x)
        for a, b, c in self.blocks:
            h = h + c(F.relu(b(F.relu(a(F.relu(h))))))
        return self.head[1](F.relu(self.head[0](F.relu(h))))


# ---------------------------------------------------------------------------- U-Net

def sinusoidal(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def _norm(ch):
    return nn.GroupNorm(math.gcd(32, ch), ch)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb):
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, 2 * cout)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.c2(F.silu(self.n2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, ch, heads=4):
        super().__init__()
        self.heads, self.norm = heads, _norm(ch)
        self.qkv, self.proj = nn.Linear(ch, 3 * ch), nn.Linear(ch, ch)

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)                   # [B, HW, C]
        q, k, v = self.qkv(h).view(b, hh * ww, 3, self.heads, c // self.heads).unbind(2)
        h = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2))
        h = self.proj(h.transpose(1, 2).reshape(b, hh * ww, c))
        return x + h.transpose(1, 2).view(b, c, hh, ww)


class UNet(nn.Module):
    def __init__(self, cin=1, base=32, mults=(1, 2), num_res=1, attn_at=(8,), size=16):
        super().__init__()
        emb = 4 * base
        self.base = base
        self.time = nn.Sequential(nn.Linear(base, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.conv_in = nn.Conv2d(cin, base * mults[0], 3, padding=1)
        self.down, chans, ch, side = nn.ModuleList(), [base * mults[0]], base * mults[0], size
        for level, m in enumerate(mults):
            for _ in range(num_res):
                blocks = [ResBlock(ch, base * m, emb)]
                ch = base * m
                if side in attn_at:
                    blocks.append(Attention(ch))
                self.down.append(nn.ModuleList(blocks))
                chans.append(ch)
            if level != len(mults) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                chans.append(ch)
                side //= 2
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb), Attention(ch), ResBlock(ch, ch, emb)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(mults))):
            for _ in range(num_res + 1):
                blocks = [ResBlock(ch + chans.pop(), base * mults[level], emb)]
                ch = base * mults[level]
                if side in attn_at:
                    blocks.append(Attention(ch))
                self.up.append(nn.ModuleList(blocks))
            if level != 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(ch, ch, 3, padding=1)))
                side *= 2
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, cin, 3, padding=1))

    def _run(self, blocks, h, emb):
        for block in blocks:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
        return h

    def forward(self, x, t):
        emb = self.time(sinusoidal(t, self.base))
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = self._run(layer, h, emb) if isinstance(layer, nn.ModuleList) else layer(h)
            skips.append(h)
        h = self._run(self.mid, h, emb)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = self._run(layer, torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.out(h)


# ---------------------------------------------------------------------------- steps

def make_step(name: str, batch: int):
    """(train step closure, parameter count) of twin ``name`` on random data of the
    genjax config's shape."""
    torch.manual_seed(0)
    if name == "vae_digits":
        enc, dec = Encoder(), Decoder()
        params = list(enc.parameters()) + list(dec.parameters())
        x = (torch.randint(0, 17, (batch, 1, 8, 8)).float() / 16.0) * 2 - 1

        def loss_fn():
            mean, log_scale = enc(x).chunk(2, dim=1)
            z = mean + torch.exp(log_scale) * torch.randn_like(mean)
            out = dec(z)
            rec = -discretized_logistic_log_prob(x, out[:, :1], out[:, 1:], 17).flatten(1).sum(1)
            kl = 0.5 * (mean ** 2 + torch.exp(2 * log_scale) - 1 - 2 * log_scale).sum(1)
            return (rec + kl).mean()
        clip, lr = 1.0, 1e-3
    elif name == "pixelcnn":
        net = PixelCNN()
        params = list(net.parameters())
        x = torch.randint(0, 2, (batch, 1, 16, 16)).float()

        def loss_fn():
            logits = net(x * 2 - 1)
            return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / batch
        clip, lr = 1.0, 1e-3
    elif name == "ddpm_digits":
        net = UNet()
        params = list(net.parameters())
        x = torch.rand(batch, 1, 16, 16) * 2 - 1
        alpha_bar = torch.cos(torch.linspace(0, 1, 1000) * math.pi / 2) ** 2

        def loss_fn():
            t = torch.randint(0, 1000, (batch,))
            a = alpha_bar[t][:, None, None, None]
            eps = torch.randn_like(x)
            pred = net(a.sqrt() * x + (1 - a).sqrt() * eps, t)
            return ((pred - eps) ** 2).mean()
        clip, lr = 1.0, 2e-4
    else:
        raise ValueError(f"no PyTorch twin for {name!r}: vae_digits, pixelcnn, ddpm_digits")
    opt = torch.optim.Adam(params, lr=lr)

    def step():
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        return loss
    return step, sum(p.numel() for p in params)
