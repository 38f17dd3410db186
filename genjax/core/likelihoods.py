"""Likelihoods of the notes: log-densities, KL terms, and the scaling of image data.

Every function here is pure ``jax.numpy``: no Flax, no state, no randomness except
through an explicit ``rng`` key. Conventions shared by all of them:

* **Elementwise, broadcasting, no reduction.** Arguments broadcast against each other
  as in NumPy and the result has the broadcast shape; nothing is summed. A model sums
  the per-element log-probabilities over the event axes itself, e.g. for images
  ``x: [B, H, W, C]``::

      log p_theta(x | z) = jnp.sum(log_prob, axis=(1, 2, 3))        # [B]

  The one exception is the mixture, whose component axis ``K`` is the last axis of
  its parameters and is reduced by ``logsumexp``.
* **Nats.** All log-probabilities and KL terms are in nats; :func:`bits_per_dim`
  converts a negative log-likelihood to bits per dimension.
* **Scales as logs.** A standard deviation (or logistic scale) is always passed as
  ``log_scale = log sigma``, the unconstrained output of a network.
* **Data scaling.** A ``uint8`` level ``k in {0, ..., L - 1}`` (``L = num_levels``):

  ==========================  =========================  ===========================
  function                    value                      range
  ==========================  =========================  ===========================
  :func:`to_unit_interval`    ``k / (L - 1)``            ``[0, 1]``
  :func:`to_symmetric`        ``2 k / (L - 1) - 1``      ``[-1, 1]``
  :func:`uniform_dequantize`  ``(k + u) / L``            ``[0, 1)``, ``u ~ U[0, 1)``
  ==========================  =========================  ===========================

  The discretized likelihoods take ``x = to_symmetric(k)``; continuous densities
  (flows) take ``uniform_dequantize(rng, k)``.

``num_levels`` is always a static Python ``int``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, logsumexp
from jax.typing import ArrayLike

from genjax.core.random import batch_draw

__all__ = [
    "bernoulli_log_prob",
    "bits_per_dim",
    "discretized_gaussian_log_prob",
    "discretized_logistic_log_prob",
    "discretized_logistic_mixture_log_prob",
    "pixel_mixture_log_prob",
    "pixel_mixture_sample",
    "from_symmetric",
    "gaussian_kl",
    "gaussian_log_prob",
    "reparameterize",
    "to_symmetric",
    "to_unit_interval",
    "uniform_dequantize",
]

_LOG_2PI = math.log(2.0 * math.pi)
# A bin of standardized width w around standardized centre m is "narrow" when
# w * (|m| + 1) < _NARROW; there Simpson's rule has relative error below ~1e-7 while a
# difference of log-CDFs would cancel catastrophically.
_NARROW = 0.1
# Below this standardized value the Gaussian log-CDF uses its asymptotic series.
_TAIL = 10.0


def _float_dtype(*args: ArrayLike) -> jnp.dtype:
    """The floating dtype the arguments promote to (the default float for integers)."""
    dtype = jnp.result_type(*args)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


def _log1mexp(d: jax.Array) -> jax.Array:
    """log(1 - exp(-d)) for d > 0, accurate for small d (via expm1)."""
    return jnp.log(-jnp.expm1(-d))


# --------------------------------------------------------------------------------------
# Continuous densities and the Gaussian KL
# --------------------------------------------------------------------------------------


def bernoulli_log_prob(x: ArrayLike, logits: ArrayLike) -> jax.Array:
    """Elementwise Bernoulli log-likelihood from logits.

    With p = sigmoid(logits) = p_theta(x = 1 | z)::

        log p(x) = x log sigmoid(logits) + (1 - x) log sigmoid(-logits)

    written with ``log_sigmoid`` so it is finite and accurate for any finite logits
    (e.g. |logits| = 100), unlike ``log(sigmoid(logits))``.

    Args:
      x: binary data in {0, 1}, any shape (bool, int or float).
      logits: logits of p(x = 1), broadcastable with ``x``.

    Returns:
      log p(x) in nats, the broadcast shape of ``x`` and ``logits``.
    """
    dtype = _float_dtype(x, logits)
    x = jnp.asarray(x, dtype)
    logits = jnp.asarray(logits, dtype)
    return x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits)


def gaussian_log_prob(x: ArrayLike, mean: ArrayLike, log_scale: ArrayLike) -> jax.Array:
    """Elementwise log-density of a Gaussian N(x; mu, sigma^2), sigma = exp(log_scale)::

        log N(x; mu, sigma^2) = -1/2 ((x - mu) / sigma)^2 - log sigma - 1/2 log(2 pi)

    Args:
      x, mean, log_scale: broadcastable arrays (``log_scale = log sigma``).

    Returns:
      log N(x; mu, sigma^2) in nats, the broadcast shape.
    """
    dtype = _float_dtype(x, mean, log_scale)
    x, mean, log_scale = (jnp.asarray(a, dtype) for a in (x, mean, log_scale))
    z = (x - mean) * jnp.exp(-log_scale)
    return -0.5 * jnp.square(z) - log_scale - 0.5 * _LOG_2PI


def gaussian_kl(
    mean_q: ArrayLike,
    log_scale_q: ArrayLike,
    mean_p: ArrayLike = 0.0,
    log_scale_p: ArrayLike = 0.0,
) -> jax.Array:
    """Elementwise KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) in nats.

    The VAE prior term KL(q_phi(z|x) || p(z)) with the defaults p(z) = N(0, I)::

        KL = log(sigma_p / sigma_q) + (sigma_q^2 + (mu_q - mu_p)^2) / (2 sigma_p^2) - 1/2

    computed with d = log sigma_q - log sigma_p as
    ``1/2 (expm1(2 d) - 2 d) + 1/2 ((mu_q - mu_p) / sigma_p)^2``, which is exactly
    zero when q = p and never negative.

    Args:
      mean_q, log_scale_q: parameters of q_phi(z|x), e.g. ``[B, D]``.
      mean_p, log_scale_p: parameters of p, broadcastable (default: standard normal).

    Returns:
      KL per element, the broadcast shape; sum over the latent axis for the KL of a
      diagonal Gaussian, e.g. ``jnp.sum(kl, axis=-1)`` -> ``[B]``.
    """
    dtype = _float_dtype(mean_q, log_scale_q, mean_p, log_scale_p)
    mean_q, log_scale_q, mean_p, log_scale_p = (
        jnp.asarray(a, dtype) for a in (mean_q, log_scale_q, mean_p, log_scale_p)
    )
    d = log_scale_q - log_scale_p
    z = (mean_q - mean_p) * jnp.exp(-log_scale_p)
    scale_term = jnp.maximum(jnp.expm1(2.0 * d) - 2.0 * d, 0.0)  # >= 0 in exact arithmetic
    return 0.5 * scale_term + 0.5 * jnp.square(z)


def reparameterize(rng: jax.Array, mean: ArrayLike, log_scale: ArrayLike) -> jax.Array:
    """A sample z ~ N(mu, sigma^2) by the reparameterization trick::

        z = mu + sigma * eps,    eps ~ N(0, I),    sigma = exp(log_scale)

    The noise eps depends only on ``rng``, so gradients of any f(z) flow to ``mean``
    and ``log_scale``: d z / d mu = 1, d z / d log sigma = sigma * eps. Axis 0 is the
    batch: eps is drawn by :func:`genjax.core.random.batch_draw`, so a data-parallel
    step draws the same eps per example as a single-device one.

    Args:
      rng: a PRNG key.
      mean, log_scale: parameters of q_phi(z|x), broadcastable, e.g. ``[B, D]``.

    Returns:
      z with the broadcast shape of ``mean`` and ``log_scale``.
    """
    dtype = _float_dtype(mean, log_scale)
    mean = jnp.asarray(mean, dtype)
    log_scale = jnp.asarray(log_scale, dtype)
    shape = jnp.broadcast_shapes(mean.shape, log_scale.shape)
    eps = batch_draw(jax.random.normal, rng, shape, dtype)
    return mean + jnp.exp(log_scale) * eps


# --------------------------------------------------------------------------------------
# Discretized likelihoods of data in [-1, 1]
# --------------------------------------------------------------------------------------


def _bins(x: jax.Array, num_levels: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Level index k of x = 2 k / (L - 1) - 1 and its bin's centre and edges.

    x is snapped to the nearest level and clipped to [0, L - 1]. The edges are
    computed from the integers 2 k -+ 1, so neighbouring bins share bit-identical
    edges and the bin probabilities add up to one in floating point.
    """
    if num_levels < 2:
        raise ValueError(f"num_levels must be >= 2, got {num_levels}")
    denom = float(num_levels - 1)
    k = jnp.clip(jnp.round((x + 1.0) * (0.5 * denom)), 0.0, denom)
    centre = (2.0 * k) / denom - 1.0
    lower = (2.0 * k - 1.0) / denom - 1.0
    upper = (2.0 * k + 1.0) / denom - 1.0
    return k, centre, lower, upper


