"""Run in a subprocess with 2 forced host devices (see test_parallel_state.py).

Trains the tiny VQ-VAE (EMA codebook of 64 codes, restart after 1 unused step, so
codes are re-seeded during the run) for 2 calls x 2 steps with parallel = none, mesh and
pmap from the same state and batches, and prints the largest differences of the
trainable params, the non-trainable state and the metrics from the single-device
run as JSON.
"""

import json
import sys

import jax
import numpy as np

from genjax.train import step as step_lib
from genjax.train.state import split_state
from genjax.train.trainer import _next_batches, build_run, initial_state
from tests.models.test_vqvae import tiny_vqvae_config


def run(parallel: str):
    config = tiny_vqvae_config(parallel=parallel, steps_per_call=2)
    with config.unlocked():
        config.optimizer.name = "sgd"          # see parallel_check.py: not Adam
        config.optimizer.learning_rate = 1e-3
        config.model.num_codes = 64            # more codes than a batch uses: restarts happen
        config.model.dead_window = 1
    model, optimizer, it, info, (tcfg, _, _) = build_run(config)
    state = initial_state(config, model, optimizer, info)
    fn = step_lib.make_train_step(model, optimizer, tcfg.ema_decay, parallel, 2)
    dstate = step_lib.put_state(state, parallel)
    metrics = []
    for _ in range(2):
        dstate, m = fn(dstate, step_lib.put_batch(_next_batches(it, 2), parallel))
        m = jax.device_get(m)
        metrics.append({k: v[0] if parallel == "pmap" else v for k, v in m.items()})
    final = jax.device_get(step_lib.get_state(dstate, parallel))
    stacked = {k: np.concatenate([m[k] for m in metrics]) for k in metrics[0]}
    return model, final, stacked


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


if __name__ == "__main__":
    assert jax.device_count() == 2, jax.devices()
    model, ref, ref_metrics = run("none")
    out = {"devices": jax.device_count(),
           "restarted": float(ref_metrics["dead_codes"].sum())}
    for parallel in ("mesh", "pmap"):
        _, state, metrics = run(parallel)
        out[parallel] = {
            "params": max_diff(split_state(model, state.params)[0],
                               split_state(model, ref.params)[0]),
            "state": max_diff(state.params["state"], ref.params["state"]),
            "ema": max_diff(state.ema_params, ref.ema_params),
            "metrics": {k: float(np.max(np.abs(metrics[k] - ref_metrics[k])))
                        for k in ("loss", "perplexity", "usage", "dead_codes")},
            "step": int(state.step),
        }
    json.dump(out, sys.stdout)
