"""Timing helper shared by the benchmark scripts (run as ``python benchmarks/X.py``)."""

from __future__ import annotations

import time

import jax


def best_seconds(fn, *args, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls of ``fn(*args)``, after one untimed call that
    compiles and warms up; waits for the results (``block_until_ready``)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def image_model(model_config, num: int, *, noise: float = 0.0):
    """(model, params, labels of ``num`` samples) for an image model built from
    ``model_config``: parameters from initialisation on a zero batch of ``num`` images,
    plus N(0, noise^2) on every leaf when ``noise`` > 0 (speed does not depend on
    training; the noise makes the draws non-degenerate)."""
    import jax.numpy as jnp

    from genjax.models import build

    model = build(model_config)
    shape = (num,) + tuple(model.config.image_shape)
    batch = {"image": jnp.zeros(shape, jnp.uint8), "label": jnp.zeros((num,), jnp.int32)}
    params = jax.jit(model.init)(jax.random.key(0), batch)
    if noise:
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.key(2), len(leaves))
        params = jax.tree.unflatten(tree, [p + noise * jax.random.normal(k, p.shape, p.dtype)
                                           for p, k in zip(leaves, keys)])
    return model, params, model._label(None, num)
