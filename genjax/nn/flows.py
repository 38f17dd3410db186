"""Flax modules of normalizing flows: the bijectors of ``genjax.core.bijectors`` with
their parameters and conditioner networks.

Every layer maps data -> latent in ``__call__(x, ..., reverse=False)`` and latent
-> data with ``reverse=True``; both return ``(output, log_det)`` with ``log_det:
[B]`` the log |det| of the map applied (see ``genjax.core.bijectors``).

- :class:`ActNorm`: y = s * x + b per channel, initialised from the first batch it
  sees (inside ``init``) so that its output has mean 0 and std 1 per channel.
- :class:`Conv1x1`: invertible 1x1 convolution, plain (W, slogdet) or LU-parametrised
  W = P L (U + diag(s)) with a fixed permutation P.
- :class:`Coupling`: affine (bounded scale) or additive coupling with a checkerboard or
  channel mask; the conditioner is a ResNet of convolutions (images) or an MLP (flat
  data), zero-initialised at its output so the coupling starts near the identity. With
  ``cond`` (a class embedding or an image feature map, [B, E] or [B, H, W, E]) the
  conditioner also sees the condition: a conditional coupling.
- :class:`AffineInjector` (SRFlow): h' = exp(s(u)) h + b(u) with (s, b) a network of
  the condition u only.
- :class:`FlowStep`: actnorm -> 1x1 conv -> coupling (Glow's step of flow).
- :class:`MultiScaleFlow`: a sequence of steps, squeezes and splits (RealNVP / Glow
  multi-scale architecture) with learned Gaussian priors on the factored-out halves and
  on the top; maps x [B, H, W, C] (or [B, D]) to a flat z [B, D] that is N(0, I) under
  the model.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import bijectors as bj

zeros = nn.initializers.zeros


def _with_cond(x: jax.Array, cond: Optional[jax.Array]) -> jax.Array:
    """Concatenate a condition to x on the last axis, broadcasting [B, E] over positions."""
    if cond is None:
        return x
    if cond.ndim == 2 and x.ndim == 4:
        cond = jnp.broadcast_to(cond[:, None, None, :], x.shape[:3] + cond.shape[-1:])
    return jnp.concatenate([x, cond.astype(x.dtype)], axis=-1)


# --------------------------------------------------------------------------------------
# Conditioner networks
# --------------------------------------------------------------------------------------


class ConvConditioner(nn.Module):
    """conv3x3 -> ReLU -> ``num_blocks`` x [x + conv1x1(ReLU(conv3x3(x)))] -> ReLU ->
    zero-initialised conv3x3 to ``out_channels``: [B, H, W, C_in] -> [B, H, W, out]."""

    hidden: int
    num_blocks: int
    out_channels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.relu(nn.Conv(self.hidden, (3, 3))(x))
        for _ in range(self.num_blocks):
            r = nn.relu(nn.Conv(self.hidden, (3, 3))(h))
            h = nn.relu(h + nn.Conv(self.hidden, (1, 1))(r))
        return nn.Conv(self.out_channels, (3, 3), kernel_init=zeros)(h)


class MLPConditioner(nn.Module):
    """Dense(hidden) -> ReLU, ``num_blocks`` residual Dense blocks, zero-initialised
    Dense(out_channels): [B, D_in] -> [B, out]."""

    hidden: int
    num_blocks: int
    out_channels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.relu(nn.Dense(self.hidden)(x))
        for _ in range(self.num_blocks):
            h = nn.relu(h + nn.Dense(self.hidden)(nn.relu(nn.Dense(self.hidden)(h))))
        return nn.Dense(self.out_channels, kernel_init=zeros)(h)


def _conditioner(x: jax.Array, hidden: int, num_blocks: int, out_channels: int, name=None):
    cls = ConvConditioner if x.ndim == 4 else MLPConditioner
    return cls(hidden, num_blocks, out_channels, name=name)


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------


class ActNorm(nn.Module):
    """y = exp(log_scale) * x + bias per channel; ``log_scale, bias: [C]`` are set at
    ``init`` from the batch (``bj.actnorm_init``): zero mean, unit std per channel."""

    @nn.compact
    def __call__(self, x: jax.Array, reverse: bool = False):
        c = x.shape[-1]
        if self.is_initializing() and not reverse:
            log_scale0, bias0 = bj.actnorm_init(x)
        else:
            log_scale0, bias0 = jnp.zeros(c), jnp.zeros(c)
        log_scale = self.param("log_scale", lambda _: log_scale0)
        bias = self.param("bias", lambda _: bias0)
        if reverse:
            return bj.actnorm_inverse(x, log_scale, bias)
        return bj.actnorm_forward(x, log_scale, bias)


class Conv1x1(nn.Module):
    """Invertible 1x1 convolution (a dense invertible matrix on flat data).

    ``lu=False``: W [C, C] initialised as a random rotation, log-det by slogdet.
    ``lu=True``: W = P L (U + diag(exp(log_s))) with P a fixed permutation drawn from
    ``seed`` (not a parameter), L, U, log_s starting at 0 so W = P at init.
    """

    lu: bool = True
    seed: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, reverse: bool = False):
        c = x.shape[-1]
        if not self.lu:
            w = self.param("kernel", nn.initializers.orthogonal(), (c, c))
            fn = bj.conv1x1_inverse if reverse else bj.conv1x1_forward
            return fn(x, w)
        perm = jnp.asarray(np.eye(c, dtype=np.float32)[np.random.default_rng(self.seed)
                                                       .permutation(c)])
        lower = self.param("lower", zeros, (c, c))
        upper = self.param("upper", zeros, (c, c))
        log_s = self.param("log_s", zeros, (c,))
        fn = bj.lu_conv1x1_inverse if reverse else bj.lu_conv1x1_forward
        return fn(x, perm, lower, upper, log_s)


class Coupling(nn.Module):
    """Affine or additive coupling layer with its conditioner network.

    kind: ``affine`` | ``additive``; mask: ``checkerboard`` | ``channel``; parity 0/1
    swaps the halves; scale: ``sigmoid`` | ``tanh`` (see ``bj.bounded_log_scale``).
    ``cond`` [B, E] or [B, H, W, E] is concatenated to the conditioner's input.
    """

    hidden: int = 64
    num_blocks: int = 1
    kind: str = "affine"
    mask: str = "channel"
    parity: int = 0
    scale: str = "sigmoid"

    def _mask(self, x: jax.Array) -> jax.Array:
        if self.mask == "checkerboard":
            return bj.checkerboard_mask(*x.shape[1:], parity=self.parity)
        return bj.channel_mask(x.shape[-1], self.parity)

    @nn.compact
    def __call__(self, x: jax.Array, cond: Optional[jax.Array] = None, reverse: bool = False):
        c = x.shape[-1]
        mask = self._mask(x)
        affine = self.kind == "affine"
        net = _conditioner(x, self.hidden, self.num_blocks, 2 * c if affine else c, name="net")
        if affine:
            def conditioner(masked):
                out = net(_with_cond(masked, cond))
                return out[..., :c], out[..., c:]
            fn = bj.affine_coupling_inverse if reverse else bj.affine_coupling_forward
            return fn(x, mask, conditioner, self.scale)
        fn = bj.additive_coupling_inverse if reverse else bj.additive_coupling_forward
        return fn(x, mask, lambda masked: net(_with_cond(masked, cond)))


class AffineInjector(nn.Module):
    """SRFlow's affine injector: h' = exp(s(u)) * h + b(u), log-det = sum s(u), where
    (s, b) come from a zero-initialised network of the condition u alone (an image
    feature map [B, H, W, E] or an embedding [B, E]); s is bounded as in couplings."""

    hidden: int = 32
    num_blocks: int = 0
    scale: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array, reverse: bool = False):
        c = x.shape[-1]
        u = _with_cond(jnp.zeros(x.shape[:-1] + (0,), x.dtype), cond)
        out = _conditioner(x, self.hidden, self.num_blocks, 2 * c, name="net")(u)
        log_s, shift = bj.bounded_log_scale(out[..., :c], self.scale), out[..., c:]
        fn = bj.affine_inverse if reverse else bj.affine_forward
        return fn(x, log_s, shift)


class FlowStep(nn.Module):
    """One step of flow: [actnorm] -> [1x1 conv] -> coupling (data -> latent order)."""

    hidden: int = 64
    num_blocks: int = 1
    coupling: str = "affine"
    mask: str = "channel"
    parity: int = 0
    scale: str = "sigmoid"
    actnorm: bool = True
    conv1x1: str = "lu"             # lu | plain | none
    seed: int = 0

    def setup(self):
        self.norm = ActNorm() if self.actnorm else None
        self.mix = None if self.conv1x1 == "none" else Conv1x1(self.conv1x1 == "lu", self.seed)
        self.couple = Coupling(self.hidden, self.num_blocks, self.coupling, self.mask,
                               self.parity, self.scale)

    def __call__(self, x: jax.Array, cond: Optional[jax.Array] = None, reverse: bool = False):
        layers = [lambda h, r: self.norm(h, reverse=r)] if self.actnorm else []
        if self.mix is not None:
            layers.append(lambda h, r: self.mix(h, reverse=r))
        layers.append(lambda h, r: self.couple(h, cond, reverse=r))
        total = jnp.zeros(x.shape[0], x.dtype)
        for layer in (reversed(layers) if reverse else layers):
            x, log_det = layer(x, reverse)
            total = total + log_det
        return x, total


class GaussianPrior(nn.Module):
    """(mean, log sigma), each shaped like ``h``, of a learned Gaussian: a
    zero-initialised conv3x3 (Dense on flat data) of ``h`` and the condition, so
    N(0, I) at init. The top prior is called on zeros: a learned per-channel
    (mean, log sigma) (the conv's bias), class-dependent through the condition."""

    @nn.compact
    def __call__(self, h: jax.Array, cond: Optional[jax.Array] = None):
        c = h.shape[-1]
        inp = _with_cond(h, cond)
        if h.ndim == 4:
            out = nn.Conv(2 * c, (3, 3), kernel_init=zeros)(inp)
        else:
            out = nn.Dense(2 * c, kernel_init=zeros)(inp)
        return out[..., :c], out[..., c:]


def latent_shapes(input_shape: Sequence[int], layers: Sequence[tuple]) -> list[tuple]:
    """Shapes (per example) of the latent parts in the order :class:`MultiScaleFlow`
    emits them: one per ``split``, then the top."""
    shape, parts = tuple(input_shape), []
    for spec in layers:
        if spec[0] == "squeeze":
            h, w, c = shape
            shape = (h // 2, w // 2, 4 * c)
        elif spec[0] == "split":
            shape = shape[:-1] + (shape[-1] // 2,)
            parts.append(shape)
    return parts + [shape]


class MultiScaleFlow(nn.Module):
    """RealNVP / Glow multi-scale flow: x [B, H, W, C] (or [B, D]) -> z [B, D_total].

    ``layers``: a tuple of ``("step", mask, parity)``, ``("squeeze",)`` and
    ``("split",)`` in data -> latent order. A split factors out half the channels,
    standardised under a Gaussian whose (mean, log sigma) are a network of the kept
    half (``bj.split_forward``); the top is standardised under a learned Gaussian
    (class-dependent with ``num_classes``). z concatenates the flattened parts, so
    log p(x) = sum log N(z; 0, I) + log_det.
    """

    layers: tuple
    hidden: int = 64
    num_blocks: int = 1
    coupling: str = "affine"
    scale: str = "sigmoid"
    actnorm: bool = True
    conv1x1: str = "lu"
    num_classes: int = 0
    embed_dim: int = 16

    def setup(self):
        steps, priors = [], []
        for i, spec in enumerate(self.layers):
            if spec[0] == "step":
                steps.append(FlowStep(self.hidden, self.num_blocks, self.coupling, spec[1],
                                      spec[2], self.scale, self.actnorm, self.conv1x1, seed=i))
            elif spec[0] == "split":
                priors.append(GaussianPrior())
        self.steps, self.split_priors = steps, priors
        self.top_prior = GaussianPrior()
        self.embed = nn.Embed(self.num_classes, self.embed_dim) if self.num_classes else None

    def _cond(self, y):
        if not self.num_classes:
            return None
        if y is None:
            raise ValueError("this flow is class-conditional: pass labels y")
        return self.embed(y)

    def _split_prior(self, index: int, h, cond):
        return self.split_priors[index](h, cond)

    def _top_prior(self, h, cond):
        return self.top_prior(jnp.zeros_like(h), cond)

    def forward(self, x: jax.Array, y: Optional[jax.Array] = None):
        """x -> (z [B, D], log_det [B])."""
        cond = self._cond(y)
        total = jnp.zeros(x.shape[0], x.dtype)
        parts, step, split = [], 0, 0
        for spec in self.layers:
            if spec[0] == "step":
                x, log_det = self.steps[step](x, cond)
                step += 1
            elif spec[0] == "squeeze":
                x, log_det = bj.squeeze(x), 0.0
            else:
                (x, eps), log_det = bj.split_forward(
                    x, lambda h, i=split: self._split_prior(i, h, cond))
                parts.append(eps)
                split += 1
            total = total + log_det
        mean, log_scale = self._top_prior(x, cond)
        eps, log_det = bj.gaussianize_forward(x, mean, log_scale)
        parts.append(eps)
        z = jnp.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=-1)
        return z, total + log_det

    def inverse(self, z: jax.Array, y: Optional[jax.Array] = None, *, input_shape):
        """z [B, D] -> (x [B, *input_shape], log_det [B]) of the latent -> data map."""
        cond = self._cond(y)
        shapes = latent_shapes(input_shape, self.layers)
        sizes = np.cumsum([math.prod(s) for s in shapes])[:-1]
        parts = [p.reshape((z.shape[0],) + s)
                 for p, s in zip(jnp.split(z, sizes, axis=-1), shapes)]
        x = parts.pop()
        mean, log_scale = self._top_prior(x, cond)
        x, total = bj.gaussianize_inverse(x, mean, log_scale)
        step, split = len(self.steps), len(parts)
        for spec in reversed(self.layers):
            if spec[0] == "step":
                step -= 1
                x, log_det = self.steps[step](x, cond, reverse=True)
            elif spec[0] == "squeeze":
                x, log_det = bj.unsqueeze(x), 0.0
            else:
                split -= 1
                x, log_det = bj.split_inverse(
                    x, parts[split], lambda h, i=split: self._split_prior(i, h, cond))
            total = total + log_det
        return x, total
