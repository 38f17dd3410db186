"""Token prior sampler: the key/value cache vs re-running the whole sequence at every step.

    python benchmarks/token_sampler_speed.py --config configs/token_prior_digits.py \
        --config.model.vqvae_workdir=runs/vqvae_digits [--num 64]
    python benchmarks/token_sampler_speed.py --config configs/text2img_shapes.py \
        --config.model.vqvae_workdir=runs/vqvae_shapes --prompt "a large square in the top left"

Both samplers are one jitted ``lax.fori_loop`` over the T positions (text, then codes) and
draw the same codes for the same key (tests/models/test_token_prior.py); the cached one
runs one decode step of O(t) per position, the other the whole [N, T] sequence, O(T^2)
attention per step. Transformer parameters come from initialisation (speed does not
depend on training; the VQ-VAE is the trained one of ``vqvae_workdir``). Codes only, not
decoded. Prints one JSON line: seconds per sampling call (best of ``--repeats``) and ratio.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags
from timing import best_seconds

from genjax.models import build

_CONFIG = config_flags.DEFINE_config_file("config", None, "A token_prior config file.",
                                          lock_config=True)
flags.DEFINE_integer("num", 64, "Samples per call.")
flags.DEFINE_integer("repeats", 3, "Timed calls (the best is reported).")
flags.DEFINE_string("prompt", None, "Caption (text-conditioned configs).")
flags.DEFINE_float("guidance_scale", 0.0, "Classifier-free guidance weight (0: none).")
FLAGS = flags.FLAGS


def _best(fn, *args) -> float:
    return best_seconds(fn, *args, repeats=FLAGS.repeats)


def main(_):
    model = build(_CONFIG.value.model)
    n = FLAGS.num
    batch = {"image": jnp.zeros((n,) + tuple(model.config.image_shape), jnp.uint8)}
    params = jax.jit(model.init)(jax.random.key(0), batch)
    draw = functools.partial(model.sample_codes, num_samples=n, prompt=FLAGS.prompt,
                             guidance_scale=FLAGS.guidance_scale)
    cached = jax.jit(lambda p, k: draw(p, k))
    recompute = jax.jit(lambda p, k: draw(p, k, use_cache=False))
    rng = jax.random.key(1)
    result = {"config": _CONFIG.value.model.conditioning, "num": n,
              "positions": model.text_len + model.num_image_tokens,
              "dim": model.config.dim, "layers": model.config.num_layers,
              "guidance_scale": FLAGS.guidance_scale, "backend": jax.default_backend(),
              "same_codes": bool((cached(params, rng) == recompute(params, rng)).all())}
    result["kv_cache_s"] = _best(cached, params, rng)
    result["recompute_s"] = _best(recompute, params, rng)
    result["cache_speedup"] = result["recompute_s"] / result["kv_cache_s"]
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    app.run(main)
