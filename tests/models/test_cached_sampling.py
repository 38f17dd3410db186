"""Cached sampling of PixelCNN, Gated PixelCNN and WaveNet (genjax/nn/cached.py): the caches
give the network's outputs, and the cached sampler draws the samples of re-running it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn import cached
from tests.models.test_autoregressive import build

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
    """The model and random parameters: shapes from tracing ``init`` (nothing to compile),
    kernels N(0, 1 / fan_in) and biases N(0, 0.3^2) from numpy."""
    model = build(name, shape, levels, **kw)
    batch = {"image": np.zeros((2,) + shape, np.uint8)}
    if model.config.num_classes:
        batch["label"] = np.zeros((2,), np.int32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), batch)
    rng = np.random.RandomState(0)

    def draw(leaf):
        scale = 0.3 if len(leaf.shape) == 1 else 1 / np.sqrt(np.prod(leaf.shape[:-1]))
        return jnp.asarray(scale * rng.standard_normal(leaf.shape), leaf.dtype)

    return model, jax.tree.map(draw, shapes)


def _labels(model, n):
    return model._label(jnp.arange(n) % model.config.num_classes if model.config.num_classes
                        else None, n)


# The default tier checks the RGB colour groups of both conv networks and WaveNet's
# conditioning; the mixture heads run in the slow tier (with all the sample checks).
@pytest.mark.parametrize("case", [c if c in ("pixelcnn_rgb", "gated_rgb_cond", "wavenet_cond")
                                  else pytest.param(c, marks=pytest.mark.slow)
                                  for c in sorted(CASES)])
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
    """``sample`` and ``complete`` trace the cached sampler unless told otherwise: no
    convolution over the canvas in the program (the re-run sampler has one)."""
    model, params = _setup("wavenet", (3, 3, 1), 2)
    key, image = jax.random.key(5), jnp.zeros((4, 3, 3, 1), jnp.uint8)

    def program(fn, *args):
        return jax.jit(fn).lower(params, key, *args).as_text()

    default = program(lambda p, k: model.sample(p, k, 4))
    assert default == program(lambda p, k: model.sample(p, k, 4, use_cache=True))
    assert "convolution" not in default
    assert "convolution" in program(lambda p, k: model.sample(p, k, 4, use_cache=False))
    assert "convolution" not in program(lambda p, k, x: model.complete(p, k, x, 1), image)