def _standardized_bins(x, mean, log_scale, num_levels):
    """Bin of x in standardized units of (mean, scale): (k, lo, hi, mid, width)."""
    dtype = _float_dtype(x, mean, log_scale)
    x, mean, log_scale = (jnp.asarray(a, dtype) for a in (x, mean, log_scale))
    k, centre, lower, upper = _bins(x, num_levels)
    inv_scale = jnp.exp(-log_scale)
    lo = (lower - mean) * inv_scale
    hi = (upper - mean) * inv_scale
    mid = (centre - mean) * inv_scale
    width = (2.0 / (num_levels - 1)) * inv_scale  # exact hi - lo, free of cancellation
    return k, lo, hi, mid, width


def _log_mills_series(t: jax.Array) -> jax.Array:
    """log S(t), S(t) = 1 - 1/t^2 + 3/t^4 - 15/t^6 + 105/t^8, for t <= -10.

    Phi(t) ~ phi(t) / (-t) * S(t) as t -> -inf; the next term is < 1e-7 at t = -10.
    """
    r = 1.0 / jnp.square(t)
    return jnp.log1p(r * (-1.0 + r * (3.0 + r * (-15.0 + r * 105.0))))


def _log_normal_bin(lo, hi, mid, width, first, last):
    """log(Phi(hi) - Phi(lo)) for lo < hi, accurate from the centre to the far tails;
    log Phi(hi) where ``first`` and log(1 - Phi(lo)) = log Phi(-lo) where ``last``.

    ``mid = (lo + hi) / 2`` and ``width = hi - lo`` are passed in exactly. By symmetry
    the bin is reflected so its centre m <= 0, [a, b] = [m - w/2, m + w/2]. Then:

    * narrow bins, w (|m| + 1) < 0.1: Simpson's rule in log space,
      log w + log phi(m) + log((phi(a) + 4 phi(m) + phi(b)) / (6 phi(m)));
    * otherwise log Phi(b) + log(1 - exp(-delta)), delta = log Phi(b) - log Phi(a), with
      delta from the asymptotic series of log Phi when b < -10 (no cancellation of
      the huge log-CDFs of the far tail), and log_ndtr(b) - log_ndtr(a) otherwise
      (there |log Phi| < 54 and delta >~ 0.04, so delta is well conditioned).
      (jax's float32 ``erfcx``, the textbook tool here, returns 0 on [9.19, 9.42].)

    Unselected branches get harmless inputs so gradients stay finite everywhere. All
    log-CDFs go through one ``log_ndtr`` call, which keeps the compiled graph small.
    """
    edge = jnp.logical_or(first, last)
    flip = mid > 0
    a = jnp.where(flip, -hi, lo)
    b = jnp.where(flip, -lo, hi)
    m = -jnp.abs(mid)
    narrow = jnp.logical_and(width * (jnp.abs(mid) + 1.0) < _NARROW, jnp.logical_not(edge))
    lower_tail = jnp.logical_and(jnp.logical_not(narrow), b < -_TAIL)

    # Simpson's rule: phi(m -+ w/2) / phi(m) = exp(+-w m / 2 - w^2 / 8).
    w_s = jnp.where(narrow, width, 0.5 * _NARROW)
    m_s = jnp.where(narrow, m, 0.0)
    half, eighth = 0.5 * w_s * m_s, 0.125 * w_s * w_s
    simpson = (
        jnp.log(w_s)
        - 0.5 * jnp.square(m_s)
        - 0.5 * _LOG_2PI
        + jnp.log((jnp.exp(half - eighth) + 4.0 + jnp.exp(-half - eighth)) / 6.0)
    )

    # Far tail, b < -10: log Phi(t) = -t^2/2 - log(-t) - log(2 pi)/2 + log S(t) with the
    # asymptotic series S(t) = 1 - 1/t^2 + 3/t^4 - 15/t^6 + 105/t^8 (error < 1e-7), so
    # delta = -w m - log1p(w / a) + log S(b) - log S(a) without cancellation.
    a_t = jnp.where(lower_tail, a, -2.0 * _TAIL)
    b_t = jnp.where(lower_tail, b, -1.5 * _TAIL)
    w_t = jnp.where(lower_tail, width, 0.5 * _TAIL)
    m_t = jnp.where(lower_tail, m, -1.75 * _TAIL)
    delta_tail = (
        -w_t * m_t  # = -(b^2 - a^2) / 2, exact
        - jnp.log1p(w_t / a_t)  # = -log(b / a)
        + _log_mills_series(b_t)
        - _log_mills_series(a_t)
    )
    b_or_edge = jnp.where(first, hi, jnp.where(last, -lo, b))
    log_cdf_b, log_cdf_a = log_ndtr(jnp.stack([b_or_edge, a]))
    delta_direct = log_cdf_b - log_cdf_a
    delta = jnp.where(
        jnp.logical_or(narrow, edge), 1.0, jnp.where(lower_tail, delta_tail, delta_direct)
    )
    inner = jnp.where(narrow, simpson, log_cdf_b + _log1mexp(delta))
    return jnp.where(edge, log_cdf_b, inner)


