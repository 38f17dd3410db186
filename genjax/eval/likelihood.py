"""Likelihood evaluation: bits/dim of a model on a split, and the independent-pixel baseline.

bits/dim = E_x[-log p(x)] / (D ln 2) over the D = H*W*C sub-pixels of the
discrete data. For a family whose ``log_prob`` is a lower bound (VAE: IWAE),
the bits/dim are an upper bound on the true value and are labelled so.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from genjax.core.likelihoods import bits_per_dim
from genjax.models.protocol import check_batch


def nll_on_split(model, params, batches, rng, *, max_examples: int = 0, **log_prob_kwargs):
    """Per-example -log p(x) in nats over an iterator of batches: float64 [N]."""
    fn = jax.jit(lambda p, b, k: (model.log_prob(p, b, k, **log_prob_kwargs), {}))
    return _over_split(fn, model, params, batches, rng, max_examples)[0]


def nll_and_stats_on_split(model, params, batches, rng, *, max_examples: int = 0,
                           **log_prob_kwargs):
    """(-log p(x) float64 [N], {name: float64 [N]}) through ``model.log_prob_stats``
    (``capabilities.log_prob_stats``): the NLL of :func:`nll_on_split` with the
    per-example statistics of its computation (the ODE solver's ``nfe``)."""
    fn = jax.jit(lambda p, b, k: model.log_prob_stats(p, b, k, **log_prob_kwargs))
    return _over_split(fn, model, params, batches, rng, max_examples)


def _over_split(fn, model, params, batches, rng, max_examples):
    """fn(params, batch, key) -> (log p [b], {name: [b]}) over the batches, batch i with
    key fold_in(rng, i), up to ``max_examples`` (0: all): (-log p [N], {name: [N]})."""
    nll, stats, seen = [], [], 0
    for i, batch in enumerate(batches):
        if max_examples and seen >= max_examples:
            break
        if max_examples:
            batch = {k: v[: max_examples - seen] for k, v in batch.items()}
        check_batch(model, batch)        # on the host: inside jit it cannot be checked
        log_p, extra = fn(params, batch, jax.random.fold_in(rng, i))
        nll.append(-np.asarray(log_p, np.float64))
        stats.append({k: np.asarray(v, np.float64) for k, v in extra.items()})
        seen += len(nll[-1])
    return np.concatenate(nll), {k: np.concatenate([s[k] for s in stats]) for k in stats[0]}


def independent_pixel_bpd(train_images: np.ndarray, test_images: np.ndarray,
                          num_levels: int = 256) -> float:
    """Bits/dim of the best model with independent sub-pixels: one categorical
    per (h, w, c), p_hwc(k) = (count_hwc(k) + 1) / (N + L) fitted on ``train_images``
    (add-one smoothing), evaluated on ``test_images``. Images uint8 [N, H, W, C]."""
    train = np.asarray(train_images).reshape(len(train_images), -1).astype(np.int64)
    test = np.asarray(test_images).reshape(len(test_images), -1).astype(np.int64)
    num_dims = train.shape[1]
    counts = np.zeros((num_dims, num_levels))
    np.add.at(counts, (np.broadcast_to(np.arange(num_dims), train.shape), train), 1.0)
    log_p = np.log(counts + 1.0) - np.log(len(train) + num_levels)
    nll = -log_p[np.arange(num_dims), test].sum(axis=1)
    return float(nll.mean() / (num_dims * math.log(2.0)))


__all__ = ["bits_per_dim", "independent_pixel_bpd", "nll_and_stats_on_split", "nll_on_split"]
