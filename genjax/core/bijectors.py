"""Bijections of normalizing flows as pure functions returning ``(output, log_det)``.

Notation of the notes: a flow maps a latent z to data x = f(z), and

    log p_x(x) = log p_z(f^{-1}(x)) + log |det d f^{-1}(x) / dx|.

Every bijector here is written in the *normalizing* direction, data -> latent:
``*_forward(x, ...)`` returns ``(y, log_det)`` with y = f_k^{-1}(x) and
``log_det = log |det dy/dx|`` per example; ``*_inverse(y, ...)`` returns
``(x, log_det)`` of the inverse map, so the two log-dets are negatives of each
other. A flow's ``log p_x(x)`` is then ``log p_z(z)`` plus the sum of the
forward log-dets along the chain.

Shapes: images ``x: [B, H, W, C]`` (channels last), flat data ``x: [B, D]``
(treated as H = W = 1, C = D: a "1x1 conv" is then a dense invertible matrix).
``log_det: [B]``. Parameters (scales, matrices) are per channel and shared over
positions, so their log-dets carry the factor H * W of the notes. Couplings take
the conditioner network as a callable, so this module knows nothing of Flax.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from genjax.core.likelihoods import dequantize_with_noise

__all__ = [
    "actnorm_forward", "actnorm_init", "actnorm_inverse",
    "additive_coupling_forward", "additive_coupling_inverse",
    "affine_coupling_forward", "affine_coupling_inverse",
    "affine_forward", "affine_inverse", "bounded_log_scale",
    "channel_mask", "checkerboard_mask",
    "conv1x1_forward", "conv1x1_inverse", "dequantize_forward", "dequantize_inverse",
    "gaussianize_forward", "gaussianize_inverse",
    "logit_forward", "logit_inverse",
    "lu_conv1x1_forward", "lu_conv1x1_inverse", "lu_decompose", "lu_weight",
    "split_forward", "split_inverse", "squeeze", "unsqueeze",
]

Conditioner = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def _sum_event(x: jax.Array) -> jax.Array:
    """Sum over every axis but the batch axis: [B, ...] -> [B]."""
    return x.reshape(x.shape[0], -1).sum(-1)


def _num_positions(x: jax.Array) -> int:
    """H * W of [B, H, W, C] (1 for flat [B, D])."""
    return math.prod(x.shape[1:-1])


# --------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------


def checkerboard_mask(height: int, width: int, channels: int, parity: int = 0) -> jax.Array:
    """b[i, j, c] = (i + j + parity) mod 2, float32 [H, W, C] (1 = passed through)."""
    i, j = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    board = ((i + j + parity) % 2).astype(jnp.float32)
    return jnp.broadcast_to(board[..., None], (height, width, channels))


def channel_mask(channels: int, parity: int = 0) -> jax.Array:
    """b[c] = 1 on the first half of the channels (parity 0) or the second (parity 1),
    float32 [C]; broadcasts over [B, H, W, C] and [B, D]."""
    first = jnp.arange(channels) < channels // 2
    return (first if parity == 0 else ~first).astype(jnp.float32)


# --------------------------------------------------------------------------------------
# Couplings (Dinh et al.: NICE, RealNVP)
# --------------------------------------------------------------------------------------


def bounded_log_scale(raw: jax.Array, kind: str = "sigmoid") -> jax.Array:
    """log s from an unconstrained network output, bounded so s cannot explode:

    ``sigmoid``: s = sigmoid(raw + 2) in (0, 1), so log s = log_sigmoid(raw + 2) <= 0
    (Glow; s = 0.88 at raw = 0); ``tanh``: log s = tanh(raw) in (-1, 1).
    """
    if kind == "sigmoid":
        return jax.nn.log_sigmoid(raw + 2.0)
    if kind == "tanh":
        return jnp.tanh(raw)
    raise ValueError(f"scale kind must be sigmoid or tanh, got {kind!r}")


def affine_coupling_forward(x: jax.Array, mask: jax.Array, conditioner: Conditioner,
                            scale: str = "sigmoid") -> tuple[jax.Array, jax.Array]:
    """Affine coupling, with b the mask (1 = kept) and (r, t) = conditioner(b * x):

        y = b * x + (1 - b) * (x * exp(log s) + t),   log s = bounded_log_scale(r),
        log |det dy/dx| = sum (1 - b) * log s.

    The Jacobian is triangular (y_b = x_b; y_{1-b} depends on x_b only through s, t).
    x: [B, ...]; mask broadcastable to x; conditioner: [B, ...] -> two arrays like x.
    """
    masked = mask * x
    raw, shift = conditioner(masked)
    log_s = (1.0 - mask) * bounded_log_scale(raw, scale)
    y = masked + (1.0 - mask) * (x * jnp.exp(log_s) + shift)
    return y, _sum_event(log_s)


def affine_coupling_inverse(y: jax.Array, mask: jax.Array, conditioner: Conditioner,
                            scale: str = "sigmoid") -> tuple[jax.Array, jax.Array]:
    """x = b * y + (1 - b) * (y - t) * exp(-log s), with (r, t) = conditioner(b * y)
    (b * y = b * x); log-det = -sum (1 - b) log s."""
    masked = mask * y
    raw, shift = conditioner(masked)
    log_s = (1.0 - mask) * bounded_log_scale(raw, scale)
    x = masked + (1.0 - mask) * (y - shift) * jnp.exp(-log_s)
    return x, -_sum_event(log_s)


def additive_coupling_forward(x: jax.Array, mask: jax.Array,
                              shift_fn: Callable[[jax.Array], jax.Array]):
    """Additive coupling (NICE): y = x + (1 - b) * t(b * x); volume preserving, log-det 0."""
    y = x + (1.0 - mask) * shift_fn(mask * x)
    return y, jnp.zeros(x.shape[0], x.dtype)


def additive_coupling_inverse(y: jax.Array, mask: jax.Array,
                              shift_fn: Callable[[jax.Array], jax.Array]):
    """x = y - (1 - b) * t(b * y); log-det 0."""
    x = y - (1.0 - mask) * shift_fn(mask * y)
    return x, jnp.zeros(y.shape[0], y.dtype)


def affine_forward(x: jax.Array, log_scale: jax.Array, shift: jax.Array):
    """Elementwise affine map with given (e.g. condition-dependent) parameters:
    y = x * exp(log_scale) + shift, log-det = sum log_scale (SRFlow's affine injector,
    where (log_scale, shift) are networks of the condition u, not of x)."""
    log_scale = jnp.broadcast_to(log_scale, x.shape)
    return x * jnp.exp(log_scale) + shift, _sum_event(log_scale)


def affine_inverse(y: jax.Array, log_scale: jax.Array, shift: jax.Array):
    """x = (y - shift) * exp(-log_scale), log-det = -sum log_scale."""
    log_scale = jnp.broadcast_to(log_scale, y.shape)
    return (y - shift) * jnp.exp(-log_scale), -_sum_event(log_scale)


# --------------------------------------------------------------------------------------
# Actnorm and invertible 1x1 convolutions (Kingma & Dhariwal: Glow)
# --------------------------------------------------------------------------------------


def actnorm_forward(x: jax.Array, log_scale: jax.Array, bias: jax.Array):
    """y = s * x + b per channel, s = exp(log_scale): log-det = H * W * sum_c log s_c.
    x: [B, H, W, C] or [B, D]; log_scale, bias: [C]."""
    y = x * jnp.exp(log_scale) + bias
    return y, jnp.full(x.shape[0], _num_positions(x) * jnp.sum(log_scale), x.dtype)


def actnorm_inverse(y: jax.Array, log_scale: jax.Array, bias: jax.Array):
    """x = (y - b) / s; log-det = -H * W * sum_c log s_c."""
    x = (y - bias) * jnp.exp(-log_scale)
    return x, jnp.full(y.shape[0], -_num_positions(y) * jnp.sum(log_scale), y.dtype)


def actnorm_init(x: jax.Array, eps: float = 1e-6) -> tuple[jax.Array, jax.Array]:
    """Data-dependent initialisation on a batch: (log_scale, bias), each [C], such that
    actnorm_forward(x) has mean 0 and standard deviation 1 per channel:
    s_c = 1 / (std_c + eps), b_c = -mean_c * s_c."""
    flat = x.reshape(-1, x.shape[-1])
    mean, std = flat.mean(0), flat.std(0)
    log_scale = -jnp.log(std + eps)
    return log_scale, -mean * jnp.exp(log_scale)


def _matmul_channels(x: jax.Array, w: jax.Array) -> jax.Array:
    """y[..., i] = sum_j W[i, j] x[..., j] (a 1x1 convolution with kernel W^T)."""
    return jnp.einsum("...j,ij->...i", x, w)


def conv1x1_forward(x: jax.Array, w: jax.Array):
    """Invertible 1x1 convolution y_ij = W x_ij, W: [C, C];
    log-det = H * W_img * log |det W| (slogdet, O(C^3))."""
    _, logabsdet = jnp.linalg.slogdet(w)
    return _matmul_channels(x, w), jnp.full(x.shape[0], _num_positions(x) * logabsdet, x.dtype)


def conv1x1_inverse(y: jax.Array, w: jax.Array):
    """x_ij = W^{-1} y_ij; log-det = -H * W_img * log |det W|."""
    _, logabsdet = jnp.linalg.slogdet(w)
    x = _matmul_channels(y, jnp.linalg.inv(w))
    return x, jnp.full(y.shape[0], -_num_positions(y) * logabsdet, y.dtype)


def lu_weight(perm: jax.Array, lower: jax.Array, upper: jax.Array, log_s: jax.Array,
              sign_s: jax.Array | float = 1.0) -> jax.Array:
    """W = P L (U + diag(s)), s = sign_s * exp(log_s): L unit lower-triangular (the
    strictly lower part of ``lower`` plus I), U strictly upper (of ``upper``), P a fixed
    permutation matrix. All [C, C] but log_s, sign_s: [C]."""
    c = log_s.shape[-1]
    eye = jnp.eye(c, dtype=lower.dtype)
    l_mat = jnp.tril(lower, -1) + eye
    u_mat = jnp.triu(upper, 1) + jnp.diag(sign_s * jnp.exp(log_s))
    return perm @ l_mat @ u_mat


def lu_decompose(w: jax.Array):
    """(perm, lower, upper, log_s, sign_s) with lu_weight(...) == W (for initialising an
    LU-parametrised 1x1 conv from a matrix such as a random rotation)."""
    perm, l_mat, u_mat = jax.scipy.linalg.lu(w)
    s = jnp.diag(u_mat)
    return perm, jnp.tril(l_mat, -1), jnp.triu(u_mat, 1), jnp.log(jnp.abs(s)), jnp.sign(s)


def lu_conv1x1_forward(x, perm, lower, upper, log_s, sign_s=1.0):
    """1x1 conv with W = P L (U + diag(s)): log |det W| = sum_c log |s_c| (O(C)),
    log-det = H * W_img * sum_c log |s_c|."""
    w = lu_weight(perm, lower, upper, log_s, sign_s)
    return _matmul_channels(x, w), jnp.full(x.shape[0], _num_positions(x) * jnp.sum(log_s),
                                            x.dtype)


def lu_conv1x1_inverse(y, perm, lower, upper, log_s, sign_s=1.0):
    """x = W^{-1} y with W = P L (U + diag(s)) by two triangular solves and P^T."""
    c = log_s.shape[-1]
    l_mat = jnp.tril(lower, -1) + jnp.eye(c, dtype=lower.dtype)
    u_mat = jnp.triu(upper, 1) + jnp.diag(sign_s * jnp.exp(log_s))
    flat = y.reshape(-1, c).T                                     # [C, N]
    a = jax.scipy.linalg.solve_triangular(l_mat, perm.T @ flat, lower=True, unit_diagonal=True)
    x = jax.scipy.linalg.solve_triangular(u_mat, a, lower=False)
    return x.T.reshape(y.shape), jnp.full(y.shape[0], -_num_positions(y) * jnp.sum(log_s),
                                          y.dtype)


# --------------------------------------------------------------------------------------
# Multi-scale architecture: squeeze and split
# --------------------------------------------------------------------------------------


def squeeze(x: jax.Array) -> jax.Array:
    """Space to depth: [B, H, W, C] -> [B, H/2, W/2, 4C] (each 2x2 patch becomes channels;
    a permutation, log-det 0)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(x: jax.Array) -> jax.Array:
    """Depth to space, the inverse of :func:`squeeze`: [B, H, W, 4C] -> [B, 2H, 2W, C]."""
    b, h, w, c4 = x.shape
    c = c4 // 4
    x = x.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, 2 * h, 2 * w, c)


