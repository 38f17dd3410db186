"""The score SDE family through the protocol: its loss is the core DSM loss of its own network,
its samplers with the exact score of Gaussian data plugged in for the network land on that
Gaussian (annealed Langevin on the law of its linear recursion), its likelihood with that
score is the analytic density and, on images, the dequantization bound of the discrete
levels; guidance and the class rule; a tiny run resumes bit for bit."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax import models
from genjax.configs import load_sibling, make_config
from genjax.core import sde as sd
from genjax.core.random import init_key
from genjax.models.continuous import TIME_SCALE
from genjax.train.trainer import train_and_evaluate
from tests.train.test_trainer import assert_resumes_bit_exactly

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MU = np.array([1.0, -0.5])
S = np.array([0.5, 2.0])               # data N(MU, diag S^2)
FAKE = {"net": {}}                     # params of a model whose network is replaced


def point_model(**model):
    kwargs = dict(image_shape=(2,), num_levels=0, data_key="point", mlp_hidden=16,
                  mlp_blocks=1, log_prob_trace="exact")
    kwargs.update(model)
    return models.build(make_config("score_sde", "toy2d/moons", model_kwargs=kwargs).model)


class ExactScoreNet:
    """Stands in for the network: the output the model's parametrisation
    s(x, t) = -net(c_in x, 1000 t, y) / std(t), c_in = 1 / sqrt(a^2 + std^2), needs to be the
    exact score of x_t when x_0 ~ N(mean_y, diag S^2) (mean_y = means[y], or mean)."""

    def __init__(self, sde, mean, scale, means=None):
        self.sde, self.mean, self.scale, self.means = sde, mean, scale, means

    def apply(self, variables, x_in, t_in, y=None, *, train=False, rngs=None):
        t = t_in / TIME_SCALE
        a, std = self.sde.marginal_prob(jnp.ones((x_in.shape[0],) + (1,) * (x_in.ndim - 1)), t)
        x = x_in * jnp.sqrt(a ** 2 + std ** 2)
        mean = self.mean if y is None else jnp.asarray(self.means)[y]
        score = -(x - a * mean) / (a ** 2 * self.scale ** 2 + std ** 2)
        return -std * score


def _check_law(x, mean, var, bias=0.0, sigmas=4.0):
    x = np.asarray(x)
    n = len(x)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean),
                                 sigmas * np.sqrt(var / n) + bias * np.sqrt(var))
    np.testing.assert_array_less(np.abs(x.var(0) - var), sigmas * var * np.sqrt(2 / n) + bias * var)


def test_loss_is_the_core_dsm_loss_of_the_models_own_network():
    """Composition: the model's loss (class-conditional, label dropout on) equals
    mean(core DSM loss) / D with the model's own score network, same keys."""
    model = point_model(num_classes=3, label_dropout=0.5, sde="subvp", train_eps=1e-3)
    rng = np.random.default_rng(0)
    batch = {"point": rng.normal(size=(16, 2)).astype(np.float32),
             "label": rng.integers(0, 3, 16).astype(np.int32)}
    params = jax.jit(model.init)(init_key(jax.random.key(0)), batch)
    params = jax.tree.map(lambda p: p + 0.1 * jnp.ones_like(p), params)   # a non-zero output

    @jax.jit
    def both(params, batch, key):
        _, k_dsm, k_y, _ = jax.random.split(key, 4)
        y = model.train_labels(batch, k_y)
        expected = sd.denoising_score_matching_loss(
            sd.SubVPSDE(), lambda x, t: model.score(params, x, t, y), batch["point"], k_dsm,
            eps=1e-3)
        return model.loss(params, batch, key), jnp.mean(expected) / 2, y

    (loss, metrics), expected, y = both(params, batch, jax.random.key(1))
    assert 0 < int((y == 3).sum()) < 16                      # some labels dropped to null
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert metrics["loss"] == loss and loss > 0


SAMPLERS = [("vp", "em", 500), ("subvp", "pc", 200), ("ve", "ode", 100)]


@pytest.mark.parametrize("sde,sampler,steps", SAMPLERS)
def test_samplers_with_the_exact_score_land_on_the_gaussian(sde, sampler, steps):
    """With the network replaced by the exact score of N(MU, diag S^2), the samples of the
    model's sampler have the law of x_eps = N(a MU, a^2 S^2 + std^2) up to Monte Carlo error
    and a small discretisation bias (as for the core samplers)."""
    model = point_model(sde=sde, sampler=sampler, sample_steps=steps, sigma_max=50.0)
    model.net = ExactScoreNet(model.sde, MU, S)
    x = jax.jit(model.sample, static_argnums=2)(FAKE, jax.random.key(0), 4000)
    a, std = model.sde.marginal_prob(jnp.ones((1, 1)), jnp.full((1,), model.config.eps))
    _check_law(x, a[0, 0] * MU, a[0, 0] ** 2 * S ** 2 + std[0, 0] ** 2, bias=0.03)


