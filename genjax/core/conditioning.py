"""Conditioning for every family: class labels, the null condition, condition dropout,
and classifier-free guidance.

The rule, the same for every conditional model (and for ``genjax sample``):

* A class-conditional model with K classes takes ``cond`` = an int or int [N] in
  0..K-1. Without a condition (``cond=None``) it draws the classes in turn,
  ``y_i = i mod K``, so that N samples cover every class equally
  (:func:`class_labels`).
* A text-conditional model takes a prompt or token ids; without one it draws the
  captions of its dataset in turn (the same rule, over captions).
* An unconditional model takes no condition: passing one is an error.
* Out-of-range labels are an error wherever the labels are concrete (the CLI, the
  Python API outside ``jit``); inside ``jit`` they cannot be checked, so callers
  validate before tracing (:func:`check_labels`).

The null condition (label K, or the all-pad caption) is what a model trained with
condition dropout (probability ``p_uncond``, :func:`drop_condition`) sees in place of
the condition; it learns p(x) there, and guidance mixes the two predictions
(:func:`guided`, :func:`guided_logits`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from genjax.core.random import batch_draw


def check_labels(labels, num_classes: int, *, where: str = "cond") -> None:
    """Raise ``ValueError`` unless ``labels`` (concrete) are integers in 0..num_classes-1.

    Traced values pass unchecked (their values are unknown while tracing).
    """
    if labels is None or isinstance(labels, jax.core.Tracer):
        return
    if num_classes <= 0:
        raise ValueError(f"{where}: this model is unconditional and takes no class label")
    values = np.asarray(labels)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{where}: class labels must be integers, got dtype {values.dtype}")
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise ValueError(f"{where}: class label {int(bad.flat[0])} is out of range; this "
                         f"model has classes 0..{num_classes - 1}")


def cycle_labels(n: int, num_classes: int) -> jax.Array:
    """int32 [n]: 0, 1, ..., K-1, 0, 1, ... (every class in turn)."""
    return jnp.arange(n, dtype=jnp.int32) % num_classes


def class_labels(cond, n: int, num_classes: int) -> jax.Array | None:
    """int32 [n] labels of n samples from ``cond`` (None, an int, or int [n]) under the
    rule of the module docstring; None for an unconditional model (which must get
    ``cond=None``)."""
    if num_classes <= 0:
        if cond is not None:
            raise ValueError("cond: this model is unconditional and takes no class label")
        return None
    if cond is None:
        return cycle_labels(n, num_classes)
    check_labels(cond, num_classes)
    return jnp.broadcast_to(jnp.asarray(cond, jnp.int32), (n,))


def labels_of(batch_or_cond, n: int | None, num_classes: int) -> jax.Array | None:
    """int32 labels of a class-conditional model, else None, from either a batch (a dict:
    its ``label``, which a conditional model requires) or the ``cond`` of n samples
    (:func:`class_labels`)."""
    if isinstance(batch_or_cond, dict):
        if not num_classes:
            return None
        if "label" not in batch_or_cond:
            raise ValueError("this model is class-conditional: batches need 'label'")
        return jnp.asarray(batch_or_cond["label"], jnp.int32)
    return class_labels(batch_or_cond, n, num_classes)


def null_labels(n: int, num_classes: int) -> jax.Array:
    """int32 [n] of the null class K (the "no condition" embedding of guidance)."""
    return jnp.full((n,), num_classes, jnp.int32)


def drop_condition(key: jax.Array, cond: jax.Array, null: ArrayLike, p: float) -> jax.Array:
    """Condition dropout: each example's condition (row of ``cond`` [B, ...]) is replaced
    by ``null`` with probability ``p``, drawn per example through ``batch_draw`` (the same
    draws on one device and under pmap)."""
    n = cond.shape[0]
    drop = batch_draw(jax.random.uniform, key, (n,)) < p
    drop = drop.reshape((n,) + (1,) * (cond.ndim - 1))
    return jnp.where(drop, null, cond)


def guided(cond_out: jax.Array, uncond_out: jax.Array, w: ArrayLike) -> jax.Array:
    """Classifier-free guidance of a noise, score or velocity prediction (Ho & Salimans,
    2022)::

        eps~ = (1 + w) eps_theta(x_t, t, y) - w eps_theta(x_t, t, null)

    ``w = 0`` is the conditional model, ``w = -1`` the unconditional one and ``w > 0``
    extrapolates away from the unconditional prediction (in the other common convention,
    Stable Diffusion's ``guidance_scale``, the scale is ``s = 1 + w``). Linear in the
    prediction, so it mixes eps, scores (s = -eps / sigma) and velocities alike. ``w`` a
    float or ``[B, 1, ..., 1]``; may be traced.
    """
    return (1.0 + w) * cond_out - w * uncond_out


def guided_logits(log_p_cond: jax.Array, log_p_null: jax.Array, w: ArrayLike) -> jax.Array:
    """Guidance of a categorical prediction (a token prior, a pixel model)::

        log p~(k | .) = (1 + w) log p(k | ., c) - w log p(k | ., null) + const

    The same combination as :func:`guided` on log-probabilities, returned unnormalised
    (softmax or ``jax.random.categorical`` of it is the guided distribution, which is
    proportional to p(k | c)^(1+w) / p(k | null)^w)."""
    return (1.0 + w) * log_p_cond - w * log_p_null
