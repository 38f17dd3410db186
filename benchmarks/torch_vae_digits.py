"""The architecture of configs/vae_digits.py in PyTorch, timed the same way.

    pip install torch==2.13.0   # not a genjax dependency
    python benchmarks/torch_vae_digits.py [--steps 300] [--batch 64] [--compile]

Same encoder/decoder (ResBlocks with GroupNorm and SiLU, stride-2 4x4 convs,
nearest 2x upsampling), discretized logistic decoder, Adam. Prints steps/s.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        g = min(8, ch)
        self.n1, self.c1 = nn.GroupNorm(g, ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.n2, self.c2 = nn.GroupNorm(g, ch), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return x + self.c2(F.silu(self.n2(self.c1(F.silu(self.n1(x))))))


class Encoder(nn.Module):
    def __init__(self, channels=(32, 64), hidden=256, out=32, size=8):
        super().__init__()
        self.inp = nn.Conv2d(1, channels[0], 3, padding=1)
        layers, prev = [], channels[0]
        for ch in channels:
            layers += [ResBlock(prev), nn.SiLU(), nn.Conv2d(prev, ch, 4, stride=2, padding=1)]
            prev = ch
        self.body = nn.Sequential(*layers)
        flat = prev * (size // 2 ** len(channels)) ** 2
        self.head = nn.Sequential(nn.Linear(flat, hidden), nn.SiLU(), nn.Linear(hidden, out))

    def forward(self, x):
        return self.head(self.body(self.inp(x)).flatten(1))


class Decoder(nn.Module):
    def __init__(self, channels=(32, 64), hidden=256, latent=16, size=8):
        super().__init__()
        self.base, self.side = channels[-1], size // 2 ** len(channels)
        self.head = nn.Sequential(nn.Linear(latent, hidden), nn.SiLU(),
                                  nn.Linear(hidden, self.side ** 2 * self.base))
        layers, prev = [], self.base
        for ch in reversed(channels):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.SiLU(),
                       nn.Conv2d(prev, ch, 3, padding=1), ResBlock(ch)]
            prev = ch
        layers += [nn.GroupNorm(min(8, prev), prev), nn.SiLU(), nn.Conv2d(prev, 2, 3, padding=1)]
        self.body = nn.Sequential(*layers)

    def forward(self, z):
        return self.body(self.head(z).view(-1, self.base, self.side, self.side))


def discretized_logistic_log_prob(x, mean, log_scale, num_levels=256):
    half = 1.0 / (num_levels - 1)
    inv = torch.exp(-log_scale)
    plus, minus = inv * (x - mean + half), inv * (x - mean - half)
    log_cdf_plus = plus - F.softplus(plus)
    log_one_minus_cdf_min = -F.softplus(minus)
    cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv * (x - mean)
    log_pdf_mid = mid - log_scale - 2.0 * F.softplus(mid)
    inner = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)),
                        log_pdf_mid - math.log((num_levels - 1) / 2))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, inner))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="torch.compile the step")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    enc, dec = Encoder(), Decoder()
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)
    x = (torch.randint(0, 256, (args.batch, 1, 8, 8)).float() / 255.0) * 2 - 1

    def step():
        mean, log_scale = enc(x).chunk(2, dim=1)
        z = mean + torch.exp(log_scale) * torch.randn_like(mean)
        out = dec(z)
        rec = -discretized_logistic_log_prob(x, out[:, :1], out[:, 1:]).flatten(1).sum(1)
        kl = 0.5 * (mean ** 2 + torch.exp(2 * log_scale) - 1 - 2 * log_scale).sum(1)
        loss = (rec + kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(enc.parameters()) + list(dec.parameters()), 1.0)
        opt.step()
        return loss

    if args.compile:
        step = torch.compile(step)
    for _ in range(10):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    elapsed = time.perf_counter() - start
    print(json.dumps({"framework": f"torch {torch.__version__}", "threads": torch.get_num_threads(),
                      "batch_size": args.batch, "compile": args.compile,
                      "train_steps_per_s": round(args.steps / elapsed, 1),
                      "final_loss": float(loss.detach())}))


if __name__ == "__main__":
    main()