def gaussianize_forward(z: jax.Array, mean: jax.Array, log_scale: jax.Array):
    """Standardise z under a learned prior N(mean, sigma^2): eps = (z - mean) / sigma,
    log-det = -sum log sigma, so log N(z; mean, sigma^2) = log N(eps; 0, I) + log-det."""
    return affine_inverse(z, log_scale, mean)


def gaussianize_inverse(eps: jax.Array, mean: jax.Array, log_scale: jax.Array):
    """z = mean + sigma * eps; log-det = sum log sigma."""
    return affine_forward(eps, log_scale, mean)


def split_forward(x: jax.Array, prior: Conditioner):
    """Multi-scale split (RealNVP, Glow): factor out half the channels.

    x = [z_1, z_2] on the channel axis; z_2 gets the prior N(mean, sigma^2) with
    (mean, log sigma) = prior(z_1) and is standardised: eps = (z_2 - mean) / sigma.
    Returns ((z_1, eps), log_det) with log_det = -sum log sigma: the map
    x -> (z_1, eps) is a bijection whose eps is N(0, I) under the model.
    """
    z1, z2 = jnp.split(x, 2, axis=-1)
    mean, log_scale = prior(z1)
    eps, log_det = gaussianize_forward(z2, mean, log_scale)
    return (z1, eps), log_det


