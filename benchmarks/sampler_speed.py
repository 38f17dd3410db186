"""The one-jit ``lax.fori_loop`` DDIM sampler vs a Python loop over a jitted step.

    python benchmarks/sampler_speed.py --config configs/ddpm_digits.py [--steps 50] [--num 16]

Both run the same network and the same DDIM update for ``--steps`` steps on
``--num`` samples (parameters from initialisation: speed does not depend on
training). Prints one JSON line with seconds per sample call and the ratio.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from genjax.core import diffusion as dm
from genjax.core.random import init_key
from genjax.models import build

_CONFIG = config_flags.DEFINE_config_file("config", None, "A ddpm config file.", lock_config=True)
flags.DEFINE_integer("steps", 50, "DDIM steps.")
flags.DEFINE_integer("num", 16, "Samples per call.")
flags.DEFINE_integer("repeats", 3, "Timed calls.")
FLAGS = flags.FLAGS


def main(_):
    model = build(_CONFIG.value.model)
    shape = (FLAGS.num,) + model.x_shape
    params = jax.jit(model.init)(init_key(jax.random.key(0)),
                                 {model.config.data_key: jnp.zeros(shape, jnp.uint8)})
    T, n = model.config.num_timesteps, FLAGS.steps
    cond = jnp.zeros((FLAGS.num,), jnp.int32) if model.config.num_classes else None

    scan_sample = jax.jit(lambda p, k: model._reverse(
        p, k, jax.random.normal(k, shape), cond, num_steps=n, eta=0.0, guidance_scale=0.0))

    @jax.jit
    def one_step(p, x, i, key):
        t = T - 1 - (i * T) // n
        t_prev = jnp.where(i + 1 < n, T - 1 - ((i + 1) * T) // n, -1)
        tb = jnp.full((FLAGS.num,), t)
        x0, eps = model._x0_eps(p, x, tb, cond, 0.0)
        return dm.ddim_step(model.schedule, x, tb, jnp.full((FLAGS.num,), t_prev), x0, eps,
                            key, eta=0.0)

    def loop_sample(p, k):
        x = jax.random.normal(k, shape)
        for i in range(n):
            x = one_step(p, x, i, k)
        return x

    timings = {}
    for name, fn in (("fori_loop", scan_sample), ("python_loop", loop_sample)):
        jax.block_until_ready(fn(params, jax.random.key(0)))
        start = time.perf_counter()
        for r in range(FLAGS.repeats):
            out = fn(params, jax.random.key(r + 1))
        jax.block_until_ready(out)
        timings[name] = (time.perf_counter() - start) / FLAGS.repeats
    a = scan_sample(params, jax.random.key(9))
    b = loop_sample(params, jax.random.key(9))
    print(json.dumps({
        "device": jax.devices()[0].platform, "steps": n, "num_samples": FLAGS.num,
        "fori_loop_s": round(timings["fori_loop"], 4),
        "python_loop_s": round(timings["python_loop"], 4),
        "speedup": round(timings["python_loop"] / timings["fori_loop"], 2),
        "max_abs_difference": float(jnp.abs(a - b).max()),
    }))


if __name__ == "__main__":
    app.run(main)
