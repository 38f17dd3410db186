"""Train steps/s and samples/s of a config, measured after compilation.

    python benchmarks/train_speed.py --config configs/vae_digits.py [--steps 200] \
        [--config.training.steps_per_call=10]

Prints one JSON line: compile seconds, steps/s, images/s for training, and
samples/s for ``model.sample`` at the config's ``num_sample_images``.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from genjax.train import step as step_lib
from genjax.train.trainer import _next_batches, build_run, initial_state

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
flags.DEFINE_integer("steps", 200, "Timed train steps (after one compile call).")
flags.DEFINE_integer("repeats", 5, "Timed sampling calls.")
FLAGS = flags.FLAGS


def main(_):
    config = _CONFIG.value
    model, optimizer, it, info, (tcfg, _, _) = build_run(config)
    k, parallel = tcfg.steps_per_call, tcfg.parallel
    fn = step_lib.make_train_step(model, optimizer, tcfg.ema_decay, parallel, k)
    state = step_lib.put_state(initial_state(config, model, optimizer, info), parallel)

    start = time.perf_counter()
    state, m = fn(state, step_lib.put_batch(_next_batches(it, k), parallel))
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - start

    calls = max(FLAGS.steps // k, 1)
    host = [step_lib.put_batch(_next_batches(it, k), parallel) for _ in range(calls)]
    start = time.perf_counter()
    for batch in host:
        state, m = fn(state, batch)
    jax.block_until_ready((state, m))
    train_s = time.perf_counter() - start

    sample = jax.jit(model.sample, static_argnums=2)
    params = step_lib.get_state(state, parallel).ema_params
    n = tcfg.num_sample_images
    jax.block_until_ready(sample(params, jax.random.key(0), n))
    start = time.perf_counter()
    for i in range(FLAGS.repeats):
        out = sample(params, jax.random.key(i + 1), n)
    jax.block_until_ready(out)
    sample_s = time.perf_counter() - start

    steps = calls * k
    print(json.dumps({
        "model": config.model.name, "dataset": config.data.name,
        "device": str(jax.devices()[0].platform), "num_devices": jax.device_count(),
        "batch_size": tcfg.batch_size, "steps_per_call": k,
        "compile_s": round(compile_s, 2),
        "train_steps_per_s": round(steps / train_s, 1),
        "train_images_per_s": round(steps * tcfg.batch_size / train_s, 1),
        "samples_per_s": round(FLAGS.repeats * n / sample_s, 1),
        "final_loss": float(np.asarray(m["loss"]).ravel()[-1]),
    }))


if __name__ == "__main__":
    app.run(main)
