"""Langevin samplers for energy-based and score-based models, each one ``lax.scan``.

Notation of the notes (Song & Ermon, 2019): a density p(x) = exp(-E(x)) / Z is sampled
through its score s(x) = grad_x log p(x) = -grad_x E(x), which does not need Z.

- Unadjusted Langevin (ULA): x_{k+1} = x_k + eps s(x_k) + sqrt(2 eps) z_k, z_k ~ N(0, I).
  For small eps and many steps x_K is approximately distributed as p; the bias is O(eps)
  (for a Gaussian N(mu, sigma^2) the chain's stationary variance is
  sigma^2 / (1 - eps / (2 sigma^2))).
- MALA: the same move as a proposal x' ~ q(x' | x) = N(x + eps s(x), 2 eps I), accepted
  with probability min(1, p(x') q(x | x') / (p(x) q(x' | x))); exact for any eps, and the
  acceptance rate says how far eps is from the ULA regime.
- Annealed Langevin (NCSN): for noise levels sigma_1 > ... > sigma_L and the score of the
  data perturbed by N(0, sigma_i^2 I), run T steps at each level with
  alpha_i = eps sigma_i^2 / sigma_L^2:  x <- x + (alpha_i / 2) s(x, sigma_i) + sqrt(alpha_i) z.
  Large noise connects the modes, so the chains find their relative weights, which plain
  Langevin at the smallest level cannot.
- A replay buffer keeps persistent chains between training steps of an EBM (Du & Mordatch,
  2019): a batch starts from buffer rows, a fraction ``reinit`` of them from fresh noise,
  and the rows are written back after the short run. It is an array in the model's
  non-trainable state.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from genjax.core.batch import sum_event

Score = Callable[[jax.Array], jax.Array]             # x [B, ...] -> grad log p(x) [B, ...]
NoiseScore = Callable[[jax.Array, jax.Array], jax.Array]   # (x, sigma) -> score at level sigma


def langevin(score_fn: Score, x0: jax.Array, rng: jax.Array, *, step_size: float,
             num_steps: int, normal: Callable = jax.random.normal) -> jax.Array:
    """ULA from ``x0`` [B, ...]: num_steps moves x + eps s(x) + sqrt(2 eps) z; returns x_K.
    ``normal(key, shape, dtype)`` draws z (a model passes one that draws per example, so
    that chains do not depend on how the batch is split over devices)."""
    eps = jnp.asarray(step_size, x0.dtype)

    def step(x, key):
        z = normal(key, x.shape, x.dtype)
        return x + eps * score_fn(x) + jnp.sqrt(2.0 * eps) * z, None

    x, _ = jax.lax.scan(step, x0, jax.random.split(rng, num_steps))
    return x


def mala(log_prob: Callable[[jax.Array], jax.Array], x0: jax.Array, rng: jax.Array, *,
         step_size: float, num_steps: int) -> tuple[jax.Array, jax.Array]:
    """Metropolis-adjusted Langevin from ``x0`` [B, ...] with ``log_prob`` x -> [B]
    (unnormalised). Returns (x_K, acceptance rate over all chains and steps)."""
    eps = jnp.asarray(step_size, x0.dtype)

    def lp_and_score(x):                    # log p(x) [B] and its gradient, in one pass
        lp, vjp = jax.vjp(log_prob, x)
        return lp, vjp(jnp.ones_like(lp))[0]

    def log_q(to, frm, score_frm):          # log N(to; frm + eps s(frm), 2 eps I), up to a constant
        return -sum_event((to - frm - eps * score_frm) ** 2) / (4.0 * eps)

    def step(carry, key):
        x, lp, s, accepted = carry
        k_z, k_u = jax.random.split(key)
        proposal = x + eps * s + jnp.sqrt(2.0 * eps) * jax.random.normal(k_z, x.shape, x.dtype)
        lp_new, s_new = lp_and_score(proposal)
        log_ratio = lp_new + log_q(x, proposal, s_new) - lp - log_q(proposal, x, s)
        accept = jnp.log(jax.random.uniform(k_u, lp.shape, x.dtype)) < log_ratio
        keep = accept.reshape((-1,) + (1,) * (x.ndim - 1))
        x = jnp.where(keep, proposal, x)
        return (x, jnp.where(accept, lp_new, lp), jnp.where(keep, s_new, s),
                accepted + accept.sum()), None

    lp0, s0 = lp_and_score(x0)
    init = (x0, lp0, s0, jnp.zeros((), jnp.int32))
    (x, _, _, accepted), _ = jax.lax.scan(step, init, jax.random.split(rng, num_steps))
    return x, accepted / (num_steps * x0.shape[0])


def annealed_langevin(score_fn: NoiseScore, x0: jax.Array, rng: jax.Array, sigmas: jax.Array,
                      *, steps_per_level: int, step_size: float) -> jax.Array:
    """NCSN's annealed Langevin from ``x0`` over ``sigmas`` (decreasing, [L]): T =
    ``steps_per_level`` moves x + (alpha_i / 2) s(x, sigma_i) + sqrt(alpha_i) z at each level,
    alpha_i = eps sigma_i^2 / sigma_L^2. One scan over all L T steps."""
    sigmas = jnp.asarray(sigmas, x0.dtype)
    alphas = step_size * (sigmas / sigmas[-1]) ** 2
    levels = jnp.repeat(jnp.arange(len(sigmas)), steps_per_level)

    def step(x, inputs):
        i, key = inputs
        alpha = alphas[i]
        z = jax.random.normal(key, x.shape, x.dtype)
        return x + 0.5 * alpha * score_fn(x, sigmas[i]) + jnp.sqrt(alpha) * z, None

    keys = jax.random.split(rng, len(sigmas) * steps_per_level)
    x, _ = jax.lax.scan(step, x0, (levels, keys))
    return x


def geometric_sigmas(sigma_max: float, sigma_min: float, num_levels: int) -> jax.Array:
    """sigma_1 = sigma_max > ... > sigma_L = sigma_min, a geometric sequence (NCSN)."""
    return jnp.exp(jnp.linspace(jnp.log(sigma_max), jnp.log(sigma_min), num_levels))


def replay_sample(buffer: jax.Array, rng: jax.Array, batch_size: int, reinit: float,
                  init_fn: Callable[[jax.Array, tuple], jax.Array]) -> tuple[jax.Array, jax.Array]:
    """(x0 [B, ...], rows [B]): random rows of ``buffer`` [N, ...], each replaced with
    probability ``reinit`` by a fresh draw ``init_fn(key, shape)``."""
    k_rows, k_new, k_mask = jax.random.split(rng, 3)
    rows = jax.random.randint(k_rows, (batch_size,), 0, buffer.shape[0])
    fresh = init_fn(k_new, (batch_size,) + buffer.shape[1:]).astype(buffer.dtype)
    renew = jax.random.uniform(k_mask, (batch_size,)) < reinit
    renew = renew.reshape((-1,) + (1,) * (buffer.ndim - 1))
    return jnp.where(renew, fresh, buffer[rows]), rows


def replay_update(buffer: jax.Array, rows: jax.Array, x: jax.Array) -> jax.Array:
    """The buffer with ``rows`` overwritten by the chains' end points ``x``."""
    return buffer.at[rows].set(jax.lax.stop_gradient(x).astype(buffer.dtype))
