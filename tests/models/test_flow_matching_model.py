"""The flow matching family through the protocol: its loss is the core flow matching loss of its
own network; with the exact marginal velocity of Gaussian data plugged in for the network its
samplers land on that Gaussian, its likelihood is the analytic density (on images, the
dequantization bound of the discrete levels), its reflow pairs are the linear transport map,
and guidance mixes the classes; reflow from a trained teacher run loaded through
``models.pretrained`` trains on the teacher's pairs."""

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
from genjax.core import flow_matching as fm
from genjax.core.random import init_key
from genjax.models.continuous import TIME_SCALE
from genjax.models.protocol import FROZEN, update_rule
from genjax.train.checkpoint import CheckpointError
from genjax.train.trainer import train_and_evaluate
from tests.models.test_score import (assert_guided_images_and_finite_bits_per_dim,
                                     assert_one_trace_serves_two_step_counts)
from tests.train.test_trainer import assert_trees_equal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MU = np.array([2.0, -1.0], np.float32)
S = np.array([0.5, 1.5], np.float32)   # data N(MU, diag S^2)
FAKE = {"net": {}}                     # params of a model whose network is replaced


def point_config(**model):
    kwargs = dict(image_shape=(2,), num_levels=0, data_key="point", mlp_hidden=16,
                  mlp_blocks=1, log_prob_trace="exact")
    kwargs.update(model)
    return make_config("flow_matching", "toy2d/moons", model_kwargs=kwargs)


def point_model(**model):
    return models.build(point_config(**model).model)


class ExactVelocityNet:
    """Stands in for the network v(x, t) = net(x, 1000 t, y): the marginal velocity
    u(x, t) = E[u_t | x_t = x] of the path from N(0, I) to N(mean_y, diag S^2), per dimension
    E u_t + Cov(u_t, x_t) / Var(x_t) (x - E x_t) with c = 1 - sigma_min, E x_t = t mean,
    Var x_t = (1 - c t)^2 + t^2 S^2 and Cov = t S^2 - c (1 - c t)."""

    def __init__(self, mean, scale, sigma_min=0.0, means=None):
        self.mean, self.scale, self.c, self.means = mean, scale, 1.0 - sigma_min, means

    def apply(self, variables, x, t_in, y=None, *, train=False, rngs=None):
        t = (t_in / TIME_SCALE).reshape((-1,) + (1,) * (x.ndim - 1))
        mean = self.mean if y is None else jnp.asarray(self.means)[y]
        var = (1 - self.c * t) ** 2 + t ** 2 * self.scale ** 2
        cov = t * self.scale ** 2 - self.c * (1 - self.c * t)
        return mean + cov / var * (x - t * mean)


def test_loss_is_the_core_flow_matching_loss_of_the_models_own_network():
    """Composition: the model's loss (class-conditional, label dropout, OT path) equals
    mean(core FM loss) / D with the model's own velocity network, same keys."""
    model = point_model(num_classes=3, label_dropout=0.5, path="ot", sigma_min=0.1)
    rng = np.random.default_rng(0)
    batch = {"point": rng.normal(size=(16, 2)).astype(np.float32),
             "label": rng.integers(0, 3, 16).astype(np.int32)}
    params = jax.jit(model.init)(init_key(jax.random.key(0)), batch)
    params = jax.tree.map(lambda p: p + 0.1 * jnp.ones_like(p), params)

    @jax.jit
    def both(params, batch, key):
        _, k_fm, k_y, _ = jax.random.split(key, 4)
        y = model.train_labels(batch, k_y)
        expected = fm.flow_matching_loss(lambda x, t: model.velocity(params, x, t, y),
                                         batch["point"], k_fm, sigma_min=0.1)
        return model.loss(params, batch, key), jnp.mean(expected) / 2, y

    (loss, metrics), expected, y = both(params, batch, jax.random.key(1))
    assert 0 < int((y == 3).sum()) < 16
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert metrics["loss"] == loss and loss > 0


def test_ot_coupling_loss_is_the_core_loss_on_the_permuted_noise():
    """coupling = "ot": the loss is the core loss with the batch's noise draws (not the
    identity pairing here) permuted by the minibatch OT assignment to the data, same t
    (the exact Gaussian velocity stands in for the network)."""
    model = point_model(coupling="ot")
    model.net = ExactVelocityNet(MU, S)
    batch = {"point": np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32) + 3.0}

    @jax.jit
    def both(key):
        _, k_fm, _, _ = jax.random.split(key, 4)
        k_t, k_0 = jax.random.split(k_fm)
        x1 = batch["point"]
        x0 = jax.random.normal(k_0, x1.shape)
        coupled = fm.ot_coupling(x0, x1)
        expected = fm.flow_matching_loss(lambda x, t: model.velocity(FAKE, x, t), x1, None,
                                         x0=coupled, t=jax.random.uniform(k_t, (8,)))
        return model.loss(FAKE, batch, key)[0], jnp.mean(expected) / 2, x0, coupled

    loss, expected, x0, coupled = both(jax.random.key(1))
    assert np.isfinite(loss) and not np.array_equal(x0, coupled)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("path,sampler,steps", [("rectified", "heun", 50), ("ot", "euler", 200)])
