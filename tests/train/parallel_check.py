"""Run in a subprocess with 2 forced host devices (see test_parallel.py).

Trains the tiny VAE (or, with the argument ``gan``, the 2-D GAN of
configs/gan_toy2d.py: two optimizers, 2 discriminator phases on strided batch
slices per generator phase; ``score_sde`` or ``flow_matching``, the 2-D models of
configs/score_sde_toy2d.py and configs/flow_matching_toy2d.py with a tiny MLP; ``ebm``,
configs/ebm_toy2d.py with a tiny energy MLP, short chains and its replay buffer) for
2 calls x 2 steps with parallel = none, mesh and pmap from the same state and
batches, and prints the largest parameter and metric differences from the
single-device run as JSON.
"""

import json
import os
import sys

import jax
import numpy as np

from genjax.configs import load_sibling
from genjax.train import step as step_lib
from genjax.train.trainer import _next_batches, build_run, initial_state
from tests.conftest import tiny_vae_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY2D = {"score_sde": "score_sde_toy2d", "flow_matching": "flow_matching_toy2d",
         "ebm": "ebm_toy2d"}
TINY = {"ebm": dict(hidden=8, num_layers=1, langevin_steps=3, buffer_size=64, sample_steps=4)}


def toy2d_config(model_name: str, **training):
    """configs/<model>_toy2d.py with a tiny MLP and a short run."""
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), TOY2D[model_name])
    with config.unlocked():
        config.model.update(TINY.get(model_name, dict(mlp_hidden=8, mlp_blocks=1,
                                                      sample_steps=4)))
        config.optimizer.warmup_steps = 2      # the configs' 100 barely move the parameters
        config.training.update(dict(batch_size=16, num_steps=4, steps_per_call=1, log_every=2,
                                    checkpoint_every=2, num_sample_images=0, progress=False),
                               **training)
    return config


def make(model_name: str, **training):
    if model_name == "gan":
        from tests.train.test_groups import gan_config

        return gan_config(**training)
    if model_name in TOY2D:
        return toy2d_config(model_name, **training)
    return tiny_vae_config(**training)


def run(parallel: str, model_name: str = "vae", optimizer: str = "sgd"):
    config = make(model_name, parallel=parallel, steps_per_call=2)
    # SGD: the parameter differences are the gradient differences times the learning rate.
    # Adam (what the configs use) normalises each coordinate by its own scale, so a
    # float-level difference in a near-zero gradient can move that coordinate by up to the
    # learning rate (see test_parallel.py for what holds).
    with config.unlocked():
        config.optimizer.name = optimizer
        config.optimizer.learning_rate = 1e-3
    model, optimizer, it, info, (tcfg, _, _) = build_run(config)
    state = initial_state(config, model, optimizer, info)
    fn = step_lib.make_train_step(model, optimizer, tcfg.ema_decay, parallel, 2)
    dstate = step_lib.put_state(state, parallel)
    metrics = []
    for _ in range(2):
        dstate, m = fn(dstate, step_lib.put_batch(_next_batches(it, 2), parallel))
        m = jax.device_get(m)
        loss = m["loss"] if "loss" in m else m["discriminator_loss"] + m["generator_loss"]
        metrics.append(loss[0] if parallel == "pmap" else loss)
    final = step_lib.get_state(dstate, parallel)
    return jax.device_get(final), np.concatenate(metrics)


def initial_params(model_name: str):
    """The parameters every run starts from."""
    config = make(model_name)
    model, optimizer, _, info, _ = build_run(config)
    return jax.device_get(initial_state(config, model, optimizer, info).params)


def quantile_diff(a, b, q: float) -> float:
    """The q-quantile over every parameter coordinate of |a - b|."""
    diffs = np.concatenate([np.abs(np.asarray(x) - np.asarray(y)).ravel()
                            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))])
    return float(np.quantile(diffs, q))


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


if __name__ == "__main__":
    assert jax.device_count() == 2, jax.devices()
    model_name = sys.argv[1] if len(sys.argv) > 1 else "vae"
    optimizer = sys.argv[2] if len(sys.argv) > 2 else "sgd"
    ref_state, ref_loss = run("none", model_name, optimizer)
    out = {"devices": jax.device_count()}
    for parallel in ("mesh", "pmap"):
        state, loss = run(parallel, model_name, optimizer)
        out[parallel] = {
            "params": max_diff(state.params, ref_state.params),
            "params_p999": quantile_diff(state.params, ref_state.params, 0.999),
            "params_p99": quantile_diff(state.params, ref_state.params, 0.99),
            "params_median": quantile_diff(state.params, ref_state.params, 0.5),
            "ema": max_diff(state.ema_params, ref_state.ema_params),
            "loss": float(np.max(np.abs(loss - ref_loss))),
            "step": int(state.step),
        }
    out["param_move"] = max_diff(ref_state.params, initial_params(model_name))
    out["param_scale"] = max(float(np.abs(np.asarray(x)).max())
                             for x in jax.tree.leaves(ref_state.params))
    json.dump(out, sys.stdout)
