"""The energy-based model: the contrastive-divergence gradient in closed form, the Langevin
sampler on a Gaussian energy, the replay buffer's writes and restarts, the grid-normalised
density, a tiny run through the trainer that resumes bit-exactly, and config errors."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import models
from genjax.configs import load_sibling
from genjax.models.ebm import EBM, EBMConfig
from genjax.train.state import init_state
from genjax.train.trainer import train_and_evaluate
from tests.train.test_trainer import assert_resumes_bit_exactly

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _points(n=16, seed=0):
    return {"point": np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32)}


def _point_config(**kwargs):
    base = dict(image_shape=(2,), num_levels=0, data_key="point", hidden=8, num_layers=1,
                langevin_steps=3, step_size=0.01, noise_scale=0.1, buffer_size=64,
                init_scale=3.0, data_noise=0.0)
    base.update(kwargs)
    return EBMConfig(**base)


class LinearEBM(EBM):
    """E_theta(x) = theta . x + c: grad_theta E = x."""

    def energy(self, params, x):
        return x @ params["net"]["theta"] + params["net"]["c"]


class QuadraticEBM(EBM):
    """E(x) = |x - mu|^2 / (2 s^2): p_theta = N(mu, s^2 I), Z = (2 pi s^2)^(D/2)."""

    def energy(self, params, x):
        mu, s = params["net"]["mu"], params["net"]["s"]
        return jnp.sum((x - mu) ** 2, axis=-1) / (2.0 * s ** 2)


def _params(model, **net):
    """The given energy parameters and a buffer of the model's restart noise."""
    buffer = model.noise(jax.random.key(0), (model.config.buffer_size, 2))
    return {"net": {k: jnp.asarray(v) for k, v in net.items()}, "state": {"buffer": buffer}}