def split_inverse(z1: jax.Array, eps: jax.Array, prior: Conditioner):
    """x = [z_1, mean(z_1) + sigma(z_1) * eps]; log-det = sum log sigma."""
    mean, log_scale = prior(z1)
    z2, log_det = gaussianize_inverse(eps, mean, log_scale)
    return jnp.concatenate([z1, z2], axis=-1), log_det


# --------------------------------------------------------------------------------------
# Pre-processing of discrete data
# --------------------------------------------------------------------------------------


def dequantize_forward(x_levels: jax.Array, u: jax.Array, num_levels: int):
    """Uniform dequantization y = (k + u) / L, u in [0, 1)^D (noise passed in).

    log-det of (k + u) -> y is -D log L, so with p the flow density on [0, 1)^D,
    log P(k) >= E_u[log p(y)] - D log L (Theis et al.): adding this log-det to the
    flow's log-density gives a bound on the log-probability of the discrete levels.
    y is kept inside the bin of k, so floor(y L) = k (:func:`likelihoods.dequantize_with_noise`).
    """
    k = jnp.asarray(x_levels).astype(jnp.float32)
    y = dequantize_with_noise(k, jnp.asarray(u, jnp.float32), num_levels)
    dims = math.prod(y.shape[1:])
    return y, jnp.full(y.shape[0], -dims * math.log(num_levels), jnp.float32)


