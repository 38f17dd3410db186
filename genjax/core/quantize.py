"""Vector quantization (VQ-VAE): nearest-code search, straight-through estimator,
codebook and commitment losses, EMA codebook updates, dead-code restart, usage.

Notation (VQ-VAE, van den Oord et al. 2017): an encoder output z_e(x) in R^D at
each latent position, a codebook {e_k}_{k=1..K} in R^D, the quantized vector
z_q = e_{k*} with k* = argmin_k ||z_e - e_k||^2. The decoder sees
z_q through the straight-through estimator, the codebook is trained either by
the codebook loss ||sg[z_e] - e||^2 or by exponential moving averages of the
vectors assigned to each code (appendix A.1 of the paper; Razavi et al. 2019),
and the encoder is pulled towards its codes by the commitment loss
beta ||z_e - sg[e]||^2.

Every function is batch-agnostic: ``z`` has shape [..., D] (any leading dims,
e.g. [B, h, w, D]), ``codebook`` has shape [K, D]. Per-vector losses are
returned per vector ([...]); the model chooses how to average them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def squared_distances(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """d_k(z) = ||z||^2 - 2 z.e_k + ||e_k||^2: z [..., D], codebook [K, D] -> [..., K].

    Written as a matrix product so no [..., K, D] difference tensor is built.
    """
    z_sq = jnp.sum(z * z, axis=-1, keepdims=True)
    e_sq = jnp.sum(codebook * codebook, axis=-1)
    cross = jnp.einsum("...d,kd->...k", z, codebook)
    return z_sq - 2.0 * cross + e_sq


def vector_quantize(z: jax.Array, codebook: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Nearest code: (z_q, k*) with k* = argmin_k ||z - e_k||^2 and z_q = e_{k*}.

    z: [..., D], codebook: [K, D] -> z_q [..., D], indices int32 [...].
    Ties go to the smallest index. No gradient flows through the argmin; z_q is
    differentiable w.r.t. the codebook (a gather).
    """
    indices = jnp.argmin(squared_distances(z, codebook), axis=-1).astype(jnp.int32)
    return lookup(codebook, indices), indices


def lookup(codebook: jax.Array, indices: jax.Array) -> jax.Array:
    """e_k for every index: codebook [K, D], indices int [...] -> [..., D]."""
    return jnp.take(codebook, indices, axis=0)


def straight_through(z: jax.Array, z_q: jax.Array) -> jax.Array:
    """z + sg[z_q - z]: equals z_q in the forward pass; its Jacobian w.r.t. z is the
    identity (the decoder's gradient at z_q is copied to the encoder output) and no
    gradient reaches z_q."""
    return z + jax.lax.stop_gradient(z_q - z)


def codebook_loss(z: jax.Array, z_q: jax.Array) -> jax.Array:
    """||sg[z] - e||^2 per vector: z, z_q [..., D] -> [...]. Trains the codebook only."""
    return jnp.sum(jnp.square(jax.lax.stop_gradient(z) - z_q), axis=-1)


def commitment_loss(z: jax.Array, z_q: jax.Array, beta: float = 0.25) -> jax.Array:
    """beta ||z - sg[e]||^2 per vector: z, z_q [..., D] -> [...]. Trains the encoder only."""
    return beta * jnp.sum(jnp.square(z - jax.lax.stop_gradient(z_q)), axis=-1)


# ------------------------------------------------------------- statistics
def code_counts(indices: jax.Array, num_codes: int) -> jax.Array:
    """n_k = #{i : k*_i = k}: indices int [...] -> float32 [K]."""
    return jnp.sum(jax.nn.one_hot(indices.reshape(-1), num_codes, dtype=jnp.float32), axis=0)


def code_sums(z: jax.Array, indices: jax.Array, num_codes: int) -> jax.Array:
    """sum_{i : k*_i = k} z_i: z [..., D], indices [...] -> [K, D] (one-hot^T z, a matmul)."""
    one_hot = jax.nn.one_hot(indices.reshape(-1), num_codes, dtype=z.dtype)
    return one_hot.T @ z.reshape(-1, z.shape[-1])


