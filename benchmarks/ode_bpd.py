"""Bits/dim of a trained score SDE or flow-matching run through its ODE likelihood, on the
first ``--num_examples`` images of a split, with the solver's function evaluations.

    python benchmarks/ode_bpd.py --workdir runs/score_vp --num_examples 64
    python benchmarks/ode_bpd.py --workdir runs/score_vp --num_examples 64 --solver tsit5

The same computation as ``genjax eval``'s likelihood (``model.log_prob_stats`` through
:func:`genjax.eval.likelihood.nll_and_stats_on_split`, key ``--seed``), without the sample
metrics, with the solver (``rk4``: the run's ``log_prob_steps`` fixed steps, or the adaptive
``tsit5`` / ``dopri5`` with ``--tol`` as rtol and atol) and the trace chosen here. Prints one
JSON line.
"""

from __future__ import annotations

import json
import math
import time

import jax
import numpy as np
from absl import app, flags

from genjax import data as gdata
from genjax import models
from genjax.eval.likelihood import nll_and_stats_on_split
from genjax.train.trainer import load_run

flags.DEFINE_string("workdir", None, "A trained score_sde or flow_matching run.")
flags.DEFINE_integer("num_examples", 64, "First examples of the split.")
flags.DEFINE_string("split", "test", "Split.")
flags.DEFINE_enum("solver", "rk4", ["rk4", "tsit5", "dopri5"], "Likelihood ODE solver.")
flags.DEFINE_float("tol", 1e-5, "rtol = atol of an adaptive solver.")
flags.DEFINE_enum("trace", None, ["exact", "hutchinson"], "Divergence (default: the run's).")
flags.DEFINE_integer("seed", 0, "Dequantization and probe key.")
FLAGS = flags.FLAGS


def main(_):
    config, _, state, info = load_run(FLAGS.workdir)
    with config.unlocked():
        config.model.log_prob_solver = FLAGS.solver
        config.model.log_prob_rtol = config.model.log_prob_atol = FLAGS.tol
        if FLAGS.trace:
            config.model.log_prob_trace = FLAGS.trace
    model = models.build(config.model)
    batches, _ = gdata.load(config.data.name, FLAGS.split, FLAGS.num_examples, shuffle=False,
                            num_epochs=1, drop_remainder=False)
    start = time.perf_counter()
    nll, stats = nll_and_stats_on_split(model, state.ema_params, batches,
                                        jax.random.key(FLAGS.seed),
                                        max_examples=FLAGS.num_examples)
    bpd = nll / (math.prod(info.shape) * math.log(2.0))
    print(json.dumps({
        "workdir": FLAGS.workdir, "model": config.model.name, "step": int(state.step),
        "split": FLAGS.split, "num_examples": len(nll), "solver": FLAGS.solver,
        "trace": config.model.log_prob_trace, "bits_per_dim": float(bpd.mean()),
        "bits_per_dim_stderr": float(bpd.std(ddof=1) / np.sqrt(len(bpd))),
        "nfe": float(stats["nfe"].mean()) if "nfe" in stats else None,
        "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