def discretized_gaussian_log_prob(
    x: ArrayLike, mean: ArrayLike, log_scale: ArrayLike, num_levels: int = 256
) -> jax.Array:
    """Elementwise log-probability of a level under a discretized Gaussian.

    x is data scaled to [-1, 1], x = 2 k / (L - 1) - 1 for a level k (see
    :func:`to_symmetric`); each level owns the bin [x - 1/(L-1), x + 1/(L-1)] and the
    edge bins extend to -inf / +inf (Ho et al. 2020, DDPM decoder L_0)::

        p(x) = Phi(( x + 1/(L-1) - mu) / sigma)                    if k = 0
             = 1 - Phi((x - 1/(L-1) - mu) / sigma)                 if k = L - 1
             = Phi((x + 1/(L-1) - mu) / sigma) - Phi((x - 1/(L-1) - mu) / sigma)  else

    so the probabilities of the L levels sum to one for every (mu, sigma). Each term
    is computed in log space (``log_ndtr`` for the edge bins; for inner bins see
    ``_log_normal_bin``): accurate far into the tails, with finite gradients,
    and without the 1e-12 clamps of the DDPM reference code. x is snapped to the
    nearest level (it is discrete data), so there is no gradient with respect to x.

    Args:
      x: data in [-1, 1] on the grid of ``num_levels`` levels, e.g. ``[B, H, W, C]``.
      mean, log_scale: mu and log sigma of p_theta(x|z), broadcastable with ``x``.
      num_levels: number of levels L (256 for 8-bit images, 2 for binary).

    Returns:
      log p(x) in nats per element, the broadcast shape.
    """
    k, lo, hi, mid, width = _standardized_bins(x, mean, log_scale, num_levels)
    # first bin: (-inf, hi]; last bin: [lo, +inf)
    return _log_normal_bin(lo, hi, mid, width, k == 0, k == num_levels - 1)