def dequantize_inverse(y: jax.Array, num_levels: int) -> jax.Array:
    """Levels k = clip(floor(y L), 0, L - 1) (uint8; int32 when L > 256)."""
    k = jnp.clip(jnp.floor(y * num_levels), 0, num_levels - 1)
    return k.astype(jnp.uint8 if num_levels <= 256 else jnp.int32)


def logit_forward(y: jax.Array, alpha: float = 0.05):
    """Logit pre-processing (RealNVP): p = alpha + (1 - 2 alpha) y, x = log p - log(1 - p),
    for y in [0, 1]. log-det = sum [log(1 - 2 alpha) - log p - log(1 - p)]."""
    p = alpha + (1.0 - 2.0 * alpha) * y
    x = jnp.log(p) - jnp.log1p(-p)
    log_det = math.log(1.0 - 2.0 * alpha) - jnp.log(p) - jnp.log1p(-p)
    return x, _sum_event(log_det)


def logit_inverse(x: jax.Array, alpha: float = 0.05):
    """y = (sigmoid(x) - alpha) / (1 - 2 alpha); log-det = sum [log p + log(1 - p) -
    log(1 - 2 alpha)] with p = sigmoid(x)."""
    p = jax.nn.sigmoid(x)
    y = (p - alpha) / (1.0 - 2.0 * alpha)
    log_det = jax.nn.log_sigmoid(x) + jax.nn.log_sigmoid(-x) - math.log(1.0 - 2.0 * alpha)
    return y, _sum_event(log_det)