def test_annealed_langevin_follows_the_recursion_of_its_law():
    """NCSN (ve, annealed Langevin) with the exact score: for Gaussian data every move
    x <- x + (alpha_i / 2) s(x, sigma_i) + sqrt(alpha_i) z is linear, so the law of the chain
    from x ~ N(0, sigma_max^2) is Gaussian with mean and variance given by the recursion
    e <- (1 - alpha_i / (2 v_i)) e, var <- (1 - alpha_i / (2 v_i))^2 var + alpha_i,
    v_i = S^2 + sigma_i^2 (computed here in float64); and that law is near the data's."""
    levels, per_level, step = 30, 10, 1e-4
    model = point_model(sde="ve", sampler="annealed_langevin", sample_steps=levels,
                        steps_per_level=per_level, langevin_step_size=step, sigma_min=0.01,
                        sigma_max=10.0)
    model.net = ExactScoreNet(model.sde, MU, S)
    x = jax.jit(model.sample, static_argnums=2)(FAKE, jax.random.key(0), 4000)
    sigmas = np.exp(np.linspace(np.log(10.0), np.log(0.01), levels))
    err, var = -MU.copy(), np.full(2, 100.0)
    for sigma in sigmas:
        alpha = step * sigma ** 2 / 0.01 ** 2
        shrink = 1 - alpha / (2 * (S ** 2 + sigma ** 2))
        for _ in range(per_level):
            err, var = shrink * err, shrink ** 2 * var + alpha
    _check_law(x, MU + err, var)
    _check_law(x, MU, S ** 2, bias=0.1)


def test_log_prob_with_the_exact_score_is_the_analytic_density():
    """Points: log_prob through the probability-flow ODE (exact trace) equals
    log N(x; 0, a^2 S^2 + std^2) at t = eps (zero-mean data, so the prior at t = 1 is the
    marginal)."""
    model = point_model(sde="vp", log_prob_steps=100)
    model.net = ExactScoreNet(model.sde, np.zeros(2), S)
    assert model.capabilities.likelihood == "exact"
    x = np.array([[0.3, -1.0], [-0.8, 2.5], [0.0, 0.1]], np.float32)
    a, std = model.sde.marginal_prob(jnp.ones((1, 1)), jnp.full((1,), model.config.eps))
    var = a[0, 0] ** 2 * S ** 2 + std[0, 0] ** 2
    analytic = -0.5 * np.sum(x ** 2 / var + np.log(2 * np.pi * var), axis=1)
    log_prob = jax.jit(model.log_prob)(FAKE, {"point": x}, jax.random.key(0))
    np.testing.assert_allclose(log_prob, analytic, atol=1e-3)


def test_image_log_prob_is_the_dequantization_bound_of_the_discrete_levels():
    """One sub-pixel of L = 4 levels, the continuous density q = N(0.2, 0.6^2) (exact score):
    the mean of log_prob over many draws of u is int_bin log q(x) dx / |bin| + log |bin| with
    |bin| = 2 / L (by quadrature here), and it is below log P(k) = log int_bin q (Jensen)."""
    L, m, s = 4, 0.2, 0.6
    config = make_config("score_sde", "digits16", model_kwargs=dict(
        image_shape=(1, 1, 1), num_levels=L, channel_mults=(1,), attention_resolutions=(),
        sde="vp", log_prob_trace="exact", log_prob_steps=50, eps=1e-4)).model
    model = models.build(config)
    assert model.capabilities.likelihood == "bound"
    assert "dequantization" in model.capabilities.likelihood_kind
    # zero-mean at t = 1 needs MU ~ e^{-B(1)/2} m ~ 0: fine at 1e-3 for m = 0.2
    model.net = ExactScoreNet(model.sde, m, s)
    n = 512
    fn = jax.jit(model.log_prob)
    for k in range(L):
        batch = {"image": np.full((n, 1, 1, 1), k, np.uint8)}
        got = np.asarray(fn(FAKE, batch, jax.random.key(k)))
        lo, hi = 2 * k / L - 1, 2 * (k + 1) / L - 1
        grid = np.linspace(lo, hi, 2001)
        mean_log_q = np.trapezoid(stats.norm.logpdf(grid, m, s), grid) / (hi - lo)
        expected = mean_log_q + math.log(hi - lo)
        np.testing.assert_allclose(got.mean(), expected, atol=4 * got.std() / np.sqrt(n) + 2e-3)
        log_mass = math.log(stats.norm.cdf(hi, m, s) - stats.norm.cdf(lo, m, s))
        assert got.mean() <= log_mass + 2e-3


