"""Peak temporary memory of a config's compiled train step with and without ``model.remat``.

    python benchmarks/remat_memory.py [--config configs/ddpm_cifar_bench.py] \
        [--config.model.base_channels=32 --config.training.batch_size=32 ...]

Compiles (does not run) the trainer's jitted step (forward, backward, optimizer, EMA) for
``model.remat`` False and True and reads XLA's buffer assignment through
``jax.jit(step).lower(state, batch).compile().memory_analysis()``: ``temp_size_in_bytes``
is the scratch memory the step needs besides its arguments and outputs, where the
activations kept for the backward pass live. Prints one JSON line.

On CPU, XLA removes the optimization barriers that ``jax.checkpoint`` puts in front of
the recomputation ("cse_barrier_expander") before common-subexpression elimination,
which then merges the recomputation into the forward pass: remat changes nothing there
(measured: the same bytes). This script therefore disables that pass (XLA_FLAGS
``--xla_disable_hlo_passes=cse_barrier_expander``, set before jax starts) unless
``--keep_barrier_expander`` is given (to measure the pipeline as it is, e.g. on a GPU,
where this has not been measured yet).
"""

from __future__ import annotations

import os
import sys

KEEP_FLAG = "--keep_barrier_expander"
if KEEP_FLAG not in sys.argv:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_disable_hlo_passes=cse_barrier_expander").strip()

import json      # noqa: E402
import time      # noqa: E402

import jax       # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from genjax import models  # noqa: E402
from genjax.train import step as step_lib  # noqa: E402
from genjax.train.config import from_config  # noqa: E402
from genjax.train.state import init_state, make_optimizer  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs",
                           "ddpm_cifar_bench.py"), "Config file.", lock_config=True)
flags.DEFINE_bool(KEEP_FLAG[2:], False, "Keep XLA's cse_barrier_expander pass (CPU: remat "
                  "is then merged away).")
FLAGS = flags.FLAGS


def compiled_memory(config, remat: bool) -> dict:
    """{"temp_bytes", "argument_bytes", "output_bytes", "compile_s"} of the train step."""
    with config.unlocked():
        config.model.remat = remat
    tcfg, ocfg, _ = from_config(config)
    model = models.build(config.model)
    optimizer = make_optimizer(ocfg, tcfg.num_steps, model)
    shape = (tcfg.batch_size,) + tuple(model.config.image_shape)
    batch = {"image": jax.ShapeDtypeStruct(shape, jnp.uint8)}
    state = jax.eval_shape(lambda b: init_state(model, optimizer, jax.random.key(0), b),
                           {"image": jax.ShapeDtypeStruct((8,) + shape[1:], jnp.uint8)})
    batches = {k: jax.ShapeDtypeStruct((1,) + v.shape, v.dtype) for k, v in batch.items()}
    step = step_lib.make_train_step(model, optimizer, tcfg.ema_decay, "none", 1)
    start = time.perf_counter()
    stats = step.lower(state, batches).compile().memory_analysis()
    return {"temp_bytes": int(stats.temp_size_in_bytes),
            "argument_bytes": int(stats.argument_size_in_bytes),
            "output_bytes": int(stats.output_size_in_bytes),
            "compile_s": round(time.perf_counter() - start, 1)}


def main(_):
    config = _CONFIG.value
    m = config.model
    result = {"model": m.name, "image_shape": list(m.image_shape),
              "base_channels": m.get("base_channels"),
              "channel_mults": list(m.get("channel_mults", ())),
              "batch_size": config.training.batch_size,
              "compute_dtype": m.get("compute_dtype"), "backend": jax.default_backend(),
              "cse_barrier_expander": FLAGS.keep_barrier_expander}
    for remat in (False, True):
        for key, value in compiled_memory(config, remat).items():
            result[f"{key}{'_remat' if remat else ''}"] = value
    result["temp_ratio"] = round(result["temp_bytes_remat"] / result["temp_bytes"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
