"""Autoregressive models: exact normalization, samplers, completion, conditioning, loss."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import models
from genjax.configs import make_config
from tests.conftest import perturbed

TINY = {
    "fvsbn": {},
    "nade": dict(hidden_dim=8),
    "made": dict(hidden_dims=(24, 24), ordering="random", num_orderings=2,
                 hidden_degrees="equal"),
    "pixelcnn": dict(features=24, num_layers=1, first_kernel=3),
    "gated_pixelcnn": dict(features=24, num_layers=1, first_kernel=3),
    "wavenet": dict(features=8, skip_features=8, num_layers=2),
    "pixel_transformer": dict(dim=16, num_layers=1, num_heads=2),
    "row_lstm": dict(features=12, num_layers=1, first_kernel=3),
    "diagonal_bilstm": dict(features=12, num_layers=1, first_kernel=3),
}


def build(name, shape=(2, 2, 1), levels=2, **kw):
    config = make_config(name, "binarized_digits",
                         model_kwargs=dict(TINY[name], image_shape=shape, num_levels=levels, **kw))
    return models.build(config.model)


def _perturb(params, key, scale=0.3):
    """Random weights everywhere (FVSBN starts at zero, biases start at zero)."""
    return perturbed(params, key, scale)


def _init(model, shape, key=0, label=None):
    batch = {"image": np.zeros((2,) + shape, np.uint8)}
    if label is not None:
        batch["label"] = np.zeros((2,), np.int32)
    return _perturb(jax.jit(model.init)(jax.random.key(key), batch), jax.random.key(key + 1))


def _all_images(shape, levels):
    d = int(np.prod(shape))
    return np.array(list(itertools.product(range(levels), repeat=d)), np.uint8).reshape(
        (-1,) + shape)


@pytest.mark.parametrize("name", sorted(TINY))
def test_probabilities_sum_to_one_and_the_sampler_draws_them_on_2x2_binary(name):
    """exp(log_prob) over all 16 images sums to 1, and the frequencies of 4000 samples
    match it (chi-square); the same counts against the uniform law are rejected, so the
    test can tell a wrong sampler."""
    from scipy import stats

    model = build(name)
    params = _init(model, (2, 2, 1))
    images = _all_images((2, 2, 1), 2)
    logp = jax.jit(model.log_prob)(params, {"image": images})
    np.testing.assert_allclose(jnp.exp(jax.nn.logsumexp(logp)), 1.0, atol=1e-5)
    n = 4000
    samples = np.asarray(jax.jit(model.sample, static_argnums=2)(params, jax.random.key(7), n))
    index = samples.reshape(n, -1).astype(np.int64) @ (2 ** np.arange(3, -1, -1))
    counts = np.bincount(index, minlength=16)
    p = np.exp(np.asarray(logp, np.float64))
    assert stats.chisquare(counts, n * p / p.sum()).pvalue > 1e-3
    assert stats.chisquare(counts, np.full(16, n / 16)).pvalue < 1e-6


@pytest.mark.parametrize("name", ["fvsbn", "nade", "made",
                                  pytest.param("pixelcnn", marks=pytest.mark.slow)])
def test_probabilities_sum_to_one_on_3x3_binary(name):
    model = build(name, (3, 3, 1))
    params = _init(model, (3, 3, 1))
    logp = jax.jit(model.log_prob)(params, {"image": _all_images((3, 3, 1), 2)})
    np.testing.assert_allclose(jnp.exp(jax.nn.logsumexp(logp)), 1.0, atol=1e-5)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_nade_matches_its_conditionals_written_one_at_a_time(activation):
    """f_d = b_d + V_d g(c + sum_{j<d} W_j x_j), each d computed on its own in numpy."""
    from genjax.nn.masked import NADENetwork

    d, h = 6, 5
    net = NADENetwork(h, 1, activation)
    x = np.random.default_rng(0).normal(size=(3, d)).astype(np.float32)
    params = net.init(jax.random.key(0), x)
    params = _perturb(params, jax.random.key(1))
    out = np.asarray(net.apply(params, x))[..., 0]
    p = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
    g = (lambda a: np.maximum(a, 0)) if activation == "relu" else (lambda a: 1 / (1 + np.exp(-a)))
    for k in range(d):
        a = p["c"] + x[:, :k] @ p["W"][:k]
        np.testing.assert_allclose(out[:, k], g(a) @ p["V"][k, :, 0] + p["b"][k, 0],
                                   rtol=1e-4, atol=1e-5)


def test_mixture_output_sums_to_one_over_rgb_levels():
    model = build("gated_pixelcnn", (1, 2, 3), 3, output="mixture", num_mixtures=2)
    params = _init(model, (1, 2, 3))
    logp = jax.jit(model.log_prob)(params, {"image": _all_images((1, 2, 3), 3)})
    np.testing.assert_allclose(jnp.exp(jax.nn.logsumexp(logp)), 1.0, atol=1e-5)


def test_made_ensemble_is_the_mixture_of_its_orderings():
    model = build("made", (2, 2, 1), num_orderings=3)
    params = _init(model, (2, 2, 1))
    images = _all_images((2, 2, 1), 2)
    inputs, units = model._inputs(jnp.asarray(images, jnp.int32)), model._units(images)
    per = [model.unit_log_probs(model._apply(params, inputs, None, m), units).sum(-1)
           for m in range(3)]
    expect = np.log(np.mean(np.exp(np.stack(per)), axis=0))
    np.testing.assert_allclose(model.log_prob(params, {"image": images}), expect, atol=1e-5)
    assert not np.allclose(per[0], per[1])      # the orderings differ


@pytest.mark.parametrize("name", [n if n != "diagonal_bilstm"
                                  else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(TINY)])
def test_samples_are_valid_and_completion_keeps_known_rows(name):
    # ``sample`` is ``complete`` with no known rows (one loop, one compile here).
    shape, levels = (3, 2, 1), 3
    model = build(name, shape, levels)
    params = _init(model, shape)
    complete = jax.jit(model.complete)
    image = jax.random.randint(jax.random.key(4), (4,) + shape, 0, levels).astype(jnp.uint8)
    for rows in (0, 2):
        done = complete(params, jax.random.key(5), image, rows)
        np.testing.assert_array_equal(done[:, :rows], image[:, :rows])
        assert done.dtype == jnp.uint8 and done.shape == image.shape
        assert int(done.max()) < levels
    assert not np.array_equal(done, image)


@pytest.mark.slow
def test_kv_cache_sampler_equals_recompute():
    shape = (3, 3, 1)
    model = build("pixel_transformer", shape, 4, num_classes=2)
    batch = {"image": np.zeros((2,) + shape, np.uint8), "label": np.zeros((2,), np.int32)}
    params = _perturb(model.init(jax.random.key(0), batch), jax.random.key(1))
    sample = jax.jit(model.sample, static_argnums=(2,), static_argnames="use_cache")
    a = sample(params, jax.random.key(2), 8, jnp.array([0, 1] * 4), use_cache=True)
    b = sample(params, jax.random.key(2), 8, jnp.array([0, 1] * 4), use_cache=False)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(np.asarray(a).reshape(8, -1), axis=0)) > 1


@pytest.mark.parametrize("name", ["made", "pixelcnn", "pixel_transformer",
                                  pytest.param("gated_pixelcnn", marks=pytest.mark.slow),
                                  pytest.param("wavenet", marks=pytest.mark.slow),
                                  pytest.param("row_lstm", marks=pytest.mark.slow)])
def test_dropout_acts_in_the_loss_only(name):
    """The loss with dropout changes with its key and differs from the exact one; log_prob
    (and so the samplers' network) is the dropout-free model's, bit for bit."""
    shape = (2, 2, 1)
    kw = dict(num_classes=2) if name in ("gated_pixelcnn", "pixel_transformer") else {}
    model = build(name, shape, 4, dropout=0.5, **kw)
    plain = build(name, shape, 4, **kw)
    batch = {"image": np.array([[[[1], [2]], [[3], [0]]]] * 2, np.uint8),
             "label": np.array([0, 1], np.int32)}
    params = _perturb(jax.jit(model.init)(jax.random.key(0), batch), jax.random.key(1))

    @jax.jit
    def run(params):
        keys = jax.random.split(jax.random.key(2))
        losses = jax.vmap(lambda k: model.loss(params, batch, k)[0])(keys)
        return (losses, plain.loss(params, batch, keys[0])[0], model.log_prob(params, batch),
                plain.log_prob(params, batch))

    losses, exact, log_prob, plain_log_prob = run(params)
    assert losses[0] != losses[1] and exact not in losses
    np.testing.assert_array_equal(log_prob, plain_log_prob)


def test_conditioning_changes_the_distribution():
    model = build("gated_pixelcnn", (2, 2, 1), 2, num_classes=3)
    params = _init(model, (2, 2, 1), label=0)
    images = _all_images((2, 2, 1), 2)
    log_prob = jax.jit(model.log_prob)
    logps = [log_prob(params, {"image": images, "label": np.full(16, y, np.int32)})
             for y in range(3)]
    for lp in logps:
        np.testing.assert_allclose(jnp.exp(jax.nn.logsumexp(lp)), 1.0, atol=1e-5)
    assert not np.allclose(logps[0], logps[1])
    with pytest.raises(ValueError, match="label"):
        model.log_prob(params, {"image": images})


def test_config_errors():
    with pytest.raises(ValueError, match="not class-conditional"):
        build("pixelcnn", num_classes=10)
    with pytest.raises(ValueError, match="mixture"):
        build("nade", output="mixture")
    with pytest.raises(ValueError, match="output"):
        build("pixelcnn", output="gaussian")
    with pytest.raises(ValueError, match="activation"):
        build("nade", activation="tanh")
    with pytest.raises(ValueError, match="dropout is available"):
        build("nade", dropout=0.1)
    with pytest.raises(ValueError, match="dropout must be"):
        build("made", dropout=1.0)


def test_loss_is_nll_per_dim_and_training_lowers_it():
    import optax

    shape = (4, 4, 1)
    model = build("pixelcnn", shape, 2)
    rng = np.random.RandomState(0)
    images = (rng.rand(32, *shape) < np.linspace(0.1, 0.9, 16).reshape(shape)).astype(np.uint8)
    batch = {"image": images}
    params = model.init(jax.random.key(0), batch)
    loss, metrics = model.loss(params, batch, jax.random.key(1))
    nll = -model.log_prob(params, batch)
    np.testing.assert_allclose(metrics["nll"], nll.mean(), rtol=1e-6)
    np.testing.assert_allclose(loss, nll.mean() / 16, rtol=1e-6)
    np.testing.assert_allclose(metrics["bpd"], nll.mean() / 16 / np.log(2), rtol=1e-6)
    opt = optax.adam(1e-2)

    @jax.jit
    def step(params, state):
        grads = jax.grad(lambda p: model.loss(p, batch, jax.random.key(1))[0])(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state

    state = opt.init(params)
    for _ in range(30):
        params, state = step(params, state)
    assert model.loss(params, batch, jax.random.key(1))[0] < 0.8 * loss