def test_samplers_with_the_exact_velocity_land_on_the_gaussian(path, sampler, steps):
    """The ODE from N(0, I) ends on the law of x_1 = sigma_min x_0 + data,
    N(MU, S^2 + sigma_min^2), up to Monte Carlo error and the integrator's bias."""
    sigma_min = 0.1 if path == "ot" else 0.0
    model = point_model(path=path, sigma_min=sigma_min or 1e-4, sampler=sampler,
                        sample_steps=steps)
    model.net = ExactVelocityNet(MU, S, sigma_min)
    x = np.asarray(jax.jit(model.sample, static_argnums=2)(FAKE, jax.random.key(0), 4000))
    var = S ** 2 + sigma_min ** 2
    n = len(x)
    np.testing.assert_array_less(np.abs(x.mean(0) - MU), 4 * np.sqrt(var / n) + 0.02)
    np.testing.assert_array_less(np.abs(x.var(0) - var), 4 * var * np.sqrt(2 / n) + 0.02)


def test_log_prob_and_reflow_pairs_with_the_exact_velocity():
    """Points: log_prob through the ODE (exact trace) is log N(x; MU, diag S^2); the reflow
    pairs of the exact flow are the monotone transport map x_1 = MU + S x_0."""
    model = point_model(log_prob_steps=100, sample_steps=100)
    model.net = ExactVelocityNet(MU, S)
    assert model.capabilities.likelihood == "exact"
    x = np.array([[2.1, -1.0], [1.0, 2.0], [3.0, -3.5]], np.float32)
    analytic = stats.norm.logpdf(x, MU, S).sum(1)
    np.testing.assert_allclose(jax.jit(model.log_prob)(FAKE, {"point": x}, jax.random.key(0)),
                               analytic, atol=1e-3)
    x0, x1 = jax.jit(model.reflow_pairs, static_argnums=2)(FAKE, jax.random.key(1), 5)
    np.testing.assert_allclose(x1, MU + S * x0, atol=1e-3)


def test_image_log_prob_is_the_dequantization_bound_of_the_discrete_levels():
    """One sub-pixel of L = 4 levels and the flow density q = N(0.2, 0.6^2): the mean of
    log_prob over draws of u is int_bin log q / |bin| + log |bin|, |bin| = 2 / L (quadrature
    here), below log P(k) = log int_bin q (Jensen)."""
    L, m, s = 4, 0.2, 0.6
    model = models.build(make_config("flow_matching", "digits16", model_kwargs=dict(
        image_shape=(1, 1, 1), num_levels=L, channel_mults=(1,), attention_resolutions=(),
        log_prob_trace="exact", log_prob_steps=50)).model)
    assert model.capabilities.likelihood == "bound"
    model.net = ExactVelocityNet(m, s)
    n = 512
    fn = jax.jit(model.log_prob)
    for k in range(L):
        got = np.asarray(fn(FAKE, {"image": np.full((n, 1, 1, 1), k, np.uint8)},
                            jax.random.key(k)))
        lo, hi = 2 * k / L - 1, 2 * (k + 1) / L - 1
        grid = np.linspace(lo, hi, 2001)
        expected = (np.trapezoid(stats.norm.logpdf(grid, m, s), grid) / (hi - lo)
                    + math.log(hi - lo))
        np.testing.assert_allclose(got.mean(), expected, atol=4 * got.std() / np.sqrt(n) + 2e-3)
        log_mass = math.log(stats.norm.cdf(hi, m, s) - stats.norm.cdf(lo, m, s))
        assert got.mean() <= log_mass + 2e-3
    samples = model.sample(FAKE, jax.random.key(9), 2000)     # levels floor((x + 1) L / 2)
    counts = np.bincount(np.asarray(samples).ravel(), minlength=L) / 2000
    edges = 2 * np.arange(L + 1) / L - 1
    mass = np.diff(stats.norm.cdf(edges, m, s))
    mass[0] += stats.norm.cdf(-1, m, s)                       # clipped tails
    mass[-1] += stats.norm.sf(1, m, s)
    np.testing.assert_allclose(counts, mass, atol=0.04)


