"""Diffusion networks: the DDPM / ADM U-Net for images and a residual MLP for flat data.

Both map a noisy input x_t, a timestep t and optionally a class label y to an
output of the shape of x_t; what it means (eps, x_0 or v) is decided by the
model in ``genjax.models.ddpm``.

:class:`UNet` follows Ho et al. (DDPM) with the refinements of Nichol &
Dhariwal (improved DDPM) and Dhariwal & Nichol (ADM, "Diffusion models beat
GANs"):

- t -> sinusoidal embedding (:func:`sinusoidal_embedding`, width
  ``base_channels``) -> Dense(4 ch) -> SiLU -> Dense(4 ch) = emb; with classes,
  emb += Embed(y), where y = ``num_classes`` is the "null" class of
  classifier-free guidance.
- :class:`ResBlock` conditions on emb by adaptive group norm (AdaGN):
  h = GroupNorm(h) * (1 + scale) + shift, (scale, shift) = Dense(SiLU(emb)).
- :class:`AttentionBlock` is multi-head self-attention over the H * W positions.
- Text conditioning (``cross_attention``, as in Imagen / Stable Diffusion): the caller
  passes ``context = (pooled [B, P], states [B, L, W], mask bool [B, L])`` from a text
  encoder; emb += Dense(pooled), and a :class:`CrossAttentionBlock` follows every
  self-attention block (the attention resolutions and the middle block), its queries
  from the H * W positions, keys and values from the unmasked text states.
- conv3x3 -> per level ``num_res_blocks`` ResBlocks (+ attention where the
  feature map's side is in ``attention_resolutions``) and a stride-2 conv
  (not after the last level) -> ResBlock, attention, ResBlock -> per level,
  coarsest first, ``num_res_blocks + 1`` ResBlocks, each on the concatenation
  with one saved activation of the way down (every block output, downsample
  outputs and the first conv included, as in DDPM), then nearest 2x upsampling
  and a conv3x3 -> GroupNorm, SiLU, conv3x3.

The last conv of every residual branch (ResBlock, attention, cross-attention) and of the output
is zero-initialised: at initialisation every block is the identity and the
U-Net's output is exactly zero.

Mixed precision: ``dtype`` is the computation dtype (``jnp.bfloat16`` on
accelerators); parameters stay float32, and the group norms, the time and
class embedding, the attention logits and softmax, and the output layer are
computed in float32. The output is float32.

Super-resolution (SR3, Saharia et al. 2021; ``aug_conditioning``): the input x carries the
upsampled low-resolution image as extra channels (the caller concatenates them), and the
noise-augmentation level s in [0, 1] of that image (Ho et al. 2021, "Cascaded Diffusion
Models") is embedded like t (sinusoidal of 1000 s -> Dense -> SiLU -> Dense) and added to emb.

Rematerialisation: with ``remat=True`` every ResBlock and (cross-)attention block is wrapped in
``nn.remat`` (jax.checkpoint lifted to Flax): its activations are not kept for the
backward pass but recomputed from the block's input, trading about one extra forward
pass for the memory of the intermediate activations. Parameters and numbers are the same.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn.autoencoder import upsample2x
from genjax.nn.precision import compute_dtype

Dtype = Any


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Transformer positional embedding of (integer or real) timesteps: t [B] -> [B, dim] float32.

    emb[:, i] = sin(t * w_i) and emb[:, half + i] = cos(t * w_i) for i < half = dim // 2,
    with frequencies w_i = max_period ** (-i / half) from 1 down to ~1 / max_period
    (a zero column is appended when ``dim`` is odd). The values of t are embedded as
    given: timesteps in {0, ..., T-1} use the whole range of frequencies, while t in
    [0, 1] should be scaled (e.g. by 1000) by the caller.
    """
    t = jnp.asarray(t, jnp.float32)
    if t.ndim != 1:
        raise ValueError(f"sinusoidal_embedding expects t of shape [B], got {t.shape}")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def _groups(channels: int, max_groups: int) -> int:
    """Number of GroupNorm groups: gcd(max_groups, channels) (32 for the usual widths)."""
    return math.gcd(max_groups, channels)


