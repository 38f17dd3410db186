"""Autoregressive samplers: the one-jit ``lax.fori_loop`` vs a Python loop over a jitted step,
and, for the transformer, the key/value cache vs re-running the whole sequence.

    python benchmarks/ar_sampler_speed.py --config configs/gated_pixelcnn.py [--num 16]
    python benchmarks/ar_sampler_speed.py --config configs/pixel_transformer.py --num 16

The Python loop runs exactly the body of the fori_loop (network on the canvas, draw unit t,
write it) as a jitted step per position. Parameters come from initialisation (speed does
not depend on training). Prints one JSON line: seconds per sampling call and the ratios.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags
from timing import best_seconds, image_model

from genjax.models.autoregressive import (GatedPixelCNNModel, PixelCNNModel, PixelTransformer,
                                          WaveNetModel)

_CONFIG = config_flags.DEFINE_config_file("config", None, "An autoregressive config file.",
                                          lock_config=True)
flags.DEFINE_integer("num", 16, "Samples per call.")
flags.DEFINE_integer("repeats", 3, "Timed calls (the best is reported).")
FLAGS = flags.FLAGS


def _best(fn, *args) -> float:
    return best_seconds(fn, *args, repeats=FLAGS.repeats)


def main(_):
    n = FLAGS.num
    model, params, label = image_model(_CONFIG.value.model, n)
    rng = jax.random.key(1)

    # the one-jit loop that re-runs the network (not the activation caches of
    # benchmarks/ar_cached_sampling.py), like the Python loop below
    rerun = {"use_cache": False} if isinstance(
        model, (PixelCNNModel, GatedPixelCNNModel, WaveNetModel)) else {}
    fori = jax.jit(lambda p, k: model.sample(p, k, n, label, **rerun))

    @jax.jit
    def one_step(p, units, t, k):
        out = model._apply(p, model._inputs(model._image(units)), label)
        new = model.sample_unit(jax.random.fold_in(k, t), jnp.take(out, t, axis=1))
        return jax.lax.dynamic_update_index_in_dim(units, new, t, axis=1)

    def python_loop(p, k):
        units = jnp.zeros((n, model.num_units, model.unit_size), jnp.int32)
        for t in range(model.num_units):
            units = one_step(p, units, t, k)
        return units

    result = {"config": _CONFIG.value.model.name, "num": n, "positions": model.num_units,
              "backend": jax.default_backend()}
    if isinstance(model, PixelTransformer):
        recompute = jax.jit(lambda p, k: model.sample(p, k, n, label, use_cache=False))
        result["kv_cache_s"] = _best(fori, params, rng)
        result["recompute_fori_s"] = _best(recompute, params, rng)
        result["python_loop_recompute_s"] = _best(python_loop, params, rng)
        result["cache_speedup"] = result["recompute_fori_s"] / result["kv_cache_s"]
        result["fori_vs_python_loop"] = (result["python_loop_recompute_s"]
                                         / result["recompute_fori_s"])
    else:
        result["fori_s"] = _best(fori, params, rng)
        result["python_loop_s"] = _best(python_loop, params, rng)
        result["fori_vs_python_loop"] = result["python_loop_s"] / result["fori_s"]
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