def test_conditional_sampling_cycles_the_classes_and_guides():
    """Without ``cond`` the samples take the classes in turn; with guidance w the velocity
    (1 + w) v_k - w v_null, affine in the mean, is the flow to (1 + w) MEANS[k] - w MEANS[3];
    the likelihood of a labelled point is the density of its class."""
    means = np.array([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -1.0]], np.float32)
    model = point_model(num_classes=3, sample_steps=20)
    model.net = ExactVelocityNet(None, 0.05, means=means)
    sample = jax.jit(model.sample, static_argnums=2)
    x = np.asarray(sample(FAKE, jax.random.key(0), 6))
    np.testing.assert_allclose(x, means[[0, 1, 2, 0, 1, 2]], atol=0.25)
    x = np.asarray(sample(FAKE, jax.random.key(0), 3, jnp.array([2, 1, 0]), guidance_scale=1.0))
    np.testing.assert_allclose(x, 2 * means[[2, 1, 0]] - means[3], atol=0.25)
    with pytest.raises(ValueError, match="unconditional"):
        point_model().sample(FAKE, jax.random.key(0), 2, 1)
    # log_prob of labelled points is the density of their own class (example by example)
    points = np.array([[2.0, 0.1], [2.0, 0.1], [0.0, 1.9]], np.float32)
    labels = np.array([0, 1, 1], np.int32)
    analytic = stats.norm.logpdf(points, means[labels], 0.05).sum(1)
    log_prob = jax.jit(model.log_prob, static_argnames="num_steps")(
        FAKE, {"point": points, "label": labels}, jax.random.key(1), num_steps=50)
    np.testing.assert_allclose(log_prob, analytic, rtol=1e-3)


def test_bad_config_fields_fail():
    with pytest.raises(ValueError, match="model.path must be one of"):
        point_model(path="vp")
    with pytest.raises(ValueError, match="sigma_min must be in"):
        point_model(path="ot", sigma_min=0.0)
    with pytest.raises(ValueError, match="model.sampler must be one of"):
        point_model(sampler="rk4")
    with pytest.raises(CheckpointError, match="teacher_workdir"):
        point_model(teacher_workdir="/nonexistent/run")
    with pytest.raises(ValueError, match="model.coupling must be one of"):
        point_model(coupling="sinkhorn")
    with pytest.raises(ValueError, match="coupling 'ot' does not apply to reflow"):
        point_model(coupling="ot", teacher_workdir="/nonexistent/run")


def tiny_run_config(**model):
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), "flow_matching_toy2d")
    with config.unlocked():
        config.model.update(dict(mlp_hidden=8, mlp_blocks=1, sample_steps=4), **model)
        config.training.update(batch_size=16, num_steps=2, log_every=1, checkpoint_every=2,
                               num_sample_images=0, progress=False)
    return config


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A flow_matching run trained 2 steps on toy2d through the trainer."""
    workdir = str(tmp_path_factory.mktemp("teacher"))
    state = train_and_evaluate(tiny_run_config(), workdir)
    return workdir, state


def test_tiny_run_is_finite(teacher_run):
    workdir, state = teacher_run
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [m["step"] for m in lines] == [1, 2]
    assert all(np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"]) for m in lines)
    assert int(state.step) == 2


def test_reflow_trains_on_the_pairs_of_the_frozen_teacher(teacher_run):
    """Built on the teacher's workdir: the teacher's EMA parameters are the frozen group
    ``params["teacher"]`` and the student's start; the loss is the core loss on
    (x_0, ODE_teacher(x_0)) with x_0 given, drawn from the data key of the model's split."""
    workdir, state = teacher_run
    model = models.build(tiny_run_config(teacher_workdir=workdir, reflow_steps=3).model)
    assert model.capabilities.param_groups
    rule = update_rule(model)
    assert rule.groups[FROZEN] == ("teacher",) and rule.trainable_groups == ("model",)
    batch = {"point": np.zeros((8, 2), np.float32)}          # only its size matters
    params = jax.jit(model.init)(init_key(jax.random.key(0)), batch)
    assert_trees_equal(params["teacher"]["net"], state.ema_params["net"])
    assert_trees_equal(params["net"], state.ema_params["net"])     # init_from_teacher
    params["net"] = jax.tree.map(lambda p: p + 0.05, params["net"])  # student != teacher

    @jax.jit
    def both(params, key):
        k_x, k_fm, _, _ = jax.random.split(key, 4)
        x0 = jax.random.normal(k_x, (8, 2))
        x1 = fm.sample(lambda x, t: model.teacher.velocity(params["teacher"], x, t), x0,
                       num_steps=3, method="heun")
        expected = fm.flow_matching_loss(lambda x, t: model.velocity(params, x, t), x1, k_fm,
                                         x0=x0)
        return model.loss(params, batch, key)[0], jnp.mean(expected) / 2

    loss, expected = both(params, jax.random.key(3))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="teacher's network differs"):
        other = models.build(tiny_run_config(teacher_workdir=workdir, mlp_hidden=4).model)
        jax.eval_shape(other.init, init_key(jax.random.key(0)), batch)
    with pytest.raises(ValueError, match="num_classes"):
        models.build(tiny_run_config(teacher_workdir=workdir, num_classes=3).model)


