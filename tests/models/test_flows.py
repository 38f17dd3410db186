"""RealNVP and Glow (genjax/models/flows.py): the whole model is invertible with the right
log-det at init and after training steps, 2-D densities integrate to one, sampling and
encoding, class conditioning, and training that stays finite."""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import data as gdata
from genjax.core import bijectors as bj
from genjax.core.random import init_key
from genjax.configs import load_sibling, make_config
from genjax.models import build
from tests.core.test_bijectors import jacobian_logdet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMG = (4, 4, 2)       # small enough for a 32 x 32 Jacobian of the whole flow
LEVELS = 17


def _model(name, **kwargs):
    base = dict(image_shape=IMG, num_levels=LEVELS, num_scales=2, steps_per_scale=2, hidden=8)
    base.update(kwargs)
    return build(make_config(name, "digits", model_kwargs=base).model)


def _image_batch(n=16, seed=0):
    """Images with structure (a smooth ramp plus noise), levels 0..16, and labels."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, LEVELS - 1, math.prod(IMG)).reshape(IMG)
    images = np.clip(np.round(ramp + rng.normal(0, 3, (n,) + IMG)), 0, LEVELS - 1)
    return {"image": images.astype(np.uint8), "label": (np.arange(n) % 3).astype(np.int32)}


def _train(model, params, batch, num_steps, learning_rate, seed=0):
    """A few Adam steps on one batch (one compile): the new params, the losses and the
    metrics of the last step."""
    opt = optax.adam(learning_rate)

    @jax.jit
    def step(params, opt_state, key):
        (loss, metrics), grads = jax.value_and_grad(model.loss, has_aux=True)(params, batch,
                                                                              key)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss, metrics

    opt_state, losses = opt.init(params), []
    for i in range(num_steps):
        params, opt_state, loss, metrics = step(params, opt_state, jax.random.key(seed + i))
        losses.append(float(loss))
    return params, losses, metrics


@pytest.fixture(scope="module", params=["realnvp", "glow"])
def model_and_params(request):
    """(model, params at init, params after 10 training steps, batch, last metrics)."""
    model = _model(request.param)
    batch = _image_batch()
    params = jax.jit(model.init)(init_key(jax.random.key(0)), batch)
    trained, losses, metrics = _train(model, params, batch, 10, 1e-2)
    assert losses[-1] < losses[0]
    return model, params, trained, batch, (losses[-1], metrics)


def test_whole_flow_is_invertible_with_the_jacobian_log_det(model_and_params):
    model, params, trained, _, _ = model_and_params

    @jax.jit
    def run(params, y):
        z, log_det = model.forward(params, y)
        y_back, inv_log_det = model.inverse(params, z)
        _, jac = jacobian_logdet(lambda v: model.forward(params, v), y[0])
        return z, log_det, y_back, inv_log_det, jac

    y = jax.random.uniform(jax.random.key(1), (3,) + IMG)
    for p in (params, trained):
        z, log_det, y_back, inv_log_det, jac = run(p, y)
        assert z.shape == (3, math.prod(IMG))
        np.testing.assert_allclose(y_back, y, atol=1e-4)
        np.testing.assert_allclose(inv_log_det, -log_det, rtol=1e-5)
        np.testing.assert_allclose(log_det[0], jac, atol=1e-3)
    # training moved the map away from its initial one
    assert not np.allclose(run(params, y)[1], run(trained, y)[1], rtol=1e-3)


def test_log_prob_is_on_the_discrete_data(model_and_params):
    """With the dequantization's -D log L, bits/dim are about the discrete levels: positive
    and, after training on the batch, below the log2(L) of a uniform distribution."""
    loss, metrics = model_and_params[-1]          # of the last training step
    num_dims = math.prod(IMG)
    np.testing.assert_allclose(metrics["bpd"], metrics["nll"] / (num_dims * math.log(2)),
                               rtol=1e-5)
    assert loss == metrics["bpd"] and 0 < loss < math.log2(LEVELS)


def test_encode_decode_and_temperature(model_and_params):
    model, _, trained, batch, _ = model_and_params
    d = math.prod(IMG)
    eps = jax.random.normal(jax.random.key(3), (5, d))

    @jax.jit
    def pictures(params, images):
        back = model.decode(params, model.encode(params, images))
        x = model.sample(params, jax.random.key(3), 5, temperature=0.7)
        path = model.interpolate(params, images[0], images[1], 4)
        return back, x, model.decode(params, 0.7 * eps), path

    back, x, x_eps, path = pictures(trained, batch["image"])
    np.testing.assert_array_equal(back, batch["image"])
    assert x.shape == (5,) + IMG and x.dtype == jnp.uint8 and int(x.max()) < LEVELS
    np.testing.assert_array_equal(x, x_eps)
    np.testing.assert_array_equal(path[0], batch["image"][0])
    np.testing.assert_array_equal(path[-1], batch["image"][1])


def test_actnorm_is_initialised_on_the_batch(model_and_params):
    """The first actnorm sees the pre-processed batch (squeezed for Glow): after init its
    output has zero mean and unit variance per channel on that batch."""
    model, params, _, batch, _ = model_and_params
    norm = params["flow"]["params"]["steps_0"]["norm"]
    y, _ = model.dequantize(jax.random.split(init_key(jax.random.key(0)))[0], batch["image"])
    x, _ = model._preprocess(y)
    if model.layers()[0] == ("squeeze",):
        x = bj.squeeze(x)
    h = x * jnp.exp(norm["log_scale"]) + norm["bias"]
    flat = np.asarray(h).reshape(-1, h.shape[-1])
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(0), 1.0, atol=1e-3)


@pytest.mark.slow
def test_class_conditional_glow():
    model = _model("glow", num_classes=3)
    batch = _image_batch()
    params = jax.jit(model.init)(init_key(jax.random.key(0)), batch)
    trained, _, _ = _train(model, params, batch, 10, 1e-2)
    other = dict(batch, label=(batch["label"] + 1) % 3)

    @jax.jit
    def run(params):
        return (model.log_prob(params, batch, jax.random.key(1)),
                model.log_prob(params, other, jax.random.key(1)),
                model.sample(params, jax.random.key(2), 4),
                model.sample(params, jax.random.key(2), 4, cond=jnp.array([0, 1, 2, 0])))

    log_p, log_p_other, default, cycled = run(trained)
    assert not np.allclose(log_p, log_p_other, rtol=1e-4)
    np.testing.assert_array_equal(default, cycled)   # no labels: classes 0, 1, 2, 0, ...


def test_2d_flow_density_integrates_to_one():
    config = load_sibling(os.path.join(ROOT, "configs", "realnvp_toy2d.py"), "realnvp_toy2d")
    with config.unlocked():
        config.model.update(dict(steps_per_scale=4, hidden=32, num_blocks=1))
    model = build(config.model)
    it, _ = gdata.load("toy2d/moons", "train", 512, shuffle=True)
    batch = next(it)
    params = jax.jit(model.init)(init_key(jax.random.key(0)), batch)
    trained, losses, _ = _train(model, params, batch, 150, 3e-3)
    assert losses[-1] < losses[0] - 0.3
    side = np.linspace(-6.0, 6.0, 241)
    grid = np.stack(np.meshgrid(side, side), -1).reshape(-1, 2).astype(np.float32)
    log_p = jax.jit(model.log_prob)(trained, {"point": grid}, jax.random.key(0))
    mass = float(np.exp(np.asarray(log_p, np.float64)).sum() * (side[1] - side[0]) ** 2)
    assert abs(mass - 1.0) < 0.02, mass
    samples = np.asarray(jax.jit(model.sample, static_argnums=2)(trained, jax.random.key(1), 256))
    assert samples.shape == (256, 2) and np.all(np.abs(samples) < 6)


@pytest.mark.slow
def test_glow_training_stays_finite(tmp_path):
    """glow_digits at tiny width, a high learning rate, no warm-up and no gradient
    clipping for 150 steps, through the trainer (which stops on any non-finite metric)."""
    from genjax.train.trainer import train_and_evaluate

    config = load_sibling(os.path.join(ROOT, "configs", "glow_digits.py"), "glow_digits")
    with config.unlocked():
        config.model.update(dict(steps_per_scale=1, hidden=8))
        config.training.update(dict(batch_size=16, num_steps=150, log_every=10,
                                    checkpoint_every=150, sample_every=0, num_sample_images=4,
                                    progress=False))
        config.optimizer.update(dict(learning_rate=5e-3, warmup_steps=0, grad_clip=0.0))
    state = train_and_evaluate(config, str(tmp_path))
    assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(state.params))
    with open(tmp_path / "metrics.jsonl") as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == 15
    assert all(math.isfinite(v) for line in lines for v in line.values())
    assert lines[-1]["bpd"] < lines[0]["bpd"] - 1.0


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="divisible"):
        _model("glow", num_scales=3)                 # 4x4 cannot be squeezed three times
    with pytest.raises(ValueError, match="preprocess"):
        _model("realnvp", preprocess="none")
    with pytest.raises(ValueError, match="(?i)unknown key"):
        _model("glow", num_steps=3)


def test_glow_without_a_channel_permutation_is_refused():
    with pytest.raises(ValueError, match="same channel half"):
        _model("glow", conv1x1="none")
    _model("realnvp", conv1x1="none")          # RealNVP alternates the halves itself