def _linear_params(model, theta=(0.7, -1.3), c=0.4):
    return _params(model, theta=theta, c=c)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_cd_gradient_is_data_minus_model_expectation_of_grad_energy(alpha):
    model = LinearEBM(_point_config(energy_reg=alpha))
    params = _linear_params(model)
    batch = _points()
    rng = jax.random.key(3)

    def loss(net):
        return model.loss_and_stats(dict(params, net=net), batch, rng)

    (_, (metrics, stats)), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(params["net"])
    x_data = batch["point"]
    x_model = np.asarray(stats["writes"])[np.asarray(stats["hits"]) > 0]   # the chains' ends
    assert x_model.shape == x_data.shape
    theta, c = np.array([0.7, -1.3]), 0.4
    e_data, e_model = x_data @ theta + c, x_model @ theta + c
    # d/dtheta [mean E(x_d) - mean E(x_m) + alpha (mean E(x_d)^2 + mean E(x_m)^2)]; the chain
    # itself depends on theta, but CD stops that gradient.
    expected_theta = (x_data.mean(0) - x_model.mean(0)
                      + 2 * alpha * ((e_data[:, None] * x_data).mean(0)
                                     + (e_model[:, None] * x_model).mean(0)))
    expected_c = 2 * alpha * (e_data.mean() + e_model.mean())
    np.testing.assert_allclose(grad["theta"], expected_theta, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad["c"], expected_c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(metrics["energy_gap"], e_data.mean() - e_model.mean(),
                               rtol=1e-5, atol=1e-5)


def _quadratic(mu=(1.0, -2.0), s=0.5, **kwargs):
    model = QuadraticEBM(_point_config(**kwargs))
    return model, _params(model, mu=mu, s=s)


def test_sampler_on_a_quadratic_energy_lands_on_its_gaussian():
    # untempered moves (noise_scale = sqrt(2 step_size)) sample N(mu, s^2 I); ULA's
    # stationary variance s^2 / (1 - eps / (2 s^2)) is 0.4% above s^2 at eps = 2e-3, and
    # 1500 steps contract the start by (1 - eps / s^2)^1500 = e^-12.
    eps, mu, s, n = 2e-3, np.array([1.0, -2.0]), 0.5, 2000
    model, params = _quadratic(step_size=eps, noise_scale=float(np.sqrt(2 * eps)),
                               sample_steps=1500)
    x = np.asarray(jax.jit(lambda p, k: model.sample(p, k, n))(params, jax.random.key(1)))
    assert x.shape == (n, 2) and np.all(np.isfinite(x))
    np.testing.assert_allclose(x.mean(0), mu, atol=4 * s / np.sqrt(n))
    # the sample variance of n normals has std s^2 sqrt(2 / n)
    np.testing.assert_allclose(x.var(0), s ** 2, atol=4 * s ** 2 * np.sqrt(2.0 / n))
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(params, jax.random.key(1), 4, cond=1)


def test_update_state_writes_the_chains_into_their_slots_and_keeps_the_rest():
    model, params = _quadratic(buffer_size=40, reinit_prob=0.3)
    before = np.asarray(params["state"]["buffer"])
    _, (metrics, stats) = jax.jit(model.loss_and_stats)(params, _points(), jax.random.key(5))
    hits = np.asarray(stats["hits"])
    assert sorted(np.unique(hits)) == [0.0, 1.0] and hits.sum() == 16   # 16 distinct slots
    new, _ = model.update_state(params, stats)
    after = np.asarray(new["state"]["buffer"])
    written = hits > 0
    np.testing.assert_array_equal(after[written], np.asarray(stats["writes"])[written])
    np.testing.assert_array_equal(after[~written], before[~written])
    assert not np.allclose(after[written], before[written])              # the chains moved
    np.testing.assert_array_equal(new["net"]["mu"], params["net"]["mu"])
    assert 0.0 <= float(metrics["reinit_frac"]) <= 1.0


def test_reinit_fraction_is_reinit_prob_over_many_draws():
    model, params = _quadratic(buffer_size=512, reinit_prob=0.05, langevin_steps=1)
    batch = _points(512)
    fracs = jax.jit(jax.vmap(lambda k: model.loss(params, batch, k)[1]["reinit_frac"]))(
        jax.random.split(jax.random.key(7), 20))
    total = 20 * 512
    # binomial(total, 0.05): std sqrt(p (1 - p) / total) = 0.0022 of the fraction
    assert abs(float(np.mean(fracs)) - 0.05) < 4 * np.sqrt(0.05 * 0.95 / total)


def test_restarted_chains_start_from_uniform_noise_not_the_buffer():
    # with reinit_prob = 1 and a buffer far from the noise box, every chain starts in the box
    model, params = _quadratic(buffer_size=32, reinit_prob=1.0, langevin_steps=1,
                               step_size=1e-6, noise_scale=1e-4, init_scale=1.0)
    params["state"]["buffer"] = jnp.full((32, 2), 100.0)
    _, (metrics, stats) = jax.jit(model.loss_and_stats)(params, _points(), jax.random.key(2))
    x = np.asarray(stats["writes"])[np.asarray(stats["hits"]) > 0]
    assert float(metrics["reinit_frac"]) == 1.0
    assert np.all(np.abs(x) < 1.01)
    # ``sample`` starts from noise in the box, or (init="buffer") from the buffer's rows
    near = {init: np.asarray(model.sample(params, jax.random.key(3), 4, num_steps=1, init=init))
            for init in ("noise", "buffer")}
    assert np.all(np.abs(near["noise"]) < 1.01) and np.all(np.abs(near["buffer"] - 100) < 0.01)
    with pytest.raises(ValueError, match="init must be one of"):
        model.sample(params, jax.random.key(3), 4, init="data")


def test_log_prob_grid_integrates_to_one_and_matches_the_gaussian():
    mu, s = np.array([0.5, -0.25]), 0.7
    model, params = _quadratic(mu=mu, s=s)
    xs = np.linspace(-5.0, 5.0, 201)
    grid = np.stack(np.meshgrid(xs, xs, indexing="ij"), -1)
    lp = np.asarray(model.log_prob_grid(params, grid))
    dx = xs[1] - xs[0]
    assert lp.shape == (201, 201)
    np.testing.assert_allclose(np.exp(lp).sum() * dx * dx, 1.0, rtol=1e-5)
    gaussian = (-np.sum((grid - mu) ** 2, -1) / (2 * s ** 2) - np.log(2 * np.pi * s ** 2))
    np.testing.assert_allclose(lp, gaussian, atol=1e-3)
    with pytest.raises(ValueError, match="grid must be"):
        model.log_prob_grid(params, grid[..., 0])


def _digits_model(**model):
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), "ebm_digits")
    with config.unlocked():
        config.model.update(channels=(4,), hidden=4, buffer_size=8, langevin_steps=2,
                            data_noise=0.0, **model)
    return models.build(config.model)


def test_images_map_to_the_symmetric_range_and_back():
    model = _digits_model()
    image = np.array([0, 255, 128, 64], np.uint8).reshape(4, 1, 1, 1) * np.ones(
        (1, 16, 16, 1), np.uint8)
    x = np.asarray(model.to_x({"image": image}))
    np.testing.assert_allclose(x[:, 0, 0, 0], 2 * np.array([0, 255, 128, 64]) / 255 - 1,
                               atol=1e-6)
    np.testing.assert_array_equal(np.asarray(model.from_x(jnp.asarray(x))), image)
    with pytest.raises(ValueError, match="2-D points only"):
        model.log_prob_grid({}, np.zeros((2, 2, 2)))


