"""The jitted step: optimizer and EMA update rules, K steps per call, schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.models.protocol import Capabilities
from genjax.train import step as step_lib
from genjax.train.config import OptimizerConfig
from genjax.train.state import init_state, learning_rate_schedule, make_optimizer


class Quadratic:
    """loss = mean((w - x)^2) + noise term: a protocol model small enough to check by hand."""

    capabilities = Capabilities()

    def init(self, rng, batch):
        return {"w": jnp.zeros((3,))}

    def loss(self, params, batch, rng):
        x = batch["x"]
        loss = jnp.mean((params["w"] - x) ** 2)
        return loss, {"loss": loss}


def _batches(k, seed=0):
    return {"x": np.random.default_rng(seed).normal(size=(k, 4, 3)).astype(np.float32)}


def test_one_step_is_sgd_and_ema_rule_with_warmup():
    model, opt = Quadratic(), optax.sgd(0.1)
    batches = _batches(1)
    x = batches["x"][0]
    grad = 2 * (0.0 - x).sum(0) / x.size   # d/dw of mean over (B, 3) of (w - x)^2
    expected = -0.1 * grad
    # Step 0 uses d_0 = min(d, 1 / 10): the cap d binds for d = 0.05, the warm-up for 0.5.
    for decay, d0 in ((0.05, 0.05), (0.5, 0.1)):
        state = init_state(model, opt, jax.random.key(0), None)
        new, metrics = step_lib.make_train_step(model, opt, decay)(state, batches)
        np.testing.assert_allclose(new.params["w"], expected, rtol=1e-6)
        np.testing.assert_allclose(new.ema_params["w"], d0 * 0.0 + (1 - d0) * expected,
                                   rtol=1e-6)
    assert int(new.step) == 1 and metrics["loss"].shape == (1,)


def test_k_steps_per_call_equal_k_calls():
    model, opt = Quadratic(), optax.adam(0.05)
    batches = _batches(4)
    once = step_lib.make_train_step(model, opt, 0.9, steps_per_call=4)(
        init_state(model, opt, jax.random.key(0), None), batches)[0]
    state = init_state(model, opt, jax.random.key(0), None)
    fn = step_lib.make_train_step(model, opt, 0.9)
    for i in range(4):
        state, _ = fn(state, {"x": batches["x"][i:i + 1]})
    np.testing.assert_allclose(once.params["w"], state.params["w"], rtol=1e-6)
    np.testing.assert_allclose(once.ema_params["w"], state.ema_params["w"], rtol=1e-6)
    assert int(once.step) == int(state.step) == 4


def test_warmup_then_cosine_schedule():
    sched = learning_rate_schedule(
        OptimizerConfig(learning_rate=1.0, warmup_steps=10, schedule="cosine"), num_steps=110)
    assert float(sched(0)) == 0.0
    np.testing.assert_allclose(float(sched(5)), 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(sched(10)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(sched(60)), 0.5, rtol=1e-5)   # half-way down the cosine
    np.testing.assert_allclose(float(sched(110)), 0.0, atol=1e-6)
    constant = learning_rate_schedule(OptimizerConfig(learning_rate=0.3), num_steps=10)
    assert float(constant(7)) == np.float32(0.3)


def test_gradient_clipping_is_applied_before_adam():
    config = OptimizerConfig(name="adam", learning_rate=1.0, grad_clip=1.0)
    params = {"w": jnp.zeros(3)}
    steps = [{"w": jnp.array([300.0, -400.0, 0.0])}, {"w": jnp.array([0.1, 0.2, -0.1])}]

    def run(opt):
        opt_state, out = opt.init(params), []
        for g in steps:
            u, opt_state = opt.update(g, opt_state, params)
            out.append(np.asarray(u["w"]))
        return out

    clipped = run(make_optimizer(config, 10))
    manual = run(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1.0)))
    plain = run(optax.adam(1.0))
    np.testing.assert_allclose(clipped[1], manual[1], rtol=1e-6)
    assert not np.allclose(clipped[1], plain[1], rtol=1e-3)


def test_weight_decay_is_decoupled_and_needs_adamw():
    """With a zero gradient, adamw's update is -lr * lambda * w exactly (decoupled decay:
    it bypasses Adam's moments); any other optimizer refuses a weight decay."""
    config = OptimizerConfig(name="adamw", learning_rate=0.1, weight_decay=0.01)
    params = {"w": jnp.array([2.0, -1.0, 0.5])}
    opt = make_optimizer(config, 10)
    update, _ = opt.update({"w": jnp.zeros(3)}, opt.init(params), params)
    np.testing.assert_allclose(update["w"], -0.1 * 0.01 * params["w"], rtol=1e-6)
    for name in ("adam", "sgd", "rmsprop"):
        with pytest.raises(ValueError, match="weight_decay"):
            OptimizerConfig(name=name, weight_decay=0.01)