class GroupNorm32(nn.Module):
    """GroupNorm computed in float32: x [..., C] -> [..., C] float32 (the caller casts back)."""

    max_groups: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        groups = _groups(x.shape[-1], self.max_groups)
        return nn.GroupNorm(num_groups=groups, dtype=jnp.float32)(x.astype(jnp.float32))


class ResBlock(nn.Module):
    """Residual block with AdaGN: x [B, H, W, C_in], emb [B, E] -> [B, H, W, out_channels].

    h = conv3x3(SiLU(GroupNorm(x)))
    h = conv3x3_zero(dropout(SiLU(GroupNorm(h) * (1 + scale) + shift)))
    out = skip(x) + h,   (scale, shift) = Dense(SiLU(emb)),
    where skip is a 1x1 conv when C_in != out_channels and the identity otherwise.
    """

    out_channels: int
    dropout: float = 0.0
    norm_groups: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array, train: bool = False) -> jax.Array:
        ch = self.out_channels
        h = nn.silu(GroupNorm32(self.norm_groups)(x)).astype(self.dtype)
        h = nn.Conv(ch, (3, 3), dtype=self.dtype)(h)
        scale_shift = nn.Dense(2 * ch, dtype=self.dtype)(nn.silu(emb).astype(self.dtype))
        scale, shift = jnp.split(scale_shift.astype(jnp.float32)[:, None, None, :], 2, axis=-1)
        h = GroupNorm32(self.norm_groups)(h) * (1.0 + scale) + shift
        h = nn.silu(h).astype(self.dtype)
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = nn.Conv(ch, (3, 3), dtype=self.dtype, kernel_init=nn.initializers.zeros)(h)
        skip = x.astype(self.dtype)
        if x.shape[-1] != ch:
            skip = nn.Conv(ch, (1, 1), dtype=self.dtype, name="skip")(skip)
        return skip + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H * W positions: x [B, H, W, C] -> [B, H, W, C].

    out = x + Dense_zero(MHA(GroupNorm(x))), with q, k, v a Dense (1x1 conv) of the
    normalised map. Heads: C // ``head_channels`` if ``head_channels`` > 0, else
    ``num_heads``. Without positional encodings the block is equivariant to
    permutations of the positions.
    """

    num_heads: int = 4
    head_channels: int = 0
    norm_groups: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, height, width, ch = x.shape
        heads = ch // self.head_channels if self.head_channels > 0 else self.num_heads
        if heads < 1 or ch % heads:
            raise ValueError(f"AttentionBlock: {ch} channels are not divisible into "
                             f"{heads} heads (num_heads={self.num_heads}, "
                             f"head_channels={self.head_channels})")
        h = GroupNorm32(self.norm_groups)(x).astype(self.dtype)
        qkv = nn.Dense(3 * ch, dtype=self.dtype, name="qkv")(h)
        qkv = qkv.reshape(b, height * width, 3, heads, ch // heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, HW, heads, head_dim]
        h = jax.nn.dot_product_attention(q, k, v).reshape(b, height, width, ch)
        h = nn.Dense(ch, dtype=self.dtype, kernel_init=nn.initializers.zeros, name="proj")(h)
        return x.astype(self.dtype) + h


class CrossAttentionBlock(nn.Module):
    """Multi-head cross-attention from the H * W positions to a text encoder's states:
    x [B, H, W, C], context [B, L, W_ctx], mask bool [B, L] -> [B, H, W, C].

        q = Dense(GroupNorm(x)),  (k, v) = Dense([c_null; context])
        out = x + Dense_zero(softmax(q k^T / sqrt(d_head) + M) v),

    with M = 0 where ``mask`` is True (a real token) and -inf at padded positions, so
    the output does not depend on the states there. c_null is a learned context vector
    that every query may attend to: the empty caption (every position padded) attends
    to it alone instead of to nothing. Heads as in :class:`AttentionBlock`. The zero-
    initialised output projection makes the block the identity at initialisation.
    """

    num_heads: int = 4
    head_channels: int = 0
    norm_groups: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array, mask: jax.Array) -> jax.Array:
        b, height, width, ch = x.shape
        heads = ch // self.head_channels if self.head_channels > 0 else self.num_heads
        if heads < 1 or ch % heads:
            raise ValueError(f"CrossAttentionBlock: {ch} channels are not divisible into "
                             f"{heads} heads (num_heads={self.num_heads}, "
                             f"head_channels={self.head_channels})")
        if context.ndim != 3 or mask.shape != context.shape[:2]:
            raise ValueError(f"CrossAttentionBlock expects context [B, L, W] and mask [B, L], "
                             f"got {context.shape} and {mask.shape}")
        null = self.param("null_context", nn.initializers.normal(0.02), (context.shape[-1],))
        context = jnp.concatenate(
            [jnp.broadcast_to(null, (b, 1, context.shape[-1])), context], axis=1)
        mask = jnp.concatenate([jnp.ones((b, 1), bool), jnp.asarray(mask, bool)], axis=1)
        h = GroupNorm32(self.norm_groups)(x).astype(self.dtype)
        q = nn.Dense(ch, dtype=self.dtype, name="q")(h).reshape(
            b, height * width, heads, ch // heads)
        kv = nn.Dense(2 * ch, dtype=self.dtype, name="kv")(context.astype(self.dtype))
        kv = kv.reshape(b, context.shape[1], 2, heads, ch // heads)
        h = jax.nn.dot_product_attention(q, kv[:, :, 0], kv[:, :, 1],
                                         mask=mask[:, None, None, :])
        h = nn.Dense(ch, dtype=self.dtype, kernel_init=nn.initializers.zeros, name="proj")(
            h.reshape(b, height, width, ch))
        return x.astype(self.dtype) + h


class Downsample(nn.Module):
    """Stride-2 conv3x3 (padding 1): [B, H, W, C] -> [B, H/2, W/2, C]."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(x.shape[-1], (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                       dtype=self.dtype)(x)


