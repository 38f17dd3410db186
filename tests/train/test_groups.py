"""Parameter groups and update phases: each phase moves only its group, n_critic repeats,
frozen groups under adamw, per-group optimizers, exact resume of a two-optimizer run."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import models
from genjax.configs import load_sibling
from genjax.models.protocol import DEFAULT_GROUP, FROZEN, Capabilities, Phase, UpdateRule
from genjax.train import step as step_lib
from genjax.train.config import OptimizerConfig
from genjax.train.state import init_state, make_optimizer
from genjax.train.trainer import train_and_evaluate
from tests.train.test_trainer import assert_resumes_bit_exactly, assert_trees_equal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def gan_config(**training):
    """configs/gan_toy2d.py with small networks and a short run."""
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), "gan_toy2d")
    with config.unlocked():
        config.model.update(hidden=8, num_layers=1)
        config.training.update(dict(batch_size=16, num_steps=6, steps_per_call=1, log_every=2,
                                    checkpoint_every=2, num_sample_images=0, progress=False),
                               **training)
    return config


class OnlyPhase:
    """``model`` with its update rule cut to the phase named ``label``."""

    def __init__(self, model, label: str):
        self.model, self.label = model, label
        self.config, self.capabilities = model.config, model.capabilities
        self.init, self.loss = model.init, model.loss

    def update_rule(self) -> UpdateRule:
        rule = self.model.update_rule()
        return dataclasses.replace(rule, phases=tuple(p for p in rule.phases
                                                      if p.label == self.label))


def _batch(n=16, seed=0):
    return {"point": np.random.default_rng(seed).normal(size=(1, n, 2)).astype(np.float32)}


def _adam_counts(opt_state) -> int:
    return int(next(leaf for leaf in jax.tree.leaves(opt_state)
                    if jnp.issubdtype(leaf.dtype, jnp.integer)))


@pytest.fixture(scope="module")
def gan():
    return models.build(gan_config().model)


@pytest.mark.parametrize("moved,kept", [("discriminator", "generator"),
                                        ("generator", "discriminator")])
def test_a_phase_moves_only_its_own_group(gan, moved, kept):
    model = OnlyPhase(gan, moved)
    opt = make_optimizer(OptimizerConfig(learning_rate=1e-2), 10, model)
    state = init_state(model, opt, jax.random.key(0), _batch())
    before = jax.device_get(state)                 # the step donates its input
    new, metrics = step_lib.make_train_step(model, opt, 0.9)(state, _batch())
    state = before
    assert_trees_equal(new.params[kept], state.params[kept])
    assert_trees_equal(new.opt_state[kept], state.opt_state[kept])
    assert not np.array_equal(jax.tree.leaves(new.params[moved])[0],
                              jax.tree.leaves(state.params[moved])[0])
    assert _adam_counts(new.opt_state[moved]) == (gan.config.n_critic if moved ==
                                                  "discriminator" else 1)


@pytest.mark.parametrize("n_critic", [1, 3])
def test_n_critic_discriminator_updates_per_step(n_critic):
    config = gan_config()
    with config.unlocked():
        config.model.n_critic = n_critic
    model = models.build(config.model)
    opt = make_optimizer(OptimizerConfig(), 10, model)
    state = init_state(model, opt, jax.random.key(0), _batch(24))
    fn = step_lib.make_train_step(model, opt, 0.9)
    for _ in range(2):
        state, metrics = fn(state, _batch(24))
    assert _adam_counts(state.opt_state["discriminator"]) == 2 * n_critic
    assert _adam_counts(state.opt_state["generator"]) == 2
    assert {"discriminator_loss", "generator_loss", "discriminator_grad_norm",
            "generator_grad_norm"} <= set(metrics)
    # The EMA follows the generator; the discriminator is copied.
    assert_trees_equal(state.ema_params["discriminator"], state.params["discriminator"])
    assert not np.array_equal(jax.tree.leaves(state.ema_params["generator"])[0],
                              jax.tree.leaves(state.params["generator"])[0])


def test_split_batch_phases_see_disjoint_strided_slices():
    seen = []

    class Recorder:
        capabilities = Capabilities(param_groups=True)
        config = None

        def init(self, rng, batch):
            return {"w": jnp.zeros(())}

        def loss(self, params, batch, rng):
            jax.debug.callback(seen.append, batch["x"])
            return params["w"] ** 2, {}

        def sample(self, params, rng, n, cond=None):
            return jnp.zeros((n,))

        def update_rule(self):
            return UpdateRule({"g": ("w",)}, (Phase("g", self.loss, repeat=3, split_batch=True),))

    model, opt = Recorder(), optax.sgd(0.1)
    x = np.arange(6, dtype=np.float32)[None]
    step_lib.make_train_step(model, opt, 0.9)(init_state(model, opt, jax.random.key(0), None),
                                              {"x": x})
    jax.effects_barrier()
    assert [list(map(float, s)) for s in seen] == [[0, 3], [1, 4], [2, 5]]


class FrozenPart:
    """loss = mean((w * pre - x)^2): ``pre`` has a real gradient but is in the frozen group."""

    capabilities = Capabilities(param_groups=True)
    config = None

    def init(self, rng, batch):
        return {"w": jnp.ones((3,)), "pre": jnp.full((3,), 2.0)}

    def loss(self, params, batch, rng):
        loss = jnp.mean((params["w"] * params["pre"] - batch["x"]) ** 2)
        return loss, {"loss": loss}

    def sample(self, params, rng, n, cond=None):
        return jnp.zeros((n, 3))

    def update_rule(self):
        return UpdateRule({DEFAULT_GROUP: None, FROZEN: ("pre",)},
                          (Phase(DEFAULT_GROUP, self.loss),))


def test_frozen_group_is_untouched_by_adamw_and_has_no_moments():
    model = FrozenPart()
    config = OptimizerConfig(name="adamw", learning_rate=0.1, weight_decay=0.1)
    opt = make_optimizer(config, 10, model)
    state = init_state(model, opt, jax.random.key(0), None)
    assert jax.tree.leaves(state.opt_state[FROZEN]) == []         # no moments at all
    fn = step_lib.make_train_step(model, opt, 0.9)
    batch = {"x": np.random.default_rng(0).normal(size=(1, 4, 3)).astype(np.float32)}
    first = jax.device_get(state.params)           # the step donates its input
    for _ in range(10):
        state, _ = fn(state, batch)
    np.testing.assert_array_equal(state.params["pre"], first["pre"])
    np.testing.assert_array_equal(state.ema_params["pre"], first["pre"])
    assert np.abs(np.asarray(state.params["w"]) - 1.0).max() > 0.1
    # The same optimizer over everything would have moved (and decayed) it.
    plain = optax.adamw(0.1, weight_decay=0.1)
    grads = jax.grad(lambda p: model.loss(p, {"x": batch["x"][0]}, None)[0])(first)
    updates, _ = plain.update(grads, plain.init(first), first)
    assert np.abs(np.asarray(updates["pre"])).max() > 0


def test_per_group_optimizer_settings():
    model = models.build(gan_config().model)
    config = OptimizerConfig(learning_rate=1e-3, b1=0.5,
                             groups={"discriminator": {"learning_rate": 2e-3}})
    assert config.for_group("discriminator").learning_rate == 2e-3
    assert config.for_group("discriminator").b1 == 0.5          # inherited
    assert config.for_group("generator").learning_rate == 1e-3
    with pytest.raises(ValueError, match="not parameter groups"):
        make_optimizer(OptimizerConfig(groups={"critic": {}}), 10, model)
    with pytest.raises(ValueError, match="valid keys"):
        OptimizerConfig(groups={"discriminator": {"lr": 1.0}})


def test_two_optimizer_run_resumes_bit_exactly(tmp_path, monkeypatch):
    config = gan_config()
    reference = train_and_evaluate(config, str(tmp_path / "ref"))
    resumed = assert_resumes_bit_exactly(config, reference, tmp_path, monkeypatch)
    assert set(resumed.opt_state) == {"generator", "discriminator"}


def test_architecture_doc_shows_the_worked_example_whole():
    doc = open(os.path.join(ROOT, "docs", "architecture.md")).read()
    source = open(os.path.join(ROOT, "genjax", "models", "toy_gan.py")).read()
    assert f"```python\n{source}```" in doc


def test_gan_trains_from_the_cli(tmp_path):
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "genjax.cli", "train", "--config",
         os.path.join(ROOT, "configs", "gan_toy2d.py"), "--workdir", str(tmp_path),
         "--config.training.num_steps=4", "--config.training.log_every=2",
         "--config.training.num_sample_images=0", "--config.training.progress=False",
         "--config.model.hidden=8"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [m["step"] for m in lines] == [2, 4]
    assert {"discriminator_loss", "generator_loss"} <= set(lines[-1])