def test_conditional_sampling_cycles_the_classes_and_guides_away_from_null():
    """Class k has data N(MEANS[k], 0.05^2), the null class N(MEANS[3]): without ``cond`` the
    samples take the classes in turn, and with guidance w the score (1 + w) s_k - w s_null is
    that of N((1 + w) MEANS[k] - w MEANS[3], .) for equal variances; the likelihood of a
    labelled point is the density of its class."""
    means = np.array([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -1.0]], np.float32)
    model = point_model(num_classes=3, sde="vp", sampler="ode", sample_steps=50)
    model.net = ExactScoreNet(model.sde, None, 0.05, means)
    sample = jax.jit(model.sample, static_argnums=2)
    x = np.asarray(sample(FAKE, jax.random.key(0), 6))
    np.testing.assert_allclose(x, means[[0, 1, 2, 0, 1, 2]], atol=0.25)
    x = np.asarray(sample(FAKE, jax.random.key(0), 3, jnp.array([2, 1, 0]), guidance_scale=1.0))
    np.testing.assert_allclose(x, 2 * means[[2, 1, 0]] - means[3], atol=0.25)
    with pytest.raises(ValueError, match="out of range"):
        model.sample(FAKE, jax.random.key(0), 2, jnp.array([0, 3]))
    # log_prob of labelled points is the density of their own class (example by example);
    # means near 0, so that N(0, I) is the marginal at t = 1 of every class to ~1e-3 nats
    means = means / 4
    model.net = ExactScoreNet(model.sde, None, 0.5, means)
    points = np.array([[0.5, 0.1], [0.5, 0.1], [0.0, 0.3]], np.float32)
    labels = np.array([0, 1, 1], np.int32)
    a, std = model.sde.marginal_prob(jnp.ones((1, 1)), jnp.full((1,), model.config.eps))
    var = a[0, 0] ** 2 * 0.5 ** 2 + std[0, 0] ** 2
    analytic = stats.norm.logpdf(points, a[0, 0] * means[labels], np.sqrt(var)).sum(1)
    log_prob = jax.jit(model.log_prob, static_argnames="num_steps")(
        FAKE, {"point": points, "label": labels}, jax.random.key(1), num_steps=50)
    np.testing.assert_allclose(log_prob, analytic, atol=3e-3)


def test_configs_take_the_sde_and_bad_fields_fail():
    for sde in ("vp", "subvp", "ve", "ncsn"):
        for name in ("score_sde_digits", "score_sde_toy2d"):
            config = load_sibling(os.path.join(ROOT, "configs", "x.py"), name, sde)
            model = models.build(config.model)
            expected = {"ncsn": "ve"}.get(sde, sde)
            assert model.config.sde == expected
            assert type(model.sde) is {"vp": sd.VPSDE, "subvp": sd.SubVPSDE,
                                       "ve": sd.VESDE}[expected]
    with pytest.raises(ValueError, match="unknown SDE"):
        load_sibling(os.path.join(ROOT, "configs", "x.py"), "score_sde_digits", "sub")
    with pytest.raises(ValueError, match="needs model.sde = 've'"):
        point_model(sde="vp", sampler="annealed_langevin")
    with pytest.raises(ValueError, match="model.sampler must be one of"):
        point_model(sampler="heun")
    with pytest.raises(ValueError, match="beta_min < model.beta_max"):
        point_model(beta_min=30.0)


@pytest.mark.slow
def test_tiny_run_is_finite_and_resumes_bit_exactly(tmp_path, monkeypatch):
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), "score_sde_toy2d")
    with config.unlocked():
        config.model.update(mlp_hidden=8, mlp_blocks=1)
        config.training.update(batch_size=16, num_steps=4, log_every=1, checkpoint_every=2,
                               num_sample_images=0, progress=False)
    reference = train_and_evaluate(config, str(tmp_path / "ref"))
    lines = open(tmp_path / "ref" / "metrics.jsonl").read().splitlines()
    assert len(lines) == 4 and all(np.isfinite(json.loads(line)["loss"]) for line in lines)
    assert_resumes_bit_exactly(config, reference, tmp_path, monkeypatch)