def discretized_logistic_log_prob(
    x: ArrayLike, mean: ArrayLike, log_scale: ArrayLike, num_levels: int = 256
) -> jax.Array:
    """Elementwise log-probability of a level under a discretized logistic.

    PixelCNN++ (Salimans et al. 2017) conventions: x = 2 k / (L - 1) - 1 in [-1, 1],
    bin [x - 1/(L-1), x + 1/(L-1)], edge bins extended to -inf / +inf, and the logistic
    CDF sigmoid((t - mu) / s) with s = exp(log_scale)::

        p(x) = sigmoid(hi)                    if k = 0,      hi = (x + 1/(L-1) - mu) / s
             = 1 - sigmoid(lo)                if k = L - 1,  lo = (x - 1/(L-1) - mu) / s
             = sigmoid(hi) - sigmoid(lo)      otherwise.

    The inner bins use the exact identity
    ``sigmoid(hi) - sigmoid(lo) = sigmoid(hi) sigmoid(-lo) (1 - exp(-(hi - lo)))``,
    i.e. ``log p = log_sigmoid(hi) + log_sigmoid(-lo) + log(-expm1(-2 / ((L-1) s)))``,
    which is accurate for every mu and s, so PixelCNN++'s mid-bin density fallback
    for tiny probabilities is not needed (and not used). No clamp is put on
    ``log_scale``; PixelCNN++ clamps it at -7 in the model. x is snapped to the
    nearest level.

    Args:
      x: data in [-1, 1] on the grid of ``num_levels`` levels, e.g. ``[B, H, W, C]``.
      mean, log_scale: mu and log s of the logistic, broadcastable with ``x``.
      num_levels: number of levels L.

    Returns:
      log p(x) in nats per element, the broadcast shape.
    """
    k, lo, hi, _, width = _standardized_bins(x, mean, log_scale, num_levels)
    log_cdf_hi = jax.nn.log_sigmoid(hi)  # first bin: (-inf, hi]
    log_sf_lo = jax.nn.log_sigmoid(-lo)  # last bin: [lo, +inf)
    log_inner = log_cdf_hi + log_sf_lo + _log1mexp(width)
    return jnp.where(k == 0, log_cdf_hi, jnp.where(k == num_levels - 1, log_sf_lo, log_inner))