def test_distillation_regresses_the_one_step_map_at_time_zero(teacher_run):
    """distill: the loss is |v(x_0, 0) - (x_1 - x_0)|^2 per dimension on the teacher's pairs,
    so one Euler step x_0 + v(x_0, 0) is trained onto x_1 = ODE_teacher(x_0)."""
    workdir, _ = teacher_run
    model = models.build(tiny_run_config(teacher_workdir=workdir, reflow_steps=3, distill=True,
                                         sampler="euler", sample_steps=1).model)
    batch = {"point": np.zeros((8, 2), np.float32)}
    params = jax.jit(model.init)(init_key(jax.random.key(0)), batch)

    @jax.jit
    def both(params, key):
        k_x = jax.random.split(key, 4)[0]
        x0 = jax.random.normal(k_x, (8, 2))
        x1 = fm.sample(lambda x, t: model.teacher.velocity(params["teacher"], x, t), x0,
                       num_steps=3, method="heun")
        v0 = model.velocity(params, x0, jnp.zeros(8))
        return model.loss(params, batch, key)[0], jnp.mean((v0 - (x1 - x0)) ** 2)

    loss, expected = both(params, jax.random.key(4))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="one Euler step"):
        point_model(teacher_workdir=workdir, distill=True)
    with pytest.raises(ValueError, match="teacher_workdir"):
        point_model(distill=True, sampler="euler", sample_steps=1)


@pytest.mark.slow
def test_reflow_run_leaves_the_teacher_untouched(teacher_run, tmp_path):
    workdir, state = teacher_run
    config = tiny_run_config(teacher_workdir=workdir)
    student = train_and_evaluate(config, str(tmp_path / "student"))
    assert_trees_equal(student.params["teacher"]["net"], state.ema_params["net"])
    assert not np.array_equal(jax.tree.leaves(student.params["net"])[0],
                              jax.tree.leaves(state.ema_params["net"])[0])


@pytest.mark.slow
def test_class_conditional_image_model_with_a_tiny_unet():
    """digits16 with a tiny U-Net: the loss is the core flow matching loss at the dequantized
    images 2 (k + u) / L - 1, sampling gives uint8 images, the conditional likelihood
    (example by example, Hutchinson) gives finite bits/dim."""
    from genjax import data as gdata
    from genjax.core import likelihoods as lk

    model = models.build(make_config("flow_matching", "digits16", model_kwargs=dict(
        base_channels=8, channel_mults=(1, 2), num_heads=2, num_classes=10, sample_steps=3,
        log_prob_steps=2)).model)
    batch = next(gdata.load("digits16", "train", 4, shuffle=False)[0])
    params = jax.jit(model.init)(init_key(jax.random.key(0)), batch)
    params = jax.tree.map(lambda p: p + 0.01, params)

    @jax.jit
    def both(params, key):
        k_x, k_fm, k_y, _ = jax.random.split(key, 4)
        y = model.train_labels(batch, k_y)
        x1 = 2 * lk.uniform_dequantize(k_x, batch["image"], 256) - 1
        expected = fm.flow_matching_loss(lambda x, t: model.velocity(params, x, t, y), x1, k_fm)
        return model.loss(params, batch, key)[0], jnp.mean(expected) / 256

    loss, expected = both(params, jax.random.key(1))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert_guided_images_and_finite_bits_per_dim(model, params, batch)


def test_sample_with_a_traced_step_count_and_adaptive_log_prob_stats():
    """model.sample under jit (num_samples static) with num_steps traced: one trace for two
    step counts, each equal to the Python-int sample; with ``log_prob_solver = "dopri5"``
    log_prob_stats is the analytic density with the solver's nfe; a bad solver fails."""
    model = point_model(log_prob_solver="dopri5")
    model.net = ExactVelocityNet(MU, S)
    assert_one_trace_serves_two_step_counts(model)
    x = np.array([[2.1, -1.0], [1.0, 2.0], [3.0, -3.5]], np.float32)
    log_prob, extra = jax.jit(model.log_prob_stats)(FAKE, {"point": x}, jax.random.key(0))
    np.testing.assert_allclose(log_prob, stats.norm.logpdf(x, MU, S).sum(1), atol=1e-3)
    assert model.capabilities.log_prob_stats and np.all(np.asarray(extra["nfe"]) > 7)
    with pytest.raises(ValueError, match="log_prob_solver must be one of"):
        point_model(log_prob_solver="euler")
