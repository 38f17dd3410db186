"""The 2-D GAN's options (the loss, WGAN-GP's penalty, PacGAN packing), the mode-coverage
numbers that ``genjax eval`` reports for it on ring8 and grid25, and the W2 / MMD to the test
points that it reports for any model on a point dataset."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import models
from genjax.configs import load_sibling
from genjax.core import gan_losses as gl
from genjax.data import toy2d
from genjax.eval.report import evaluate_run, split_points
from genjax.models.protocol import Capabilities

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(name, arg, **model):
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), name, arg)
    with config.unlocked():
        config.model.update(hidden=8, num_layers=1, **model)
        config.eval.update(num_samples=400, sample_batch_size=200)
    return config


def _batch(n=8):
    return {"point": np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)}


def test_wgan_gp_loss_is_the_critic_loss_plus_lambda_times_the_penalty():
    config = _config("wgan_gp_toy2d", "ring8")
    model = models.build(config.model)
    assert (model.config.loss, model.config.gradient_penalty, model.config.n_critic) == (
        "wasserstein", 10.0, 5)
    batch = _batch()
    params = model.init(jax.random.key(0), batch)
    rng = jax.random.key(1)
    loss, metrics = model.discriminator_loss(params, batch, rng)
    real = batch["point"]
    fake = model.sample(params, rng, len(real))

    def critic(x):
        return model.discriminator.apply(params["discriminator"], x)[:, 0]

    penalty = gl.gradient_penalty(critic, real, fake, jax.random.fold_in(rng, 1))
    expected = gl.wasserstein_critic_loss(critic(real), critic(fake)) + 10.0 * penalty
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(metrics["gradient_penalty"], penalty, rtol=1e-6)
    assert 0 <= metrics["accuracy"] <= 1


def test_packing_shows_the_discriminator_pack_samples_at_once():
    config = _config("gan_toy2d", "ring8", pack=2)
    model = models.build(config.model)
    batch = _batch()
    params = model.init(jax.random.key(0), batch)
    assert params["discriminator"]["params"]["Dense_0"]["kernel"].shape[0] == 4   # 2 x 2-D
    loss, _ = model.discriminator_loss(params, batch, jax.random.key(1))
    real = batch["point"].reshape(4, 4)          # points (0, 1), (2, 3), ... judged together
    fake = model.sample(params, jax.random.key(1), 8).reshape(4, 4)
    logits = [model.discriminator.apply(params["discriminator"], x)[:, 0] for x in (real, fake)]
    np.testing.assert_allclose(loss, gl.minimax_discriminator_loss(*logits), rtol=1e-6)
    fake = model.sample(params, jax.random.key(2), 8).reshape(4, 4)
    logit = model.discriminator.apply(params["discriminator"], fake)[:, 0]
    np.testing.assert_allclose(model.generator_loss(params, batch, jax.random.key(2))[0],
                               gl.nonsaturating_generator_loss(logit), rtol=1e-6)
    with pytest.raises(ValueError, match="not a multiple of model.pack = 2"):
        model.discriminator_loss(params, _batch(7), jax.random.key(1))
    with pytest.raises(ValueError, match="unknown GAN loss 'wgan'"):
        models.build(_config("gan_toy2d", "moons", loss="wgan").model)


def test_maxout_discriminator_and_relu_generator():
    config = _config("gan_toy2d", "grid25", maxout=3, generator_activation="relu")
    model = models.build(config.model)
    batch = _batch()
    params = model.init(jax.random.key(0), batch)
    d = params["discriminator"]["params"]
    assert d["Dense_0"]["kernel"].shape == (2, 8 * 3)       # 8 units x 3 pieces
    assert d["Dense_1"]["kernel"].shape == (8, 1)
    x = batch["point"]
    pieces = (x @ d["Dense_0"]["kernel"] + d["Dense_0"]["bias"]).reshape(8, 8, 3)
    expected = pieces.max(-1) @ d["Dense_1"]["kernel"] + d["Dense_1"]["bias"]
    np.testing.assert_allclose(model.discriminator.apply(params["discriminator"], x), expected,
                               rtol=1e-5, atol=1e-6)
    g = params["generator"]["params"]
    z = np.random.default_rng(1).normal(size=(8, 2)).astype(np.float32)
    h = np.maximum(z @ g["Dense_0"]["kernel"] + g["Dense_0"]["bias"], 0)
    np.testing.assert_allclose(model.generate(params, z),
                               h @ g["Dense_1"]["kernel"] + g["Dense_1"]["bias"],
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="generator_activation must be leaky_relu or relu"):
        models.build(_config("gan_toy2d", "grid25", generator_activation="tanh").model)
    with pytest.raises(ValueError, match="model.maxout must be >= 1"):
        models.build(_config("gan_toy2d", "grid25", maxout=0).model)


class _FixedSampler:
    """A model whose samples are fixed points (no likelihood)."""

    def __init__(self, points):
        self.points = jnp.asarray(points, jnp.float32)
        self.capabilities = Capabilities()

    def sample(self, params, rng, num_samples, cond=None):
        return self.points[jnp.arange(num_samples) % len(self.points)]


@pytest.mark.parametrize("density", ["ring8", "grid25"])
def test_eval_counts_the_modes_of_ring8_and_grid25(density):
    centres, std = toy2d.MODES[density]
    config = _config("gan_toy2d", density)
    collapsed = evaluate_run(config, _FixedSampler(centres[:3]), None)
    assert (collapsed["num_samples"], collapsed["modes_covered"]) == (400, 3)
    assert collapsed["high_quality_fraction"] == 1.0
    np.testing.assert_allclose(collapsed["mode_reverse_kl"], np.log(len(centres) / 3),
                               rtol=1e-2)                # 400 draws over 3 modes: near-equal
    full = evaluate_run(config, _FixedSampler(centres), None)
    assert full["modes_covered"] == len(centres)
    moons = evaluate_run(_config("gan_toy2d", "moons"), _FixedSampler(centres), None)
    assert "modes_covered" not in moons


def test_eval_reports_w2_and_mmd_to_the_test_points():
    """Samples that are the evaluated test points in another order are at W2 0 from them,
    shifted by s at W2 |s| with a larger MMD. The test points are the eval seed's
    subsample of the split's 2000, of the samples' size; all of them when there are fewer."""
    config = _config("gan_toy2d", "moons")
    with config.unlocked():
        config.eval.sample_batch_size = 400               # one call: all the fixed points
    test = split_points(config.data.name, "test", 400, seed=0)
    assert test.shape == (400, 2) and len(np.unique(test, axis=0)) == 400
    assert not np.array_equal(test, split_points(config.data.name, "test", 400, seed=1))
    assert split_points(config.data.name, "test", 5000, seed=0).shape == (2000, 2)
    same = evaluate_run(config, _FixedSampler(test[::-1]), None)
    shifted = evaluate_run(config, _FixedSampler(test[::-1] + [0.3, 0.4]), None)
    assert same["w2_to_test"] == 0.0
    np.testing.assert_allclose(shifted["w2_to_test"], 0.5, rtol=1e-5)
    assert shifted["mmd_to_test"] > same["mmd_to_test"] + 0.01
