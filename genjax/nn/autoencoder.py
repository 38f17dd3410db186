"""Convolutional encoder and decoder for small images (8x8 to 64x64).

Both are plain networks: the encoder maps an image (and optionally a class
one-hot) to a flat vector of ``out_dim`` features; the decoder maps a latent
vector (and optionally a class one-hot) to per-pixel distribution parameters.
What the outputs mean (a Gaussian posterior, logits, ...) is decided by the
model in ``genjax.models``.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def upsample2x(x: jax.Array) -> jax.Array:
    """Nearest-neighbour 2x upsampling: [B, H, W, C] -> [B, 2H, 2W, C] (a broadcast,
    cheaper than ``jax.image.resize``'s gather on CPU)."""
    b, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
    return x.reshape(b, 2 * h, 2 * w, c)


class ResBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x)))))) with GroupNorm; channels kept."""

    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        h = nn.silu(nn.GroupNorm(num_groups=min(self.groups, channels))(x))
        h = nn.Conv(channels, (3, 3))(h)
        h = nn.silu(nn.GroupNorm(num_groups=min(self.groups, channels))(h))
        h = nn.Conv(channels, (3, 3))(h)
        return x + h


class ConvEncoder(nn.Module):
    """x: [B, H, W, C] float -> [B, out_dim].

    One 3x3 conv, then per entry of ``channels`` a residual block and a
    stride-2 conv (so H and W must be divisible by 2**len(channels)), then a
    dense layer on the flattened map (with the condition vector appended).
    """

    channels: Sequence[int]
    hidden_dim: int
    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        h = nn.Conv(self.channels[0], (3, 3))(x)
        for ch in self.channels:
            h = ResBlock()(h)
            h = nn.Conv(ch, (4, 4), strides=(2, 2))(nn.silu(h))
        h = h.reshape(h.shape[0], -1)
        if cond is not None:
            h = jnp.concatenate([h, cond], axis=-1)
        h = nn.silu(nn.Dense(self.hidden_dim)(h))
        return nn.Dense(self.out_dim)(h)


class ConvDecoder(nn.Module):
    """z: [B, D] -> [B, H, W, C * params_per_channel].

    Mirror of :class:`ConvEncoder`: dense to a map of size
    (H / 2**n, W / 2**n), then per level a nearest-neighbour 2x upsampling,
    conv and residual block, then a 3x3 conv to the output parameters.
    """

    image_shape: tuple[int, int, int]
    channels: Sequence[int]
    hidden_dim: int
    params_per_channel: int

    @nn.compact
    def __call__(self, z: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        height, width, num_channels = self.image_shape
        scale = 2 ** len(self.channels)
        if cond is not None:
            z = jnp.concatenate([z, cond], axis=-1)
        h = nn.silu(nn.Dense(self.hidden_dim)(z))
        base = self.channels[-1]
        h = nn.Dense((height // scale) * (width // scale) * base)(h)
        h = h.reshape(z.shape[0], height // scale, width // scale, base)
        for ch in reversed(self.channels):
            h = upsample2x(h)
            h = nn.Conv(ch, (3, 3))(nn.silu(h))
            h = ResBlock()(h)
        h = nn.silu(nn.GroupNorm(num_groups=min(8, h.shape[-1]))(h))
        return nn.Conv(num_channels * self.params_per_channel, (3, 3))(h)