class Upsample(nn.Module):
    """Nearest 2x upsampling then conv3x3: [B, H, W, C] -> [B, 2H, 2W, C]."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(x.shape[-1], (3, 3), dtype=self.dtype)(upsample2x(x))


class UNet(nn.Module):
    """The diffusion U-Net (see the module docstring):
    x [B, H, W, C], t [B] (or scalar), y int [B] | None -> [B, H, W, out_channels] float32.

    ``channel_mults``: one level per entry with ``base_channels * mult`` channels;
    H and W must be divisible by 2 ** (len(channel_mults) - 1).
    ``attention_resolutions``: feature-map heights (side lengths for square inputs)
    at which the levels get self-attention, e.g. (16,) for a 32x32 input with mults
    (1, 2, 2, 2) means the second level (16x16); sizes that do not occur are ignored.
    The middle block always has attention.
    ``num_classes`` > 0: class-conditional, y in {0, ..., num_classes}, where
    y = num_classes (or y = None) is the null class of classifier-free guidance.
    ``cross_attention``: text-conditional; ``context = (pooled, states, mask)`` (see the
    module docstring) is then required.
    ``aug_conditioning``: super-resolution; ``aug`` [B] (or scalar) in [0, 1] is the
    noise-augmentation level of the low-res channels of x, embedded and added to emb.
    ``dtype``: computation dtype; parameters stay float32.
    ``remat``: recompute each ResBlock's and attention block's activations in the
    backward pass (``nn.remat``) instead of storing them.
    """

    out_channels: int
    base_channels: int = 64
    channel_mults: Sequence[int] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: Sequence[int] = (8,)
    num_heads: int = 4
    head_channels: int = 0          # > 0: heads = channels // head_channels (overrides num_heads)
    dropout: float = 0.0
    num_classes: int = 0
    norm_groups: int = 32           # GroupNorm groups (gcd with the channels for small widths)
    cross_attention: bool = False   # text-conditional: cross-attention to ``context``
    aug_conditioning: bool = False  # takes ``aug``, the augmentation level of a low-res input
    dtype: Dtype = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, y: jax.Array | None = None, *,
                 context: tuple | None = None, aug: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"UNet expects x of shape [B, H, W, C], got {x.shape}")
        b, height, width, _ = x.shape
        divisor = 2 ** (len(self.channel_mults) - 1)
        if height % divisor or width % divisor:
            raise ValueError(
                f"UNet with channel_mults={tuple(self.channel_mults)} needs the input height "
                f"and width divisible by 2**(len(channel_mults) - 1) = {divisor}, "
                f"got {height}x{width}")
        if y is not None and self.num_classes <= 0:
            raise ValueError("UNet got labels y but num_classes = 0")
        if (context is not None) != self.cross_attention:
            raise ValueError("UNet: context (pooled, states, mask) goes with "
                             f"cross_attention=True (and only with it); cross_attention="
                             f"{self.cross_attention}, context given: {context is not None}")

        # Embedding of t (and y), kept in float32: [B, 4 * base_channels].
        emb_dim = 4 * self.base_channels
        t = jnp.broadcast_to(jnp.asarray(t), (b,))
        emb = sinusoidal_embedding(t, self.base_channels)
        emb = nn.Dense(emb_dim, name="time_dense_0")(emb)
        emb = nn.Dense(emb_dim, name="time_dense_1")(nn.silu(emb))
        if self.num_classes > 0:
            if y is None:
                y = jnp.full((b,), self.num_classes, jnp.int32)
            y = jnp.broadcast_to(jnp.asarray(y, jnp.int32), (b,))
            emb = emb + nn.Embed(self.num_classes + 1, emb_dim, name="class_embed")(y)
        if self.cross_attention:
            pooled, states, mask = context
            emb = emb + nn.Dense(emb_dim, name="text_pooled")(jnp.asarray(pooled, jnp.float32))
        if (aug is not None) != self.aug_conditioning:
            raise ValueError("UNet takes aug (the augmentation level of a low-res input) "
                             "exactly when aug_conditioning is set")
        if self.aug_conditioning:
            aug = jnp.broadcast_to(jnp.asarray(aug, jnp.float32), (b,))
            a = sinusoidal_embedding(1000.0 * aug, self.base_channels)
            a = nn.Dense(emb_dim, name="aug_dense_0")(a)
            emb = emb + nn.Dense(emb_dim, name="aug_dense_1")(nn.silu(a))

        common = dict(norm_groups=self.norm_groups, dtype=self.dtype)
        # nn.remat traces its arguments: ``train`` (argument 3 counting self) stays static.
        res_cls = nn.remat(ResBlock, static_argnums=(3,)) if self.remat else ResBlock
        attn_cls = nn.remat(AttentionBlock) if self.remat else AttentionBlock
        res = functools.partial(res_cls, dropout=self.dropout, **common)
        attn = functools.partial(attn_cls, num_heads=self.num_heads,
                                 head_channels=self.head_channels, **common)
        xattn_cls = nn.remat(CrossAttentionBlock) if self.remat else CrossAttentionBlock
        xattn = functools.partial(xattn_cls, num_heads=self.num_heads,
                                  head_channels=self.head_channels, **common)

        def attend(h, where):
            """Self-attention, then cross-attention to the text when conditioned on it."""
            h = attn(name=f"{where[0]}attn{where[1]}")(h)
            if self.cross_attention:
                h = xattn(name=f"{where[0]}xattn{where[1]}")(h, states, mask)
            return h

        attention_at = set(self.attention_resolutions)
        last = len(self.channel_mults) - 1

        h = nn.Conv(self.base_channels * self.channel_mults[0], (3, 3), dtype=self.dtype,
                    name="conv_in")(x.astype(self.dtype))
        skips = [h]
        for level, mult in enumerate(self.channel_mults):
            side = h.shape[1]
            for i in range(self.num_res_blocks):
                h = res(self.base_channels * mult, name=f"down_{level}_res_{i}")(
                    h, emb, train)
                if side in attention_at:
                    h = attend(h, (f"down_{level}_", f"_{i}"))
                skips.append(h)
            if level != last:
                h = Downsample(self.dtype, name=f"down_{level}_downsample")(h)
                skips.append(h)

        mid_channels = h.shape[-1]
        h = res(mid_channels, name="mid_res_0")(h, emb, train)
        h = attend(h, ("mid_", ""))
        h = res(mid_channels, name="mid_res_1")(h, emb, train)

        for level in reversed(range(len(self.channel_mults))):
            side = h.shape[1]
            for i in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = res(self.base_channels * self.channel_mults[level],
                        name=f"up_{level}_res_{i}")(h, emb, train)
                if side in attention_at:
                    h = attend(h, (f"up_{level}_", f"_{i}"))
            if level != 0:
                h = Upsample(self.dtype, name=f"up_{level}_upsample")(h)
        assert not skips

        h = nn.silu(GroupNorm32(self.norm_groups, name="out_norm")(h))
        return nn.Conv(self.out_channels, (3, 3), dtype=jnp.float32,
                       kernel_init=nn.initializers.zeros, name="conv_out")(h)


class MLPScoreNet(nn.Module):
    """Residual MLP for flat data: x [B, dim], t [B] (or scalar), y int [B] | None -> [B, dim].

    h = Dense(x); per block h += Dense(SiLU(Dense(SiLU(LayerNorm(h))) + Dense(SiLU(emb)))),
    out = Dense(SiLU(LayerNorm(h))), with emb the sinusoidal embedding of t through an
    MLP (plus a class embedding with the null class ``num_classes`` for y = None, as in
    :class:`UNet`). Float32 throughout.
    """

    dim: int
    hidden: int = 256
    num_blocks: int = 3
    num_classes: int = 0
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, y: jax.Array | None = None, *,
                 train: bool = False) -> jax.Array:
        if x.ndim != 2:
            raise ValueError(f"MLPScoreNet expects x of shape [B, D], got {x.shape}")
        if y is not None and self.num_classes <= 0:
            raise ValueError("MLPScoreNet got labels y but num_classes = 0")
        b = x.shape[0]
        t = jnp.broadcast_to(jnp.asarray(t), (b,))
        emb = sinusoidal_embedding(t, self.hidden)
        emb = nn.Dense(self.hidden, name="time_dense_0")(emb)
        emb = nn.Dense(self.hidden, name="time_dense_1")(nn.silu(emb))
        if self.num_classes > 0:
            if y is None:
                y = jnp.full((b,), self.num_classes, jnp.int32)
            y = jnp.broadcast_to(jnp.asarray(y, jnp.int32), (b,))
            emb = emb + nn.Embed(self.num_classes + 1, self.hidden, name="class_embed")(y)

        h = nn.Dense(self.hidden, name="dense_in")(jnp.asarray(x, jnp.float32))
        for i in range(self.num_blocks):
            r = nn.Dense(self.hidden, name=f"block_{i}_dense_0")(nn.silu(nn.LayerNorm()(h)))
            r = r + nn.Dense(self.hidden, name=f"block_{i}_emb")(nn.silu(emb))
            r = nn.Dropout(self.dropout)(nn.silu(r), deterministic=not train)
            h = h + nn.Dense(self.hidden, name=f"block_{i}_dense_1")(r)
        return nn.Dense(self.dim, name="dense_out")(nn.silu(nn.LayerNorm()(h)))


def denoiser(x_shape: tuple[int, ...], config) -> nn.Module:
    """The network of a diffusion, score or flow-matching model of data ``x_shape``: the
    :class:`UNet` for images (H, W, C), the :class:`MLPScoreNet` for vectors (D,). ``config``
    carries the fields of both (``base_channels``, ``channel_mults``, ``num_res_blocks``,
    ``attention_resolutions``, ``num_heads``, ``dropout``, ``num_classes``,
    ``compute_dtype``, ``remat``, optionally ``captions`` (text conditioning:
    cross-attention); ``mlp_hidden``, ``mlp_blocks``)."""
    if getattr(config, "captions", "") and len(x_shape) != 3:
        raise ValueError("text conditioning needs an image denoiser (the U-Net's cross-"
                         f"attention); this model's data has shape {tuple(x_shape)}")
    c = config
    if len(x_shape) == 3:
        return UNet(out_channels=x_shape[-1], base_channels=c.base_channels,
                    channel_mults=c.channel_mults, num_res_blocks=c.num_res_blocks,
                    attention_resolutions=c.attention_resolutions, num_heads=c.num_heads,
                    dropout=c.dropout, num_classes=c.num_classes,
                    cross_attention=bool(getattr(c, "captions", "")),
                    aug_conditioning=bool(getattr(c, "low_res_shape", ())),
                    dtype=compute_dtype(c.compute_dtype), remat=c.remat)
    return MLPScoreNet(dim=x_shape[0], hidden=c.mlp_hidden, num_blocks=c.mlp_blocks,
                       num_classes=c.num_classes, dropout=c.dropout)