def discretized_logistic_mixture_log_prob(
    x: ArrayLike,
    logit_probs: ArrayLike,
    means: ArrayLike,
    log_scales: ArrayLike,
    num_levels: int = 256,
) -> jax.Array:
    """Elementwise log-probability under a mixture of K discretized logistics::

        p(x) = sum_k pi_k p_logistic(x; mu_k, s_k),    pi = softmax(logit_probs)
        log p(x) = logsumexp_k(log_softmax(logit_probs)_k + log p_logistic(x; mu_k, s_k))

    with the bins of :func:`discretized_logistic_log_prob`. Each element (each colour
    channel) has its own independent mixture: the channel-autoregressive coupling of
    PixelCNN++ (mu_G depending on x_R, mu_B on x_R and x_G, with shared mixture
    weights across channels) is *not* implemented here; a model that wants it
    shifts ``means`` itself before calling this function.

    Args:
      x: data in [-1, 1], shape ``[...]`` (e.g. ``[B, H, W, C]``).
      logit_probs: unnormalized mixture logits, ``[..., K]`` (component axis last).
      means: component means, ``[..., K]``.
      log_scales: component log-scales, ``[..., K]``.
      num_levels: number of levels L.

    Returns:
      log p(x) in nats, shape ``[...]`` (the broadcast of ``x`` with the parameters
      minus their last axis).
    """
    x = jnp.asarray(x)
    logit_probs = jnp.asarray(logit_probs)
    log_components = discretized_logistic_log_prob(
        x[..., None], means, log_scales, num_levels=num_levels
    )
    log_weights = jax.nn.log_softmax(logit_probs, axis=-1)
    return logsumexp(log_components + log_weights, axis=-1)


def _coupled_means(x: jax.Array, means: jax.Array, coeffs: jax.Array) -> jax.Array:
    """mu'_c = mu_c + sum_{j<c} a_{c,j} x_j (PixelCNN++ channel coupling), [..., C, K]."""
    c = means.shape[-2]
    rows, cols = jnp.tril_indices(c, -1)           # (c, j) pairs with j < c, row-major
    a = jnp.zeros(coeffs.shape[:-2] + (c, c) + coeffs.shape[-1:], coeffs.dtype)
    a = a.at[..., rows, cols, :].set(coeffs)       # strictly lower-triangular A [..., C, C, K]
    return means + jnp.einsum("...cjk,...j->...ck", a, x)


