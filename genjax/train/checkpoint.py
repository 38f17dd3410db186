"""Orbax checkpoints: a ``latest`` stream for preemption, kept ``snapshots`` and the ``best``.

The one owner of a run's layout on disk::

    WORKDIR/config.json                         the run's config
    WORKDIR/checkpoints/latest/<step>/state     the whole TrainState (1 kept)
    WORKDIR/checkpoints/latest/<step>/data      the data iterator's position (JSON)
    WORKDIR/checkpoints/latest/<step>/data_process/process_<i>.json
                                                each process's position (multi-process runs)
    WORKDIR/checkpoints/snapshots/<step>/...    kept snapshots, same layout
    WORKDIR/checkpoints/best/<step>/...         the best validation so far (1 kept), same layout
    WORKDIR/checkpoints/best.json               its record: {"step", "metric", "value", ...}

The state is restored against an abstract target, so tuples and namedtuples of
the optimizer state come back exactly. :func:`load_pretrained` reads the EMA
parameters of another run for a model built on it (the VAE under latent
diffusion, the VQ-VAE under the token prior).

With several processes (``jax.distributed``) every process builds the same
:class:`Checkpointer` on a shared workdir and calls every method: orbax's
multi-host protocol writes each array shard once (from the process that holds it)
and commits the step after a barrier. ``data`` is written by process 0 (so that a
single process can read the run, e.g. ``genjax sample``); each process also writes
its own position to ``data_process/process_<i>.json`` and a multi-process restore
reads its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint directory is missing, unreadable or does not match the config."""


def _is_tmp(name: str) -> bool:
    return "orbax-checkpoint-tmp" in name


DATA_PROCESS = "data_process"


def _item_handlers() -> dict | None:
    """None (orbax picks handlers from the arguments) for one process; with several,
    the per-process data item written by every process to its own file."""
    if jax.process_count() == 1:
        return None
    every = ocp.options.MultiprocessingOptions(primary_host=None)
    return {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
            DATA_PROCESS: ocp.JsonCheckpointHandler(
                filename=f"process_{jax.process_index()}.json", multiprocessing_options=every)}


def _save_args(state, data_state: dict) -> ocp.args.Composite:
    items = dict(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state))
    if jax.process_count() > 1:
        items[DATA_PROCESS] = ocp.args.JsonSave(data_state)
    return ocp.args.Composite(**items)


class Checkpointer:
    """``workdir/checkpoints/latest`` (1 kept), ``workdir/checkpoints/snapshots`` (all kept)
    and ``workdir/checkpoints/best`` (1 kept, with its record ``best.json``)."""

    def __init__(self, workdir: str):
        root = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.latest_dir = os.path.join(root, "latest")
        self.snapshot_dir = os.path.join(root, "snapshots")
        self.best_dir = os.path.join(root, "best")
        self.best_record_path = os.path.join(root, "best.json")
        self._check_readable(self.latest_dir)
        options = dict(create=True, enable_async_checkpointing=False)
        self.latest = ocp.CheckpointManager(
            self.latest_dir, options=ocp.CheckpointManagerOptions(max_to_keep=1, **options),
            item_handlers=_item_handlers())
        self.snapshots = ocp.CheckpointManager(
            self.snapshot_dir, options=ocp.CheckpointManagerOptions(**options),
            item_handlers=_item_handlers())
        # Opened on first use: a run without validation gets no checkpoints/best directory.
        self._best = None

    @property
    def best(self) -> ocp.CheckpointManager:
        if self._best is None:
            self._best = ocp.CheckpointManager(self.best_dir, options=ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True, enable_async_checkpointing=False),
                item_handlers=_item_handlers())
        return self._best

    @staticmethod
    def _check_readable(directory: str) -> None:
        """A non-empty directory with no complete checkpoint is refused, not overwritten."""
        if not os.path.isdir(directory):
            return
        entries = [e for e in os.listdir(directory) if not _is_tmp(e)]
        if entries and not any(e.isdigit() for e in entries):
            raise CheckpointError(
                f"{directory} holds {sorted(entries)[:5]} but no checkpoint genjax can read; "
                "nothing was changed. Move it away or choose another --workdir."
            )

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def save(self, step: int, state, data_state: dict, *, snapshot: bool = False) -> None:
        args = _save_args(state, data_state)
        self.latest.save(step, args=args, force=True)
        if snapshot:
            self.snapshots.save(step, args=args, force=True)
        self.latest.wait_until_finished()
        self.snapshots.wait_until_finished()

    def save_best(self, step: int, state, data_state: dict, record: dict) -> None:
        """Replace ``checkpoints/best`` with ``step`` and write its record (``best.json``:
        ``record`` plus ``"step"``) after the state, so the record never names a state that
        is not on disk."""
        args = _save_args(state, data_state)
        if step in self.best.all_steps():          # a resumed run redoing the step
            self.best.delete(step)
        self.best.save(step, args=args, force=True)
        self.best.wait_until_finished()
        if jax.process_index() != 0:
            return
        tmp = self.best_record_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(record, step=int(step)), f, indent=2)
        os.replace(tmp, self.best_record_path)

    def best_record(self) -> dict | None:
        """The record of ``checkpoints/best`` (``best.json``), or None without one."""
        if not os.path.exists(self.best_record_path):
            return None
        with open(self.best_record_path) as f:
            return json.load(f)

    def restore(self, abstract_state, step: int | str | None = None) -> tuple[Any, dict]:
        """(state, data_state) of ``step``: a step number, ``"latest"`` (also None) or
        ``"best"``, shaped like ``abstract_state``."""
        if step == "best":
            record = self.best_record()
            if record is None or record["step"] not in self.best.all_steps():
                raise CheckpointError(
                    f"no best checkpoint in {self.best_dir}: the run was trained without "
                    "validation (set eval.validation_every > 0), or has not validated yet")
            return self._restore(self.best, record["step"], abstract_state)
        step = self.latest_step() if step in (None, "latest") else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.latest_dir}")
        saved = sorted(set(self.latest.all_steps()) | set(self.snapshots.all_steps()))
        if step not in saved:
            raise CheckpointError(
                f"no checkpoint of step {step} in {os.path.dirname(self.latest_dir)}; saved "
                f"steps: {', '.join(map(str, saved)) or 'none'} (the latest, plus snapshots "
                "every training.snapshot_every steps)")
        manager = self.latest if step in self.latest.all_steps() else self.snapshots
        return self._restore(manager, step, abstract_state)

    @staticmethod
    def _restore(manager, step: int, abstract_state) -> tuple[Any, dict]:
        data = DATA_PROCESS if jax.process_count() > 1 else "data"
        try:
            restored = manager.restore(step, args=ocp.args.Composite(**{
                "state": ocp.args.StandardRestore(abstract_state),
                data: ocp.args.JsonRestore()}))
        except Exception as err:  # orbax raises many types for unreadable or mismatched files
            raise CheckpointError(
                f"could not restore step {step} from {manager.directory}: {err}. "
                "Nothing was overwritten; the checkpoint may be corrupt or from another config."
            ) from err
        return restored["state"], restored[data]

    def close(self) -> None:
        self.latest.close()
        self.snapshots.close()
        if self._best is not None:
            self._best.close()


