"""``train_and_evaluate(config, workdir)``: the training job behind ``genjax train``.

Rerunning the same job on the same workdir resumes from the latest checkpoint
(params, optimizer, EMA, step, RNG and data position): a run cut after k steps
and resumed ends bit for bit where an uninterrupted run ends (on CPU).

With ``eval.validation_every`` the trainer measures the held-out objective
(:mod:`genjax.train.validation`) on the validation split, keeps the best state in
``checkpoints/best`` and, with ``eval.patience``, stops early. The best-so-far record and
the count of validations since it are saved with every checkpoint, so a resumed run
compares against the best as of the step it resumes from, and a run that stopped early
stays stopped when rerun.

The next ``training.prefetch`` calls' batches are read and put on the devices in a
background thread (:mod:`genjax.train.prefetch`) while a step runs; the checkpointed
data position is that of the batches consumed, so prefetching changes no number.

With several processes (:mod:`genjax.train.distributed`) every process runs this
function: each reads its rows of every global batch, all take part in each step,
sampling, validation and checkpoint, and only process 0 writes ``config.json``,
``metrics.jsonl``, sample grids, the progress bar and log lines.
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from genjax import data as gdata
from genjax import models
from genjax.models.protocol import check_batch, update_rule
from genjax.train import distributed
from genjax.train import step as step_lib
from genjax.train.checkpoint import Checkpointer, CheckpointError, abstract, on_one_device
from genjax.train.config import from_config
from genjax.train.images import save_samples
from genjax.train.logging import MetricsWriter
from genjax.train.prefetch import Prefetcher
from genjax.train.state import TrainState, init_state, make_optimizer
from genjax.train.validation import BestTracker, make_validation, objective_name
from genjax.train.validation import validation_batches

log = logging.getLogger("genjax")


class NonFiniteLossError(FloatingPointError):
    """A metric became NaN or inf; training stopped and no checkpoint was written after it."""


@jax.jit
def all_finite(metrics) -> jax.Array:
    """Whether every metric of a call is finite (a scalar; the trainer reads it each call)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(m)) for m in jax.tree.leaves(metrics)]))


def check_data_matches_model(model, info) -> None:
    """Clear errors when the model's config disagrees with the data."""
    cfg = getattr(model, "config", None)
    shape = getattr(cfg, "image_shape", None)
    if shape is not None and tuple(shape) != tuple(info.shape):
        raise ValueError(
            f"config.model.image_shape = {tuple(shape)} but dataset {info.name!r} has examples "
            f"of shape {tuple(info.shape)}; set --config.model.image_shape={tuple(info.shape)}."
        )
    levels = getattr(cfg, "num_levels", None)
    if levels is not None and info.num_levels is not None and levels != info.num_levels:
        raise ValueError(
            f"config.model.num_levels = {levels} but dataset {info.name!r} has "
            f"{info.num_levels} levels per sub-pixel."
        )
    classes = getattr(cfg, "num_classes", 0)
    if classes and classes != info.num_classes:
        raise ValueError(
            f"config.model.num_classes = {classes} but dataset {info.name!r} has "
            f"{info.num_classes} classes."
        )


def _data_kwargs(config) -> dict:
    return dict(data_dir=config.data.get("data_dir") or None)