def pixel_mixture_log_prob(
    x: ArrayLike,
    logit_probs: ArrayLike,
    means: ArrayLike,
    log_scales: ArrayLike,
    coeffs: ArrayLike,
    num_levels: int = 256,
) -> jax.Array:
    """Log-probability of a whole pixel under the PixelCNN++ mixture (Salimans et al. 2017)::

        p(x) = sum_k pi_k prod_c p_logistic(x_c; mu'_{k,c}, s_{k,c}),
        mu'_{k,c} = mu_{k,c} + sum_{j<c} a_{k,c,j} x_j,

    one mixture weight pi_k per pixel shared by its C channels, and channel c's
    mean shifted linearly by the channels before it (R -> G -> B), so the
    channels are dependent while every factor stays a discretized logistic.

    Args:
      x: one pixel per row in [-1, 1] on the level grid, ``[..., C]``.
      logit_probs: ``[..., K]`` mixture logits.
      means, log_scales: ``[..., C, K]``.
      coeffs: ``[..., C (C - 1) / 2, K]`` coupling coefficients a_{c,j} (j < c, row-major:
        for RGB (a_GR, a_BR, a_BG)); PixelCNN++ squashes them by tanh before.
      num_levels: number of levels L.

    Returns:
      log p(x) in nats, shape ``[...]`` (the channels and components reduced).
    """
    x = jnp.asarray(x)
    means = _coupled_means(x, jnp.asarray(means), jnp.asarray(coeffs))
    log_components = discretized_logistic_log_prob(x[..., None], means, log_scales, num_levels)
    return logsumexp(jnp.sum(log_components, axis=-2)
                     + jax.nn.log_softmax(jnp.asarray(logit_probs), axis=-1), axis=-1)


def pixel_mixture_sample(
    rng: jax.Array,
    logit_probs: ArrayLike,
    means: ArrayLike,
    log_scales: ArrayLike,
    coeffs: ArrayLike,
    num_levels: int = 256,
) -> jax.Array:
    """An exact sample of :func:`pixel_mixture_log_prob`, as levels in [-1, 1] ``[..., C]``.

    k ~ Cat(pi); then channel by channel x_c = Q(mu'_{k,c} + s_{k,c} (log u - log(1 - u))),
    u ~ U(0, 1), where Q rounds to the nearest level and clips to [-1, 1] (the
    edge bins of the discretized logistic reach to +-inf), and mu'_{k,c} uses the
    already *quantized* earlier channels, as the likelihood does.
    """
    logit_probs = jnp.asarray(logit_probs)
    means, log_scales, coeffs = jnp.asarray(means), jnp.asarray(log_scales), jnp.asarray(coeffs)
    c = means.shape[-2]
    key_k, key_u = jax.random.split(rng)
    k = jax.random.categorical(key_k, logit_probs, axis=-1)
    pick = jax.nn.one_hot(k, logit_probs.shape[-1], dtype=means.dtype)[..., None, :]
    u = jax.random.uniform(key_u, means.shape[:-1], means.dtype, 1e-6, 1.0 - 1e-6)
    noise = jnp.log(u) - jnp.log1p(-u)
    x = jnp.zeros(means.shape[:-1], means.dtype)
    for ch in range(c):                        # C is 1 or 3: unrolled
        mu = jnp.sum(_coupled_means(x, means, coeffs)[..., ch, :] * pick[..., 0, :], axis=-1)
        s = jnp.exp(jnp.sum(log_scales[..., ch, :] * pick[..., 0, :], axis=-1))
        level = from_symmetric(mu + s * noise[..., ch], num_levels)
        x = x.at[..., ch].set(to_symmetric(level, num_levels))
    return x


# --------------------------------------------------------------------------------------
# Units and data scaling
# --------------------------------------------------------------------------------------


