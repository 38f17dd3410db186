"""Classifier guidance: the noise-conditional classifier sees the noise only through the
log-SNR (so a VP-trained classifier serves the VE process at the same log-SNR), its guidance
gradient is per example, and a score model guided by the exact posterior p_t(y | x) of a
two-component mixture samples the chosen component (Bayes' rule for scores)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import models
from genjax.configs import make_config
from genjax.models.continuous import TIME_SCALE
from tests.models.test_score import point_model

TINY = dict(image_shape=(8, 8, 1), num_levels=256, num_classes=3, base_channels=8,
            channel_mults=(1, 2))


def tiny_classifier(**kwargs):
    return models.build(make_config("noise_classifier", "digits16",
                                    model_kwargs={**TINY, **kwargs}).model)


@pytest.fixture(scope="module")
def classifier():
    model = tiny_classifier()
    batch = {"image": jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)),
                                  jnp.uint8),
             "label": jnp.array([0, 1, 2, 0])}
    params = jax.jit(model.init)(jax.random.key(0), batch)
    return model, params, batch


def test_noise_enters_only_through_the_log_snr(classifier):
    """VE at sigma and VP with a = 1 / sqrt(1 + sigma^2), std = sigma a have the same log-SNR
    and the same unit-variance input c_in x, so the same class probabilities."""
    model, params, batch = classifier
    x0 = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1), minval=-1, maxval=1)
    z = jax.random.normal(jax.random.key(2), x0.shape)
    sigma = jnp.array([0.1, 0.7, 2.0, 9.0])[:, None, None, None]
    a = 1.0 / jnp.sqrt(1.0 + sigma ** 2)
    log_probs = jax.jit(model.log_probs)
    ve = log_probs(params, x0 + sigma * z, jnp.ones_like(sigma), sigma)
    vp = log_probs(params, a * x0 + sigma * a * z, a, sigma * a)
    np.testing.assert_allclose(ve, vp, atol=2e-5)
    np.testing.assert_allclose(jnp.exp(ve).sum(1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_guidance_gradient_is_per_example(classifier):
    model, params, _ = classifier
    x = jax.random.normal(jax.random.key(3), (3, 8, 8, 1))
    a, std = jnp.full((3, 1, 1, 1), 0.8), jnp.full((3, 1, 1, 1), 0.6)
    y = jnp.array([2, 0, 1])
    grads = jax.jit(model.grad_log_prob)(params, x, a, std, y)

    @jax.jit
    @jax.vmap
    def one_at_a_time(xi, yi):
        return jax.grad(lambda v: model.log_probs(params, v[None], a[:1], std[:1])[0, yi])(xi)

    np.testing.assert_allclose(grads, one_at_a_time(x, y), atol=1e-5)
    assert np.all(np.abs(np.asarray(grads)).sum(axis=(1, 2, 3)) > 0)


def test_loss_split_metrics_and_errors(classifier):
    model, params, batch = classifier
    loss, metrics = jax.jit(model.loss)(params, batch, jax.random.key(4))
    assert np.isfinite(loss) and 0.0 <= metrics["accuracy"] <= 1.0
    # an untrained classifier is near chance: the loss is near log 3
    assert abs(float(loss) - np.log(3)) < 0.5
    out = model.split_metrics(params, [batch])
    assert out["num_examples"] == 4 and all(0 <= out[f"accuracy_t{t:g}"] <= 1
                                            for t in (0, 0.25, 0.5, 0.75, 1))
    with pytest.raises(ValueError, match="does not sample"):
        model.sample(params, jax.random.key(0), 4)
    with pytest.raises(ValueError, match="num_classes"):
        tiny_classifier(num_classes=1)
    with pytest.raises(ValueError, match="sde"):
        tiny_classifier(sde="cosine")


MEANS = np.array([[-2.0, 0.0], [2.0, 0.0]])
SCALE = 0.3              # data: 1/2 N(MEANS[0], SCALE^2 I) + 1/2 N(MEANS[1], SCALE^2 I)


def _component_log_probs(sde, x, t):
    """log N(x; a mu_k, (a^2 s^2 + std^2) I) for both components: [B, 2]."""
    a, std = sde.marginal_prob(jnp.ones((x.shape[0], 1)), t)
    var = a ** 2 * SCALE ** 2 + std ** 2
    d2 = jnp.sum((x[:, None, :] - a[:, None] * MEANS[None]) ** 2, axis=-1)
    return -0.5 * d2 / var - jnp.log(2 * jnp.pi * var)


class MixtureScoreNet:
    """The network output whose model score is the exact score of the mixture's p_t."""

    def __init__(self, sde):
        self.sde = sde

    def apply(self, variables, x_in, t_in, y=None, *, train=False, rngs=None):
        t = t_in / TIME_SCALE
        a, std = self.sde.marginal_prob(jnp.ones((x_in.shape[0], 1)), t)
        x = x_in * jnp.sqrt(a ** 2 + std ** 2)
        score = jax.vmap(jax.grad(lambda xi, ti: jax.nn.logsumexp(
            _component_log_probs(self.sde, xi[None], ti[None])[0])))(x, t)
        return -std * score