def ema_codebook_update(cluster_size: jax.Array, embed_sum: jax.Array, counts: jax.Array,
                        sums: jax.Array, decay: float = 0.99, epsilon: float = 1e-5):
    """One EMA step of the codebook (van den Oord et al. 2017, appendix A.1), with
    Laplace smoothing of the counts (Razavi et al. 2019):

        N_k <- gamma N_k + (1 - gamma) n_k
        m_k <- gamma m_k + (1 - gamma) sum_{i : k*_i = k} z_i
        N~_k = (N_k + eps) / (n + K eps) * n,     n = sum_k N_k
        e_k  = m_k / N~_k

    cluster_size N [K], embed_sum m [K, D]: the running statistics; counts n_k [K] and
    sums [K, D]: this batch's (:func:`code_counts`, :func:`code_sums`).
    Returns (N, m, codebook e [K, D]). The smoothing keeps e_k finite for codes whose
    count has decayed to zero; it leaves sum_k N~_k = n.
    """
    cluster_size = decay * cluster_size + (1.0 - decay) * counts
    embed_sum = decay * embed_sum + (1.0 - decay) * sums
    total = jnp.sum(cluster_size)
    num_codes = cluster_size.shape[0]
    smoothed = (cluster_size + epsilon) / (total + num_codes * epsilon) * total
    return cluster_size, embed_sum, embed_sum / smoothed[:, None]


# ------------------------------------------------------------- dead codes
def one_hot_picks(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """For each of the ``shape[-1]`` = K columns, a one-hot over the leading positions:
    float32 ``shape`` = [..., K], column k is 1 at one uniformly drawn position of
    ``shape[:-1]`` and 0 elsewhere (positions drawn independently per k, with
    replacement). A sampler for :func:`genjax.core.random.batch_draw` (batch on axis 0),
    so a pick over a batch split across devices is the same as on one device."""
    *lead, num = shape
    size = 1
    for n in lead:
        size *= n
    positions = jax.random.randint(key, (num,), 0, size)
    return jax.nn.one_hot(positions, size, dtype=jnp.float32).T.reshape(shape)


def pick_rows(picks: jax.Array, z: jax.Array) -> jax.Array:
    """The picked encoder outputs: picks [..., K] (:func:`one_hot_picks`), z [..., D] -> [K, D]."""
    return picks.reshape(-1, picks.shape[-1]).T @ z.reshape(-1, z.shape[-1])


def random_rows(key: jax.Array, z: jax.Array, num: int) -> jax.Array:
    """``num`` vectors drawn uniformly (with replacement) from z [..., D] -> [num, D]."""
    return pick_rows(one_hot_picks(key, z.shape[:-1] + (num,)), z)


def update_unused_steps(steps_unused: jax.Array, counts: jax.Array) -> jax.Array:
    """Steps since each code was last chosen: 0 where n_k > 0, else +1. int32 [K]."""
    return jnp.where(counts > 0, 0, steps_unused + 1).astype(steps_unused.dtype)


def restart_dead_codes(codebook: jax.Array, dead: jax.Array, candidates: jax.Array):
    """Dead-code restart: e_k <- c_k where ``dead`` [K] (bool), else e_k unchanged.

    ``candidates`` [K, D] are current encoder outputs (:func:`random_rows`), so a
    code that no input chose for a window of steps is re-seeded where the data is.
    """
    return jnp.where(dead[:, None], candidates, codebook)


# ------------------------------------------------------------------ usage
def codebook_perplexity(counts: jax.Array) -> jax.Array:
    """exp(H(p)) with p_k = n_k / sum_j n_j and 0 log 0 = 0: K for uniform use, 1 for one
    code. counts [K] (any non-negative weights) -> scalar."""
    p = counts / jnp.maximum(jnp.sum(counts), 1e-12)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.exp(entropy)


def codebook_usage(counts: jax.Array) -> jax.Array:
    """Fraction of codes used at least once: mean_k [n_k > 0]. counts [K] -> scalar."""
    return jnp.mean((counts > 0).astype(jnp.float32))
