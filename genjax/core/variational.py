"""Variational bounds on log p(x) for latent variable models.

For a model p_theta(x, z) = p(z) p_theta(x|z) and an encoder q_phi(z|x), with
importance weights  log w_k = log p_theta(x|z_k) + log p(z_k) - log q_phi(z_k|x),
z_k ~ q_phi(z|x):

* ELBO:  L_1 = E_q[log w] = E_q[log p_theta(x|z)] - KL(q_phi(z|x) || p(z)) <= log p(x)
* IWAE (Burda et al. 2016):  L_K = E[log (1/K) sum_k w_k],  L_1 <= L_K <= log p(x),
  and L_K -> log p(x) as K -> infinity. When q_phi(z|x) = p_theta(z|x) every
  weight equals p(x) and L_K = log p(x) exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def importance_weighted_bound(log_weights: jax.Array, axis: int = 0) -> jax.Array:
    """log (1/K) sum_k exp(log w_k) over ``axis`` (size K), computed stably.

    log_weights: [K, ...] (K on ``axis``) -> [...]. A single Monte Carlo
    estimate of L_K in nats.
    """
    num_samples = log_weights.shape[axis]
    return jax.scipy.special.logsumexp(log_weights, axis=axis) - jnp.log(num_samples)