@pytest.mark.slow
def test_image_model_trains_a_step_and_samples_uint8_images():
    model = _digits_model()
    image = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 1)).astype(np.uint8)
    params = model.init(jax.random.key(0), {"image": image})
    assert params["state"]["buffer"].shape == (8, 16, 16, 1)
    out = model.sample(params, jax.random.key(1), 3, num_steps=2)
    assert out.shape == (3, 16, 16, 1) and out.dtype == jnp.uint8
    loss, (metrics, stats) = jax.jit(model.loss_and_stats)(
        params, {"image": image}, jax.random.key(2))
    assert np.isfinite(float(loss)) and float(stats["hits"].sum()) == 4
    x = np.asarray(stats["writes"])[np.asarray(stats["hits"]) > 0]
    assert x.shape == (4, 16, 16, 1) and x.min() >= -1.0 and x.max() <= 1.0   # clipped


def _toy_config(**training):
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), "ebm_toy2d")
    with config.unlocked():
        config.model.update(hidden=8, num_layers=1, langevin_steps=3, buffer_size=64,
                            sample_steps=5)
        config.training.update(dict(batch_size=16, num_steps=6, steps_per_call=1, log_every=2,
                                    checkpoint_every=2, num_sample_images=0, progress=False),
                               **training)
        config.eval.update(num_samples=0)
    return config


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    config = _toy_config(num_steps=4, checkpoint_every=4)
    workdir = tmp_path_factory.mktemp("ebm") / "ref"
    return config, workdir, train_and_evaluate(config, str(workdir))


def test_tiny_run_is_finite_and_moves_part_of_the_buffer(reference_run):
    config, workdir, reference = reference_run
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(reference.params))
    model = models.build(config.model)
    first = init_state(model, optax.sgd(0.1), jax.random.key(config.seed), _points())
    start = np.asarray(first.params["state"]["buffer"])
    # 4 steps x 16 chains of the 64-row buffer: some rows moved, the others kept their noise
    buffer = np.asarray(reference.params["state"]["buffer"])
    moved = np.any(buffer != start, axis=1)
    assert buffer.shape == (64, 2) and 16 <= moved.sum() < 64
    np.testing.assert_array_equal(reference.ema_params["state"]["buffer"], buffer)  # copied
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        line = f.readline()
    for name in ("energy_data", "energy_model", "energy_gap", "reinit_frac"):
        assert name in line


@pytest.mark.slow
def test_tiny_run_resumes_bit_exactly_buffer_included(tmp_path, monkeypatch):
    config = _toy_config()
    reference = train_and_evaluate(config, str(tmp_path / "ref"))
    assert_resumes_bit_exactly(config, reference, tmp_path, monkeypatch)


def test_batch_larger_than_the_buffer_is_refused():
    model, params = _quadratic(buffer_size=8)
    with pytest.raises(ValueError, match="buffer_size >= 16"):
        model.loss_and_stats(params, _points(16), jax.random.key(0))


@pytest.mark.parametrize("kwargs,message", [
    (dict(reinit_prob=1.5), "reinit_prob must be in"),
    (dict(noise_scale=0.0), "noise_scale must be > 0"),
    (dict(step_size=-1.0), "step_size must be > 0"),
    (dict(langevin_steps=0), "langevin_steps must be >= 1"),
    (dict(buffer_size=0), "buffer_size must be >= 1"),
    (dict(energy_reg=-0.1), "energy_reg and model.data_noise must be >= 0"),
    (dict(sample_init="data"), "sample_init must be one of"),
    (dict(data_key="pixels"), "data_key must be"),
    (dict(image_shape=(16, 16, 1)), "points need image_shape"),
])
def test_bad_configs_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _point_config(**kwargs)


def test_unknown_config_key_and_density_are_refused():
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), "ebm_toy2d", "ring8")
    assert config.data.name == "toy2d/ring8" and config.model.name == "ebm"
    with pytest.raises(ValueError, match="unknown toy2d density"):
        load_sibling(os.path.join(ROOT, "configs", "x.py"), "ebm_toy2d", "spiral")
    with config.unlocked():
        config.model.langevin_step = 5
    with pytest.raises(ValueError, match="langevin_step"):
        models.build(config.model)