def build_run(config, *, batch_size: int | None = None):
    """(model, optimizer, train iterator, DatasetInfo, configs) from a ConfigDict, validated
    before anything is compiled."""
    tcfg, ocfg, ecfg = from_config(config)
    distributed.check_parallel(tcfg.parallel)
    model = models.build(config.model)
    batch_size = batch_size or tcfg.batch_size
    rows = step_lib.process_rows(batch_size, tcfg.parallel)
    it, info = gdata.load(config.data.name, "train", batch_size, shuffle=True, seed=config.seed,
                          rows=None if rows == (0, batch_size) else rows, **_data_kwargs(config))
    check_data_matches_model(model, info)
    shards = step_lib.num_data_shards(tcfg.parallel)
    if tcfg.batch_size % shards:
        raise ValueError(f"training.batch_size = {tcfg.batch_size} is not divisible by the "
                         f"{shards} devices of training.parallel = {tcfg.parallel!r}")
    if tcfg.num_steps % tcfg.steps_per_call:
        raise ValueError(f"training.num_steps = {tcfg.num_steps} must be a multiple of "
                         f"training.steps_per_call = {tcfg.steps_per_call}")
    if ecfg.validation_every:
        if ecfg.validation_every % tcfg.steps_per_call:
            raise ValueError(f"eval.validation_every = {ecfg.validation_every} must be a "
                             f"multiple of training.steps_per_call = {tcfg.steps_per_call}")
        objective_name(model)            # a model with no held-out objective is refused here
    for phase in update_rule(model).phases:
        if phase.split_batch and (tcfg.batch_size // shards) % phase.repeat:
            raise ValueError(
                f"phase {phase.label!r} splits each device's batch of "
                f"{tcfg.batch_size // shards} into {phase.repeat} slices: make "
                f"training.batch_size a multiple of {phase.repeat * shards}")
    optimizer = make_optimizer(ocfg, tcfg.num_steps, model)
    return model, optimizer, it, info, (tcfg, ocfg, ecfg)


def initial_state(config, model, optimizer, info) -> TrainState:
    """Params initialised on the first training batch (same seed, a separate iterator)."""
    first, _ = gdata.load(info.name, "train", 8, shuffle=True, seed=config.seed,
                          **_data_kwargs(config))
    batch = next(first)
    check_batch(model, batch)            # dtype, shape and levels against the model
    return init_state(model, optimizer, jax.random.key(config.seed), batch)


def parse_checkpoint(checkpoint: int | str | None) -> int | str:
    """``"latest"`` (also None), ``"best"`` or a step number (an int or its digits)."""
    if checkpoint is None:
        return "latest"
    if isinstance(checkpoint, int) or str(checkpoint).isdigit():
        return int(checkpoint)
    if checkpoint not in ("latest", "best"):
        raise ValueError(f"checkpoint must be best, latest or a step number, got {checkpoint!r}")
    return checkpoint


def load_run(workdir: str, checkpoint: int | str | None = None, *, step: int | None = None):
    """(config, model, state, info) of a trained workdir, for ``sample`` and ``eval``.

    checkpoint: ``"latest"`` (default), ``"best"`` (the best validation,
      ``checkpoints/best``) or a step number; ``step`` is a synonym of a step number.
    """
    if step is not None:
        if checkpoint is not None and parse_checkpoint(checkpoint) != step:
            raise ValueError(f"give either checkpoint={checkpoint!r} or step={step}, not both")
        checkpoint = step
    checkpoint = parse_checkpoint(checkpoint)
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise CheckpointError(f"{workdir} is not a genjax run: {path} is missing")
    import ml_collections

    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    model, optimizer, _, info, _ = build_run(config)
    target = jax.eval_shape(lambda: initial_state(config, model, optimizer, info))
    ckpt = Checkpointer(workdir)
    if ckpt.latest_step() is None and checkpoint == "latest":
        raise CheckpointError(f"no checkpoint in {ckpt.latest_dir}: train first")
    # Onto one device, whatever the run was trained on (fsdp, mesh, several processes).
    state, _ = ckpt.restore(on_one_device(target), checkpoint)
    ckpt.close()
    return config, model, state, info


def _next_batches(it, k: int) -> dict:
    batches = [next(it) for _ in range(k)]
    return {key: np.stack([b[key] for b in batches]) for key in batches[0]}


class _NoWriter:
    """The metrics writer of processes other than 0."""

    def write(self, step: int, metrics: dict) -> None:
        pass

    def close(self) -> None:
        pass


def train_and_evaluate(config, workdir: str) -> TrainState:
    """Train ``config`` in ``workdir`` (resuming if it holds a checkpoint); returns the state."""
    model, optimizer, it, info, (tcfg, _, ecfg) = build_run(config)
    primary = distributed.is_primary()
    info_log = log.info if primary else (lambda *args: None)
    os.makedirs(workdir, exist_ok=True)
    ckpt = Checkpointer(workdir)
    state = initial_state(config, model, optimizer, info)
    start = ckpt.latest_step()
    tracker = None
    if ecfg.validation_every:
        kwargs = {"num_samples": ecfg.iwae_samples} if ecfg.iwae_samples else {}
        metric, validate = make_validation(model, validation_batches(config, ecfg), config.seed,
                                           kwargs)
        tracker = BestTracker(metric)
    if start is not None:
        shardings = step_lib.state_shardings(state, tcfg.parallel)
        state, data_state = ckpt.restore(abstract(state, shardings))
        saved_tracker = data_state.pop("validation", None)
        it.set_state(data_state)
        info_log("resumed from step %d in %s", start, workdir)
        if tracker is not None and saved_tracker and saved_tracker["metric"] == tracker.metric:
            tracker = BestTracker.from_dict(saved_tracker)
    if primary:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json(indent=2))

    parallel, k = tcfg.parallel, tcfg.steps_per_call
    train_step = step_lib.make_train_step(model, optimizer, tcfg.ema_decay, parallel, k)
    sample_fn = jax.jit(model.sample, static_argnums=2)
    sample_key = jax.random.key(config.seed + 1)
    writer = MetricsWriter(workdir, resume_step=start or 0) if primary else _NoWriter()
    if primary:
        os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)

    step = int(state.step)
    dstate = step_lib.put_state(state, parallel)
    pending: list = []         # device metrics of calls not yet read back, [K] each
    last_saved = start
    bar = tqdm(total=tcfg.num_steps, initial=step, disable=not (tcfg.progress and primary),
               desc="train", dynamic_ncols=True)
    tick, tick_step = time.perf_counter(), step

    def flush() -> None:
        """Read pending metrics, stop on non-finite values, write the log line."""
        nonlocal pending, tick, tick_step
        if not pending:
            return
        host = jax.device_get(pending)
        pending = []
        stacked = {key: np.concatenate([np.ravel(m[key]) if parallel != "pmap"
                                        else np.ravel(m[key][0]) for m in host]) for key in host[0]}
        first = step - len(next(iter(stacked.values())))
        finite = np.all([np.isfinite(v) for v in stacked.values()], axis=0)
        if not finite.all():
            i = int(np.argmin(finite))
            bad = ", ".join(f"{k}={v[i]}" for k, v in stacked.items() if not np.isfinite(v[i]))
            if last_saved is None:
                kept = ("No checkpoint was written yet, so rerunning the same command starts "
                        "from scratch")
            else:
                kept = (f"The last good checkpoint (step {last_saved}) in {ckpt.latest_dir} is "
                        "intact; rerunning the same command resumes from it")
            raise NonFiniteLossError(
                f"non-finite metrics at step {first + i + 1} ({bad}); training stopped there. "
                f"{kept}: lower the learning rate or set optimizer.grad_clip first."
            )
        now = time.perf_counter()
        means = {key: float(v.mean()) for key, v in stacked.items()}
        means["steps_per_sec"] = (step - tick_step) / max(now - tick, 1e-9)
        tick, tick_step = now, step
        writer.write(step, means)
        # "loss", or each phase's "<phase>_loss" for a model with several phases.
        shown = {k: f"{v:.4g}" for k, v in means.items() if k == "loss" or k.endswith("_loss")}
        bar.set_postfix(**shown, steps_s=f"{means['steps_per_sec']:.1f}")

    position = it.get_state()     # after the batches consumed so far (not those prefetched)

    def produce() -> tuple[dict, dict]:
        batches = step_lib.put_batch(_next_batches(it, k), parallel)
        return batches, it.get_state()

    def data_state() -> dict:
        return position if tracker is None else dict(position, validation=tracker.to_dict())

    def save(snapshot: bool) -> None:
        nonlocal last_saved
        flush()
        ckpt.save(step, step_lib.get_state(dstate, parallel), data_state(), snapshot=snapshot)
        last_saved = step

    def run_validation() -> bool:
        """Validate the EMA params; save a new best; True when patience has run out."""
        flush()
        host_state = step_lib.get_state(dstate, parallel)
        value = validate(host_state.ema_params)
        writer.write(step, {tracker.metric: value})
        if tracker.update(step, value):
            ckpt.save_best(step, host_state, data_state(),
                           {"metric": tracker.metric, "value": value})
            info_log("step %d: %s %.6g (new best)", step, tracker.metric, value)
        else:
            info_log("step %d: %s %.6g (best %.6g at step %d, %d validations ago)", step,
                     tracker.metric, value, tracker.best_value, tracker.best_step,
                     tracker.stale)
        return bool(ecfg.patience) and tracker.stale >= ecfg.patience

    def stopped_message() -> str:
        return (f"early stop at step {step}: {tracker.metric} has not improved for "
                f"{tracker.stale} validations (eval.patience = {ecfg.patience}); best "
                f"{tracker.best_value:.6g} at step {tracker.best_step}, in {ckpt.best_dir}")

    def write_samples() -> None:
        ema = step_lib.get_state(dstate, parallel).ema_params
        images = sample_fn(ema, jax.random.fold_in(sample_key, step), tcfg.num_sample_images)
        if not primary:         # every process takes part in sampling; process 0 writes
            jax.block_until_ready(images)
            return
        save_samples(os.path.join(workdir, "samples", f"step_{step:07d}.png"), images,
                     info.num_levels)

    stop = (tracker is not None and bool(ecfg.patience) and tracker.stale >= ecfg.patience)
    if stop:
        info_log("already stopped: %s", stopped_message())
    batches_ahead = Prefetcher(produce, 0 if stop or step >= tcfg.num_steps else tcfg.prefetch)
    try:
        while step < tcfg.num_steps and not stop:
            batches, next_position = next(batches_ahead)
            dstate, metrics = train_step(dstate, batches)
            position = next_position
            pending.append(metrics)
            step += k
            bar.update(k)
            # One scalar read back per call, so that training stops at the call that went
            # non-finite (flush names the step and metric).
            if step % tcfg.log_every == 0 or not bool(all_finite(metrics)):
                flush()
            if tracker is not None and step % ecfg.validation_every == 0:
                stop = run_validation()
                if stop:
                    info_log("%s", stopped_message())
            if step % tcfg.checkpoint_every == 0 or step == tcfg.num_steps or stop:
                save(snapshot=bool(tcfg.snapshot_every) and step % tcfg.snapshot_every == 0)
            if tcfg.num_sample_images and ((tcfg.sample_every and step % tcfg.sample_every == 0)
                                           or step == tcfg.num_steps or stop):
                write_samples()
    except KeyboardInterrupt:
        if last_saved != step:
            log.warning("interrupted at step %d: saving a checkpoint before exiting", step)
            save(snapshot=False)
        raise
    finally:
        batches_ahead.close()
        bar.close()
        writer.close()
        ckpt.close()
    return step_lib.get_state(dstate, parallel)
