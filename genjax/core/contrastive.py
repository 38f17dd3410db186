"""CLIP's symmetric contrastive (InfoNCE) loss, its large-batch limit, and retrieval recall.

Notation of the notes: an image encoder f and a text encoder g, a batch of N pairs
(x_i, c_i) drawn from the data p(x, c), scores s_ij = f(x_i) . g(c_j) / tau. CLIP trains
on the mean of the image->text and text->image cross-entropies (nats),

    L = 1/(2N) sum_i [ -log  exp(s_ii) / sum_k exp(s_ik)       (image i picks its caption)
                       -log  exp(s_ii) / sum_k exp(s_ki) ],    (caption i picks its image)

with f(x), g(c) L2-normalised and 1 / tau = exp(t), t a learned log-temperature clipped
at log 100 (CLIP's cap on the logit scale; its initial value is log(1 / 0.07)).

The large-batch limit. For one row, -s_ii + log sum_k exp(s_ik) = -s_ii + log N +
log (1/N) sum_k exp(s_ik), and the mean over k -> E_{p(c')} exp s(x_i, c') as N grows (the
k = i term is one of N). With a score s(x, c) of the pair,

    L_N - log N  ->  L_inf(s) = 1/2 E_{p(x,c)} [ -s(x,c) + log E_{p(c')} exp s(x,c') ]
                              + 1/2 E_{p(x,c)} [ -s(x,c) + log E_{p(x')} exp s(x',c) ].

For fixed x the first bracket is KL(p(c|x) || q_x) - E_{p(c|x)} log p(c|x)/p(c) with
q_x(c) = p(c) exp s(x,c) / E_{p(c')} exp s(x,c'), minimal iff s = log p(c|x)/p(c) + a(x);
the second likewise iff s = log p(x|c)/p(x) + b(c). Both hold together only for

    s*(x, c) = log p(x, c) - log p(x) - log p(c) + const      (the pointwise mutual information)

as the notes state, and L_inf(s*) = -I(X; C). :func:`population_info_nce` computes L_inf
over a discrete joint table, exactly.

Retrieval: a query's hits are the gallery entries that match it (the same caption: many
images share one); recall@k is the fraction of queries with a hit among their k best scores.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

MAX_LOG_SCALE = math.log(100.0)       # CLIP clips t = log(1 / tau) at log 100
INIT_LOG_SCALE = math.log(1 / 0.07)   # and starts it at tau = 0.07


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """x / max(||x||_2, eps) along ``axis``."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x / jnp.maximum(norm, eps)


def logit_scale(log_scale: jax.Array, max_log_scale: float = MAX_LOG_SCALE) -> jax.Array:
    """exp(min(t, max_log_scale)) = 1 / tau: the clip stops the gradient above the cap, as
    CLIP's clamp does."""
    return jnp.exp(jnp.minimum(log_scale, max_log_scale))


def clip_logits(u: jax.Array, v: jax.Array, log_scale: jax.Array,
                max_log_scale: float = MAX_LOG_SCALE) -> jax.Array:
    """Scores s_ij = exp(t) <u_i / ||u_i||, v_j / ||v_j||>: [N, M] from image embeddings
    u [N, D] and text embeddings v [M, D]."""
    return logit_scale(log_scale, max_log_scale) * (l2_normalize(u) @ l2_normalize(v).T)


def info_nce_rows(scores: jax.Array) -> jax.Array:
    """-log softmax(scores[i])_i per row: [N] from an [N, N] score matrix whose diagonal
    holds the true pairs (the image->text terms; pass ``scores.T`` for text->image)."""
    n = scores.shape[0]
    if scores.shape != (n, n):
        raise ValueError(f"InfoNCE needs a square score matrix, got {scores.shape}")
    return jax.nn.logsumexp(scores, axis=1) - jnp.diagonal(scores)


def symmetric_info_nce(scores: jax.Array) -> jax.Array:
    """CLIP's loss L (nats, module docstring) of an [N, N] score matrix s_ij, the true
    pairs on the diagonal: the mean of the image->text (rows) and text->image (columns)
    cross-entropies. Constant scores give log N."""
    return 0.5 * (jnp.mean(info_nce_rows(scores)) + jnp.mean(info_nce_rows(scores.T)))


def clip_loss(u: jax.Array, v: jax.Array, log_scale: jax.Array,
              max_log_scale: float = MAX_LOG_SCALE) -> jax.Array:
    """:func:`symmetric_info_nce` of :func:`clip_logits` for N pairs (u_i [D], v_i [D])."""
    return symmetric_info_nce(clip_logits(u, v, log_scale, max_log_scale))


def population_info_nce(scores: jax.Array, joint: jax.Array) -> jax.Array:
    """The large-batch limit L_inf(s) = lim_N (L_N - log N) (module docstring) for a
    discrete joint ``joint`` [X, C] = p(x, c) (summing to one) and a table of scores
    ``scores`` [X, C] = s(x, c), computed exactly. Minimal, at -I(X; C), at the pointwise
    mutual information plus any constant."""
    px, pc = joint.sum(axis=1), joint.sum(axis=0)
    log_px, log_pc = jnp.log(px), jnp.log(pc)
    # log E_{p(c')} exp s(x, c')  [X]  and  log E_{p(x')} exp s(x', c)  [C]
    per_image = jax.nn.logsumexp(scores + log_pc[None, :], axis=1)
    per_text = jax.nn.logsumexp(scores + log_px[:, None], axis=0)
    mass = jnp.where(joint > 0, joint, 0.0)
    expected_score = jnp.sum(mass * scores)
    return 0.5 * ((-expected_score + jnp.sum(px * per_image))
                  + (-expected_score + jnp.sum(pc * per_text)))


def recall_at_k(scores: jax.Array, match: jax.Array, k: int) -> jax.Array:
    """Hits [Q] (bool) of Q queries over a gallery of G: ``scores`` [Q, G], ``match`` [Q, G]
    True where gallery entry j is a right answer to query i; query i is a hit when one of
    its k highest-scoring entries matches (ties broken towards the lower index). The mean
    of the hits is recall@k."""
    k = min(k, scores.shape[1])
    _, top = jax.lax.top_k(scores, k)
    return jnp.any(jnp.take_along_axis(match, top, axis=1), axis=1)