@contextlib.contextmanager
def _quiet_absl():
    """Orbax's absl warnings off (errors still shown) inside the block."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def on_one_device(tree):
    """The restore target of ``tree`` on this process's first device, whatever sharding or
    topology (fsdp, several processes) the checkpoint was written with."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device)
                        if hasattr(x, "shape") and hasattr(x, "dtype") else x, tree)


def abstract(tree, shardings=None):
    """ShapeDtypeStructs of a pytree (the restore target), with ``shardings`` (a matching
    pytree) to restore into those rather than the arrays' own."""
    if shardings is None:
        return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        tree, shardings)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def load_pretrained(workdir: str, *, kind: str, image_shape=None, role: str = "pretrained"):
    """(model config dict, EMA params) of the latest checkpoint of the run in ``workdir``.

    kind: the model name the run must hold (``"vae"``, ``"vqvae"``).
    image_shape: the data shape the caller models; the run must have been trained on it.
    role: the config field naming the workdir, for the messages.

    Raises ``CheckpointError`` with one line when the directory is not a run, holds
    another kind of model or shape, has no checkpoint, or cannot be read.
    """
    where = f"{role} = {workdir!r}"
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
        raise CheckpointError(f"{where} is not a trained genjax run (no config.json): train "
                              f"the {kind} first and point {role} at its workdir")
    try:
        with open(config_path) as f:
            model_config = json.load(f)["model"]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{where}: config.json is unreadable ({_first_line(err)})") from err
    if model_config.get("name") != kind:
        raise CheckpointError(f"{where} holds a {model_config.get('name')!r} model, "
                              f"but a {kind!r} is needed here")
    shape = model_config.get("image_shape")
    if image_shape is not None and shape is not None and tuple(shape) != tuple(image_shape):
        raise CheckpointError(f"{where} was trained on images of shape {tuple(shape)}, but "
                              f"this model's image_shape is {tuple(image_shape)}")
    latest = os.path.join(os.path.abspath(workdir), "checkpoints", "latest")
    steps = sorted(int(s) for s in os.listdir(latest) if s.isdigit()) if os.path.isdir(
        latest) else []
    if not steps:
        raise CheckpointError(f"{where} has no checkpoint in {latest}: train it first")
    path = os.path.join(latest, str(steps[-1]), "state")
    try:
        with ocp.StandardCheckpointer() as ckpt, _quiet_absl():
            # (orbax warns that the step's _CHECKPOINT_METADATA is not in the item's
            # directory: it is one level up, and the item's own metadata is all we read)
            metadata = ckpt.metadata(path)
            target = on_one_device(getattr(metadata, "item_metadata", metadata))
            state = ckpt.restore(path, target)
        params = state["ema_params"]
    except Exception as err:  # orbax raises many types for unreadable files
        raise CheckpointError(f"{where}: the checkpoint at step {steps[-1]} cannot be read, it "
                              f"may be corrupt ({_first_line(err)})") from err
    return model_config, params
