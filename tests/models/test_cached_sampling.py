"""Cached sampling of PixelCNN, Gated PixelCNN and WaveNet (genjax/nn/cached.py): the caches
give the network's outputs, and the cached sampler draws the samples of re-running it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn import cached
from tests.models.test_autoregressive import _perturb, build

# (model, image shape, levels, extra config): binary, 4-level sub-pixels with RGB colour
# groups, the per-pixel mixture, class conditioning.
CASES = {
    "pixelcnn_rgb": ("pixelcnn", (3, 3, 3), 4, {}),
    "pixelcnn_mixture": ("pixelcnn", (2, 3, 3), 4, dict(output="mixture", num_mixtures=2)),
    "gated_rgb_cond": ("gated_pixelcnn", (3, 3, 3), 4, dict(num_classes=2)),
    "gated_mixture": ("gated_pixelcnn", (2, 3, 3), 4, dict(output="mixture", num_mixtures=2)),
    "wavenet_cond": ("wavenet", (3, 3, 1), 4, dict(num_classes=2)),
}


def _setup(name, shape, levels, **kw):
    model = build(name, shape, levels, **kw)
    batch = {"image": np.zeros((2,) + shape, np.uint8)}
    if model.config.num_classes:
        batch["label"] = np.zeros((2,), np.int32)
    params = _perturb(jax.jit(model.init)(jax.random.key(0), batch), jax.random.key(1))
    return model, params


def _labels(model, n):
    return model._label(jnp.arange(n) % model.config.num_classes if model.config.num_classes
                        else None, n)


@pytest.mark.parametrize("case", sorted(CASES))
def test_cached_outputs_equal_the_network(case):
    """Teacher-forced outputs of every unit from the caches == one pass of the network
    on random images (to float rounding), for every head and colour layout."""
    name, shape, levels, kw = CASES[case]
    model, params = _setup(name, shape, levels, **kw)
    n = 3
    image = jax.random.randint(jax.random.key(2), (n,) + shape, 0, levels)
    label = _labels(model, n)

    @jax.jit
    def both(params, image):
        cond = model._cond(label) or (None,)
        steps = cached.teacher_forced(model._steps(), params["net"], model._units(image),
                                      *cond, encode=model._inputs)
        return steps, model._apply(params, model._inputs(image), label)

    steps, full = both(params, image)
    assert steps.shape == (n, model.num_units, model.num_params)
    np.testing.assert_allclose(steps, full, atol=1e-5, rtol=1e-5)


def _complete(model, use_cache):
    """``complete`` with the sampler chosen (``num_known_rows`` = 0: ``sample``)."""
    h, w, c = model.config.image_shape

    @jax.jit
    def run(params, rng, image, num_known_rows, label):
        row_of_unit = jnp.arange(model.num_units) * model.unit_size // (w * c)
        known = row_of_unit < num_known_rows
        units = model._units(image) * known[None, :, None]
        units = model._sample_loop(params, rng, units, known, label, use_cache=use_cache)
        return model._image(units)

    return run


def _check_same_samples(name, shape, levels, **kw):
    model, params = _setup(name, shape, levels, **kw)
    n = 6
    image = jax.random.randint(jax.random.key(3), (n,) + shape, 0, levels)
    label = _labels(model, n)
    fast, slow = _complete(model, True), _complete(model, False)
    for rows in (0, 2):
        a = fast(params, jax.random.key(4), image, rows, label)
        b = slow(params, jax.random.key(4), image, rows, label)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a[:, :rows], image[:, :rows])
        assert len(np.unique(np.asarray(a).reshape(n, -1), axis=0)) > 1


@pytest.mark.parametrize("name", ["pixelcnn", "gated_pixelcnn", "wavenet"])
def test_cached_sampler_equals_rerun_on_binary_data(name):
    """Same keys, same samples as re-running the network, for sampling and completion."""
    _check_same_samples(name, (4, 4, 1), 2)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_cached_sampler_equals_rerun(case):
    name, shape, levels, kw = CASES[case]
    _check_same_samples(name, shape, levels, **kw)


def test_model_sample_uses_the_cache_by_default():
    model, params = _setup("wavenet", (3, 3, 1), 2)
    sample = jax.jit(model.sample, static_argnums=2, static_argnames="use_cache")
    a = sample(params, jax.random.key(5), 4)
    b = sample(params, jax.random.key(5), 4, use_cache=False)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == jnp.uint8 and a.shape == (4, 3, 3, 1)
    lowered = jax.jit(lambda p, k: model.sample(p, k, 4)).lower(params, jax.random.key(5))
    assert "convolution" not in lowered.as_text()     # the canvas is never re-run
