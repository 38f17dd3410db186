"""VAE family: ELBO pieces, IWAE bound, decoders, conditioning, pictures."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data as gdata
from genjax.models import build
from genjax.models.vae import VAEConfig
from tests.conftest import tiny_vae_config


def _model(**overrides):
    config = tiny_vae_config().model
    with config.unlocked():
        config.update(overrides)
    return build(config)


@pytest.fixture(scope="module")
def batch():
    it, _ = gdata.load("digits", "train", 16, shuffle=False)
    return next(it)


@pytest.fixture(scope="module")
def vae_and_params(batch):
    model = _model()
    return model, jax.jit(model.init)(jax.random.key(0), batch)


def test_loss_is_rec_plus_beta_kl(batch):
    for beta in (1.0, 4.0):
        model = _model(beta=beta)
        params = jax.jit(model.init)(jax.random.key(0), batch)
        loss, m = jax.jit(model.loss)(params, batch, jax.random.key(1))
        np.testing.assert_allclose(loss, m["rec"] + beta * m["kl"], rtol=1e-5)
        np.testing.assert_allclose(m["nelbo_bpd"], (m["rec"] + m["kl"]) / (64 * math.log(2)),
                                   rtol=1e-5)
        assert m["kl"] > 0 and m["rec"] > 0


def test_log_weights_average_to_the_elbo(vae_and_params, batch):
    """E_q[log w] = E_q[log p(x|z)] - KL(q||p): Monte Carlo log weights against the
    loss's reconstruction term plus its analytic KL."""
    model, params = vae_and_params
    logw = np.asarray(model.log_weights(params, batch, jax.random.key(2), 2000)).mean(1)  # [K]
    loss = jax.jit(model.loss)
    metrics = [loss(params, batch, k)[1] for k in jax.random.split(jax.random.key(3), 200)]
    recs = np.array([m["rec"] for m in metrics])
    elbo = -recs.mean() - float(metrics[0]["kl"])
    stderr = math.sqrt(recs.var() / len(recs) + logw.var() / len(logw))
    assert abs(logw.mean() - elbo) < 5 * stderr


def test_iwae_bound_grows_with_k(vae_and_params, batch):
    model, params = vae_and_params
    bounds = [float(jnp.mean(model.log_prob(params, batch, jax.random.key(4), k)))
              for k in (1, 16, 256)]
    assert bounds[0] < bounds[1] < bounds[2]


def test_bernoulli_decoder_and_sampling_ranges():
    it, info = gdata.load("binarized_digits", "train", 8, shuffle=False)
    batch = next(it)
    model = _model(image_shape=(16, 16, 1), num_levels=2, decoder="bernoulli", channels=(8, 8))
    params = jax.jit(model.init)(jax.random.key(0), batch)
    loss, _ = jax.jit(model.loss)(params, batch, jax.random.key(1))
    assert np.isfinite(loss)
    sample = jax.jit(model.sample, static_argnums=2, static_argnames="pixel_sample")
    for pixel_sample in (False, True):
        x = sample(params, jax.random.key(2), 5, pixel_sample=pixel_sample)
        assert x.shape == (5, 16, 16, 1) and x.dtype == jnp.uint8
        assert set(np.unique(np.asarray(x))) <= {0, 1}


def test_gaussian_and_logistic_samples_cover_levels(vae_and_params):
    model, params = vae_and_params
    x = np.asarray(model.sample(params, jax.random.key(0), 6, pixel_sample=True))
    assert x.shape == (6, 8, 8, 1) and x.dtype == np.uint8
    assert len(np.unique(x)) > 10
    gauss = _model(decoder="gaussian")
    x = np.asarray(gauss.sample(params, jax.random.key(0), 6, pixel_sample=True))
    assert x.dtype == np.uint8 and len(np.unique(x)) > 10


def test_conditional_vae_uses_labels(batch):
    model = _model(num_classes=10)
    params = jax.jit(model.init)(jax.random.key(0), batch)
    z = jnp.zeros((2, 4))
    decode = jax.jit(model.decode_params)
    out0 = decode(params, z, jnp.array([0, 0]))
    out1 = decode(params, z, jnp.array([0, 7]))
    np.testing.assert_array_equal(out0[0], out1[0])
    assert not np.allclose(out0[1], out1[1])
    with pytest.raises(ValueError, match="conditional"):
        model.encode(params, jnp.zeros((2, 8, 8, 1), jnp.uint8), None)   # encoding needs labels
    with pytest.raises(ValueError, match="out of range"):
        model.sample(params, jax.random.key(0), 2, cond=10)
    x = jax.jit(model.sample, static_argnums=2)(params, jax.random.key(0), 3, jnp.array([1, 2, 3]))
    assert x.shape == (3, 8, 8, 1)


@pytest.mark.slow
def test_interpolation_endpoints_are_reconstructions(vae_and_params, batch):
    model, params = vae_and_params
    path = model.interpolate(params, batch["image"][0], batch["image"][1], 5)
    rec = model.reconstruct(params, {"image": batch["image"][:2]})
    assert path.shape == (5, 8, 8, 1)
    np.testing.assert_array_equal(path[0], rec[0])
    np.testing.assert_array_equal(path[-1], rec[1])
    trav = model.traverse(params, batch["image"][0], 0, jnp.linspace(-2, 2, 4))
    assert trav.shape == (4, 8, 8, 1)


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="binarized"):
        VAEConfig(decoder="bernoulli", num_levels=256)
    with pytest.raises(ValueError, match="divisible"):
        VAEConfig(image_shape=(8, 8, 1), channels=(8, 8, 8, 8))
    with pytest.raises(ValueError, match="Unknown key"):
        _model(latent_dims=3)


def test_decode_returns_the_expected_level_not_the_location():
    """A narrow logistic at level k decodes to k; a wide one centred far below the
    range decodes to its mean level, which is well above 0 (its location clips to 0)."""
    model = _model()                                       # 17 levels
    k = 11
    narrow = jnp.stack([jnp.full((1, 8, 8, 1), 2 * k / 16 - 1.0),
                        jnp.full((1, 8, 8, 1), -8.0)], -1)
    wide = jnp.stack([jnp.full((1, 8, 8, 1), -3.0), jnp.full((1, 8, 8, 1), 1.5)], -1)
    levels = np.arange(17)
    for out, expected in ((narrow, k), (wide, None)):
        model.decode_params = lambda params, z, cond=None, out=out: out
        x = np.asarray(model.decode(None, jnp.zeros((1, 4))))
        if expected is None:
            from genjax.core import likelihoods as lk
            p = np.exp(lk.discretized_logistic_log_prob(
                lk.to_symmetric(levels, 17), -3.0, 1.5, 17))
            expected = int(np.round((p * levels).sum()))
            assert expected >= 3
        assert np.all(x == expected)
