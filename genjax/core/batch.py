"""Shape helpers of batched math: every array is [B, ...] with the batch axis first."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sum_event(x: jax.Array) -> jax.Array:
    """Sum over every axis but the batch axis: [B, ...] -> [B]."""
    return x.reshape(x.shape[0], -1).sum(axis=1)


def per_example(v, x: jax.Array) -> jax.Array:
    """A scalar or per-example ``v`` [B] shaped [B, 1, ..., 1] (dtype of x) to broadcast
    against x [B, ...]."""
    v = jnp.asarray(v, x.dtype)
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim)) if v.ndim else v
