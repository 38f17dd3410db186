"""Sample quality against the number of sampling steps, for trained runs of several families:
FID for digits images, 2-Wasserstein distance and MMD^2 to held-out points for toy2d.

    python benchmarks/nfe_fid.py --steps 1,2,5,10,20,50,100 --num 500 \
        --run "DDPM ancestral=runs/ddpm_digits:sampler=ddim,eta=1" \
        --run "DDIM=runs/ddpm_digits:sampler=ddim,eta=0" \
        --run "score VP, PC=runs/score_vp:sampler=pc" \
        --run "score VP, PF-ODE=runs/score_vp:sampler=ode" \
        --run "flow matching, Heun=runs/fm_digits:sampler=heun" \
        --run "rectified flow after reflow, Euler=runs/fm_digits_reflow:sampler=euler"

Each ``--run`` is ``LABEL=WORKDIR[:field=value,...]``: the run's EMA parameters (latest
checkpoint) with its model config changed by the given fields (``sampler``; ``eta`` is passed
to ``sample``, as is the step count). Samples are drawn ``--batch`` at a time with one jitted
``sample`` per run (the step count is traced); FID uses the shipped digits features against
the test split. DDPM ancestral sampling with fewer steps than the chain is DDIM with eta = 1
on the strided timesteps. The number of network evaluations (NFE) per step is the
sampler's: 1 for DDPM/DDIM, Euler and Euler-Maruyama, 2 for Heun and for predictor-corrector
with one corrector move.
Prints one JSON line per (run, steps) and a markdown table of FID (NFE in brackets). On a
point dataset (toy2d) the metric is ``w2_to_test`` / ``mmd_to_test`` of ``genjax eval``
against ``--num`` held-out test points:

    python benchmarks/nfe_fid.py --steps 1,2,5,10,20,50,100 --num 1000 --batch 1000 \
        --run "DDIM=runs/ddpm_toy2d:sampler=ddim,eta=0" \
        --run "flow matching, Euler=runs/fm_toy2d:sampler=euler"
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np
from absl import app, flags

from genjax import models
from genjax.core import metrics
from genjax.eval import digits_features
from genjax.eval.report import split_points
from genjax.eval.samples import reference_features
from genjax.train.trainer import load_run

flags.DEFINE_multi_string("run", [], "LABEL=WORKDIR[:field=value,...]")
flags.DEFINE_string("steps", "1,2,5,10,20,50,100", "Step counts.")
flags.DEFINE_integer("num", 500, "Samples per FID.")
flags.DEFINE_integer("batch", 250, "Samples per sample call.")
flags.DEFINE_integer("seed", 1, "Sampling seed.")
flags.DEFINE_string("split", "test", "Reference split.")
FLAGS = flags.FLAGS

EVALS_PER_STEP = {"ddpm": 1, "ddim": 1, "em": 1, "euler": 1, "heun": 2, "ode": 2}


def _parse(spec: str):
    label, rest = spec.split("=", 1)
    workdir, _, opts = rest.partition(":")
    fields = dict(o.split("=", 1) for o in opts.split(",") if o)
    return label, workdir, fields


def _nfe_per_step(model) -> int:
    c = model.config
    if c.sampler == "pc":
        return 1 + c.corrector_steps
    return EVALS_PER_STEP[c.sampler]


def main(_):
    steps = [int(s) for s in FLAGS.steps.split(",")]
    rows, floor = [], None
    for spec in FLAGS.run:
        label, workdir, fields = _parse(spec)
        config, model, state, info = load_run(workdir)
        eta = float(fields.pop("eta")) if "eta" in fields else None
        if fields:
            with config.unlocked():
                for k, v in fields.items():
                    config.model[k] = type(config.model[k])(v)
            model = models.build(config.model)
        kwargs = {} if eta is None else {"eta": eta}
        sample = jax.jit(lambda p, k, s: model.sample(p, k, FLAGS.batch, None, num_steps=s,
                                                      **kwargs))
        points = info.kind == "points"
        if points:
            real = split_points(config.data.name, FLAGS.split, FLAGS.num, FLAGS.seed)
        else:
            real = reference_features(config.data.name, FLAGS.split, info.num_levels)
        row = {"label": label, "nfe_per_step": _nfe_per_step(model), "fid": {}, "mmd": {}}
        if points and floor is None:     # two samples of the data law: the metrics' floor
            train = split_points(config.data.name, "train", len(real), FLAGS.seed)
            floor = {"w2": metrics.wasserstein2(train, real), "mmd": metrics.mmd_rbf(train, real)}
            print(json.dumps({"label": f"floor: {len(train)} train points", **floor}))
        for n in steps:
            start = time.perf_counter()
            images = np.concatenate([
                np.asarray(sample(state.ema_params, jax.random.fold_in(
                    jax.random.key(FLAGS.seed), i), n))
                for i in range(0, FLAGS.num, FLAGS.batch)])[:FLAGS.num]
            if points:
                fake = np.asarray(images, np.float64)[:len(real)]
                result = {"w2_to_test": metrics.wasserstein2(fake, real),
                          "mmd_to_test": metrics.mmd_rbf(fake, real)}
                row["fid"][n], row["mmd"][n] = result["w2_to_test"], result["mmd_to_test"]
            else:
                fake, _ = digits_features.features_and_probs(images, info.num_levels)
                result = {"fid_digits": metrics.fid_from_features(real, fake)}
                row["fid"][n] = result["fid_digits"]
            print(json.dumps({"label": label, "steps": n, "nfe": n * row["nfe_per_step"],
                              **{k: round(v, 4) for k, v in result.items()},
                              "seconds": round(time.perf_counter() - start, 1)}), flush=True)
        rows.append(row)
    tables = [("fid", "W2 to test points" if points else "FID (digits features)")]
    if points:
        tables.append(("mmd", "MMD^2 to test points"))
    for key, title in tables:
        floor_text = (f"; two samples of the data: {floor['w2' if key == 'fid' else 'mmd']:.4f}"
                      if points else "")
        print(f"\n{title}, NFE in brackets{floor_text}\n")
        print("| sampler | " + " | ".join(f"{n} steps" for n in steps) + " |")
        print("|---|" + "---|" * len(steps))
        for row in rows:
            cells = [f"{row[key][n]:.{4 if key == 'mmd' else 3 if points else 1}f} "
                     f"({n * row['nfe_per_step']})" for n in steps]
            print(f"| {row['label']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    app.run(main)
