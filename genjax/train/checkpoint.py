"""Orbax checkpoints: a ``latest`` stream for preemption and kept ``snapshots``.

Each checkpoint holds the whole :class:`TrainState` (restored against an
abstract target, so tuples and namedtuples of the optimizer state come back
exactly) and the data iterator's position as JSON.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint directory is missing, unreadable or does not match the config."""


def _is_tmp(name: str) -> bool:
    return "orbax-checkpoint-tmp" in name


class Checkpointer:
    """``workdir/checkpoints/latest`` (1 kept) and ``workdir/checkpoints/snapshots`` (all kept)."""

    def __init__(self, workdir: str):
        root = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.latest_dir = os.path.join(root, "latest")
        self.snapshot_dir = os.path.join(root, "snapshots")
        self._check_readable(self.latest_dir)
        options = dict(create=True, enable_async_checkpointing=False)
        self.latest = ocp.CheckpointManager(
            self.latest_dir, options=ocp.CheckpointManagerOptions(max_to_keep=1, **options))
        self.snapshots = ocp.CheckpointManager(
            self.snapshot_dir, options=ocp.CheckpointManagerOptions(**options))

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
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(data_state))
        self.latest.save(step, args=args, force=True)
        if snapshot:
            self.snapshots.save(step, args=args, force=True)
        self.latest.wait_until_finished()
        self.snapshots.wait_until_finished()

    def restore(self, abstract_state, step: int | None = None) -> tuple[Any, dict]:
        """(state, data_state) of ``step`` (default: the latest), shaped like ``abstract_state``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.latest_dir}")
        manager = self.latest if step in self.latest.all_steps() else self.snapshots
        try:
            restored = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        except Exception as err:  # orbax raises many types for unreadable or mismatched files
            raise CheckpointError(
                f"could not restore step {step} from {manager.directory}: {err}. "
                "Nothing was overwritten; the checkpoint may be corrupt or from another config."
            ) from err
        return restored["state"], restored["data"]

    def close(self) -> None:
        self.latest.close()
        self.snapshots.close()


def abstract(tree):
    """ShapeDtypeStructs of a pytree (the restore target)."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