class ExactPosterior:
    """p_t(y | x) of the mixture, with the classifier's interface."""

    num_classes = 2

    def __init__(self, sde):
        self.sde = sde

    def grad_log_prob(self, params, x, a, std, y):
        # recover t from std (VP: std^2 = 1 - e^{-B(t)}) by the component densities in a, std
        def log_post(x):
            var = a[:, 0] ** 2 * SCALE ** 2 + std[:, 0] ** 2
            d2 = jnp.sum((x[:, None, :] - a[:, :1, None] * MEANS[None]) ** 2, axis=-1)
            logp = -0.5 * d2 / var[:, None]
            return jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logp), y[:, None], axis=1))
        return jax.grad(log_post)(x)


@pytest.mark.parametrize("label", [0, 1])
def test_exact_classifier_guidance_samples_the_chosen_component(label):
    """grad log p_t(x) + grad log p_t(y | x) = grad log p_t(x | y): with gamma = 1 the
    sampler draws component y; with gamma = 0 both components, half each."""
    model = point_model(sampler="em", sample_steps=200)
    model.net = MixtureScoreNet(model.sde)
    model.classifier, model.num_classes = ExactPosterior(model.sde), 2
    params = {"net": {}, "classifier": {}}
    sample = jax.jit(model.sample, static_argnums=2)
    x = np.asarray(sample(params, jax.random.key(5), 2000, label, classifier_scale=1.0))
    side = x[:, 0] > 0
    assert np.mean(side == bool(label)) > 0.99
    np.testing.assert_allclose(x[side == bool(label)].mean(0), MEANS[label], atol=0.05)
    np.testing.assert_allclose(x[side == bool(label)].std(0), SCALE, rtol=0.1)
    x0 = np.asarray(sample(params, jax.random.key(5), 2000, label, classifier_scale=0.0))
    assert abs(np.mean(x0[:, 0] > 0) - 0.5) < 4 * 0.5 / np.sqrt(2000)


def test_score_model_rejects_a_missing_classifier_run(tmp_path):
    with pytest.raises(Exception, match="classifier_workdir"):
        models.build(make_config("score_sde", "digits16", model_kwargs=dict(
            classifier_workdir=str(tmp_path))).model)


@pytest.mark.slow
def test_a_trained_classifier_guides_a_score_model_through_the_cli(tmp_path):
    """Tiny runs through the trainer: the classifier (eval: accuracy at each t), then a score
    model built on its workdir (the classifier frozen in params, class-conditional sampling
    with a traced scale), sampled by ``genjax sample --cond --classifier_scale``."""
    import os
    import subprocess
    import sys

    from genjax.configs import load_sibling
    from genjax.eval.report import evaluate_run
    from genjax.models.protocol import FROZEN, update_rule
    from genjax.train.trainer import train_and_evaluate
    from tests.models.test_score import ROOT

    def tiny(name, **model):
        config = load_sibling(os.path.join(ROOT, "configs", "x.py"), name)
        with config.unlocked():
            config.model.update(dict(base_channels=8, channel_mults=(1, 2)), **model)
            config.training.update(batch_size=8, num_steps=2, log_every=1, checkpoint_every=2,
                                   num_sample_images=0, progress=False)
            config.eval.update(num_examples=8, num_samples=0)
        return config

    config = tiny("noise_classifier_digits")
    classifier_dir = str(tmp_path / "classifier")
    state = train_and_evaluate(config, classifier_dir)
    model = models.build(config.model)
    results = evaluate_run(config, model, state.ema_params)
    assert results["num_examples"] > 0 and 0 <= results["accuracy_t0"] <= 1

    score_config = tiny("score_sde_digits", classifier_workdir=classifier_dir, sample_steps=3,
                        num_heads=2)
    score_dir = str(tmp_path / "score")
    score_state = train_and_evaluate(score_config, score_dir)
    score = models.build(score_config.model)
    assert score.capabilities.num_classes == 10
    assert "classifier_scale" in score.capabilities.sample_options
    assert update_rule(score).groups[FROZEN] == ("classifier",)
    np.testing.assert_array_equal(jax.tree.leaves(score_state.params["classifier"])[0],
                                  jax.tree.leaves(state.ema_params["net"])[0])
    out = tmp_path / "threes.png"
    proc = subprocess.run(
        [sys.executable, "-m", "genjax.cli", "sample", "--workdir", score_dir, "--num", "4",
         "--cond", "3", "--classifier_scale", "2", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
