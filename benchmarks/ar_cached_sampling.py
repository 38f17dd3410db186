"""Cached sampling (genjax/nn/cached.py) vs re-running the network per unit, for PixelCNN,
Gated PixelCNN and WaveNet.

    python benchmarks/ar_cached_sampling.py --config configs/pixelcnn.py --num 16
    python benchmarks/ar_cached_sampling.py --config configs/gated_pixelcnn.py --num 16
    python benchmarks/ar_cached_sampling.py --config configs/wavenet.py --num 16

Both samplers are one jitted ``lax.fori_loop`` over the units with the same keys. Parameters
come from initialisation, perturbed so that the conditionals are not all alike (speed does
not depend on them). Prints one JSON line: seconds per sampling call (best of ``repeats``
after a compiling call), the speedup, and whether the two drew the same samples.
"""

from __future__ import annotations

import json

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags
from timing import best_seconds, image_model


_CONFIG = config_flags.DEFINE_config_file("config", None, "A pixelcnn, gated_pixelcnn or "
                                          "wavenet config file.", lock_config=True)
flags.DEFINE_integer("num", 16, "Samples per call.")
flags.DEFINE_integer("repeats", 3, "Timed calls (the best is reported).")
FLAGS = flags.FLAGS


def main(_):
    n = FLAGS.num
    model, params, label = image_model(_CONFIG.value.model, n, noise=0.1)
    rng = jax.random.key(1)
    cached = jax.jit(lambda p, k: model.sample(p, k, n, label))
    rerun = jax.jit(lambda p, k: model.sample(p, k, n, label, use_cache=False))
    result = {"config": _CONFIG.value.model.name, "num": n, "positions": model.num_units,
              "backend": jax.default_backend()}
    result["cached_s"] = best_seconds(cached, params, rng, repeats=FLAGS.repeats)
    result["rerun_s"] = best_seconds(rerun, params, rng, repeats=FLAGS.repeats)
    result["speedup"] = result["rerun_s"] / result["cached_s"]
    result["same_samples"] = bool(np.array_equal(cached(params, rng), rerun(params, rng)))
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