@pytest.mark.slow
def test_class_conditional_image_model_with_a_tiny_unet():
    """digits16 with a tiny U-Net: the loss is the core DSM loss at the dequantized images
    2 (k + u) / L - 1 (u from the first key of the split), sampling gives uint8 images, the
    conditional likelihood (example by example, Hutchinson) gives finite bits/dim."""
    from genjax import data as gdata
    from genjax.core import likelihoods as lk

    model = models.build(make_config("score_sde", "digits16", model_kwargs=dict(
        base_channels=8, channel_mults=(1, 2), num_heads=2, num_classes=10, sde="ve",
        sigma_max=20.0, sampler="pc", sample_steps=3, log_prob_steps=2)).model)
    batch = next(gdata.load("digits16", "train", 4, shuffle=False)[0])
    params = jax.jit(model.init)(init_key(jax.random.key(0)), batch)
    params = jax.tree.map(lambda p: p + 0.01, params)

    @jax.jit
    def both(params, key):
        k_x, k_dsm, k_y, _ = jax.random.split(key, 4)
        y = model.train_labels(batch, k_y)
        x0 = 2 * lk.uniform_dequantize(k_x, batch["image"], 256) - 1
        expected = sd.denoising_score_matching_loss(
            model.sde, lambda x, t: model.score(params, x, t, y), x0, k_dsm, eps=1e-5)
        return model.loss(params, batch, key)[0], jnp.mean(expected) / 256

    loss, expected = both(params, jax.random.key(1))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert_guided_images_and_finite_bits_per_dim(model, params, batch)


def assert_guided_images_and_finite_bits_per_dim(model, params, batch):
    """A tiny digits16 model with class guidance samples uint8 images, and its conditional
    log_prob gives finite, positive bits/dim for each of the 4 examples of ``batch``."""
    from genjax.core import likelihoods as lk

    images = jax.jit(model.sample, static_argnums=2)(params, jax.random.key(2), 4,
                                                     guidance_scale=1.0)
    assert images.shape == (4, 16, 16, 1) and images.dtype == jnp.uint8
    nll = -jax.jit(model.log_prob)(params, batch, jax.random.key(3))
    bpd = np.asarray(lk.bits_per_dim(nll, 256))
    assert bpd.shape == (4,) and np.all(np.isfinite(bpd)) and np.all(bpd > 0)


def test_sample_with_a_traced_step_count_compiles_once():
    """model.sample under jit with num_samples static and num_steps traced: one trace serves
    two step counts, each equal to the sample with the Python int (Euler-Maruyama; the core
    samplers are checked in tests/core/test_sde.py)."""
    model = point_model(sde="vp", sampler="em")
    model.net = ExactScoreNet(model.sde, MU, S)
    assert_one_trace_serves_two_step_counts(model)


def assert_one_trace_serves_two_step_counts(model):
    """``model.sample`` jitted with num_samples static and num_steps traced is traced once
    for 3 and 6 steps, and equals the sample with each Python int."""
    traces = []

    def sample(params, key, num_samples, num_steps):
        traces.append(num_steps)
        return model.sample(params, key, num_samples, num_steps=num_steps)

    traced = jax.jit(sample, static_argnums=2)
    for n in (3, 6):
        np.testing.assert_allclose(traced(FAKE, jax.random.key(0), 8, n),
                                   model.sample(FAKE, jax.random.key(0), 8, num_steps=n),
                                   rtol=1e-5, atol=1e-5)
    assert len(traces) == 1


@pytest.mark.slow
def test_adaptive_log_prob_stats_and_the_solver_field():
    """Points, ``log_prob_solver = "tsit5"``: log_prob with the exact score is the analytic
    density (as with RK4 above), log_prob_stats returns it with the solver's nfe per example
    (declared in capabilities, reported by genjax eval); a bad solver name fails."""
    model = point_model(sde="vp", log_prob_solver="tsit5", log_prob_rtol=1e-5,
                        log_prob_atol=1e-5)
    model.net = ExactScoreNet(model.sde, np.zeros(2), S)
    assert model.capabilities.log_prob_stats and "tsit5" in model.capabilities.likelihood_kind
    x = np.array([[0.3, -1.0], [-0.8, 2.5], [0.0, 0.1]], np.float32)
    a, std = model.sde.marginal_prob(jnp.ones((1, 1)), jnp.full((1,), model.config.eps))
    var = a[0, 0] ** 2 * S ** 2 + std[0, 0] ** 2
    analytic = -0.5 * np.sum(x ** 2 / var + np.log(2 * np.pi * var), axis=1)
    log_prob, stats = jax.jit(model.log_prob_stats)(FAKE, {"point": x}, jax.random.key(0))
    np.testing.assert_allclose(log_prob, analytic, atol=1e-3)
    assert stats["nfe"].shape == (3,) and np.all(np.asarray(stats["nfe"]) > 7)
    with pytest.raises(ValueError, match="log_prob_solver must be one of"):
        point_model(log_prob_solver="rk45")
    with pytest.raises(ValueError, match="log_prob_rtol"):
        point_model(log_prob_rtol=0.0)