def bits_per_dim(nll_nats: ArrayLike, num_dims: int | ArrayLike) -> jax.Array:
    """Convert a negative log-likelihood in nats to bits per dimension::

        bpd = nll / (D ln 2)

    Args:
      nll_nats: -log p(x) in nats, any shape (e.g. per example ``[B]``).
      num_dims: the number of dimensions D of one x (e.g. H * W * C).

    Returns:
      bits per dimension, the shape of ``nll_nats``.
    """
    nll = jnp.asarray(nll_nats, _float_dtype(nll_nats))
    return nll / (jnp.asarray(num_dims, nll.dtype) * math.log(2.0))


def dequantize_with_noise(x: jax.Array, u: jax.Array, num_levels: int) -> jax.Array:
    """(x + u) / L, held inside the float bin of x so that floor(y * L) == x."""
    levels = float(num_levels)
    y = (x + u) / levels
    # Rounding can push (x + u) / L onto a neighbouring bin's edge (e.g. u close to 1
    # at x = 255 gives exactly 1.0): clamp to the floats whose floor(y * L) is x.
    lo = x / levels
    lo = jnp.where(jnp.floor(lo * levels) < x, jnp.nextafter(lo, jnp.inf), lo)
    hi = jnp.nextafter((x + 1.0) / levels, -jnp.inf)
    hi = jnp.where(jnp.floor(hi * levels) > x, jnp.nextafter(hi, -jnp.inf), hi)
    return jnp.clip(y, lo, hi)


def uniform_dequantize(rng: jax.Array, x_uint8: ArrayLike, num_levels: int = 256) -> jax.Array:
    """Uniform dequantization of discrete levels into [0, 1)::

        y = (x + u) / L,    u ~ U[0, 1)

    A density on y in [0, 1)^D lower-bounds the discrete log-likelihood:
    log P(x) >= E_u[log p(y)] - D log L (Theis et al. 2016), and floor(y * L) = x.

    Args:
      rng: a PRNG key.
      x_uint8: integer levels in {0, ..., L - 1}, any shape (e.g. ``[B, H, W, C]``).
      num_levels: number of levels L.

    Returns:
      float32 y in [0, 1), the shape of ``x_uint8``.
    """
    x = jnp.asarray(x_uint8).astype(jnp.float32)
    u = jax.random.uniform(rng, x.shape, jnp.float32)
    return dequantize_with_noise(x, u, num_levels)


def _top_is_one(x: jax.Array, y: jax.Array, num_levels: int) -> jax.Array:
    """y with the top level L - 1 set to exactly 1.0. XLA compiles a division by the
    constant L - 1 as a multiplication by its reciprocal, which for some L (42, 48, 108, ...;
    not 2^n or 255) rounds (L - 1) / (L - 1) to 1 - 2^-24."""
    return jnp.where(x == num_levels - 1, jnp.float32(1.0), y)


def to_unit_interval(x_uint8: ArrayLike, num_levels: int = 256) -> jax.Array:
    """Levels to [0, 1]: y = x / (L - 1) (float32; 0 -> 0.0 and L - 1 -> 1.0 exactly)."""
    x = jnp.asarray(x_uint8).astype(jnp.float32)
    return _top_is_one(x, x / float(num_levels - 1), num_levels)


def to_symmetric(x_uint8: ArrayLike, num_levels: int = 256) -> jax.Array:
    """Levels to [-1, 1]: y = 2 x / (L - 1) - 1 (float32; the grid of the discretized
    likelihoods, 0 -> -1.0 and L - 1 -> 1.0 exactly)."""
    x = jnp.asarray(x_uint8).astype(jnp.float32)
    return _top_is_one(x, (2.0 * x) / float(num_levels - 1) - 1.0, num_levels)


def from_symmetric(x: ArrayLike, num_levels: int = 256) -> jax.Array:
    """Values in [-1, 1] back to levels: k = clip(round((x + 1) (L - 1) / 2), 0, L - 1).

    Inverts :func:`to_symmetric` exactly on the grid; anything else (e.g. a sample) is
    rounded to the nearest level and clipped. Returns uint8 (int32 if L > 256).
    """
    x = jnp.asarray(x, jnp.float32)
    k = jnp.clip(jnp.round((x + 1.0) * (0.5 * (num_levels - 1))), 0, num_levels - 1)
    return k.astype(jnp.uint8 if num_levels <= 256 else jnp.int32)
