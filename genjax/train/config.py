"""Frozen views of the ``training``, ``optimizer`` and ``eval`` config groups.

Inner code reads these dataclasses, never ConfigDicts: the conversion at this
boundary rejects unknown keys with the list of valid ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from genjax.models import config_to_dataclass


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64            # global batch, split over devices when parallel
    num_steps: int = 1000           # total optimizer steps
    steps_per_call: int = 1         # K steps per jitted call (lax.scan over K batches)
    log_every: int = 50             # steps between metrics.jsonl lines
    checkpoint_every: int = 500     # steps between 'latest' checkpoints (and at the end)
    snapshot_every: int = 0         # steps between kept snapshots (0 = none)
    sample_every: int = 0           # steps between PNG sample grids (0 = only at the end)
    num_sample_images: int = 64     # images in a sample grid (0: no grids)
    ema_decay: float = 0.999        # EMA decay d; step s uses min(d, (1 + s) / (10 + s))
    parallel: str = "none"          # none | mesh (batch sharded) | fsdp (state sharded too) | pmap
    prefetch: int = 2               # batches put on the devices ahead of the step (0 = none)
    progress: bool = True           # tqdm progress bar

    def __post_init__(self):
        if self.parallel not in ("none", "mesh", "fsdp", "pmap"):
            raise ValueError(
                f"training.parallel must be none, mesh, fsdp or pmap, got {self.parallel!r}")
        if self.prefetch < 0:
            raise ValueError(f"training.prefetch must be >= 0, got {self.prefetch}")
        for name in ("batch_size", "num_steps", "steps_per_call", "log_every", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"training.{name} must be positive, got {getattr(self, name)}")
        for name in ("log_every", "checkpoint_every", "snapshot_every", "sample_every"):
            value = getattr(self, name)
            if value % self.steps_per_call:
                raise ValueError(
                    f"training.{name} = {value} must be a multiple of "
                    f"training.steps_per_call = {self.steps_per_call}"
                )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"training.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.snapshot_every % self.checkpoint_every:
            raise ValueError(
                f"training.snapshot_every = {self.snapshot_every} must be a multiple of "
                f"training.checkpoint_every = {self.checkpoint_every} (snapshots are taken at "
                "checkpoints)")
        for name in ("snapshot_every", "sample_every", "num_sample_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"training.{name} must be >= 0, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    name: str = "adam"              # adam | adamw | sgd (momentum b1) | rmsprop (decay b2)
    learning_rate: float = 1e-3     # peak learning rate
    b1: float = 0.9
    b2: float = 0.999
    weight_decay: float = 0.0       # decoupled weight decay (adamw)
    warmup_steps: int = 0           # linear warm-up from 0 to the peak
    schedule: str = "constant"      # constant | cosine (decays to 0 at training.num_steps)
    grad_clip: float = 0.0          # clip by global norm (0 = off)
    clip_weights: float = 0.0       # keep every weight in [-c, c] after each update (WGAN)
    # Per parameter group (models with an update rule, e.g. a GAN's "generator" and
    # "discriminator"): group -> any of the fields above, overriding them for that group.
    groups: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        groups = {}
        for group, values in dict(self.groups).items():
            values = dict(values)
            if "groups" in values:
                raise ValueError(f"config.optimizer.groups.{group} cannot nest groups")
            base = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if f.name != "groups"}
            groups[group] = config_to_dataclass(
                OptimizerConfig, dict(base, **values), where=f"config.optimizer.groups.{group}")
        object.__setattr__(self, "groups", groups)
        if self.name not in ("adam", "adamw", "sgd", "rmsprop"):
            raise ValueError(
                f"optimizer.name must be adam, adamw, sgd or rmsprop, got {self.name!r}")
        if self.clip_weights < 0:
            raise ValueError(f"optimizer.clip_weights must be >= 0, got {self.clip_weights}")
        if self.weight_decay < 0 or (self.weight_decay and self.name != "adamw"):
            raise ValueError(
                f"optimizer.weight_decay = {self.weight_decay} needs optimizer.name = 'adamw' "
                f"(decoupled weight decay) and a value >= 0; the optimizer is {self.name!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(
                f"optimizer.schedule must be constant or cosine, got {self.schedule!r}")

    def for_group(self, group: str) -> "OptimizerConfig":
        """The settings of parameter group ``group``: its overrides, else these."""
        return self.groups.get(group) or dataclasses.replace(self, groups={})


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    split: str = "test"             # split for bits/dim
    batch_size: int = 256
    num_examples: int = 0           # 0 = the whole split
    iwae_samples: int = 0           # K for bound-based families (0 = the model's default)
    num_samples: int = 1000         # samples for FID/KID/IS/precision-recall (0 = skip)
    sample_batch_size: int = 250    # samples per jitted sampling call
    # Conditional models: does a sample follow its condition? Samples per class or caption
    # (0 = skip) read back by a classifier (genjax/eval/conditioning.py), at each guidance
    # weight w of conditioning_guidance.
    conditioning_per_condition: int = 0
    conditioning_guidance: tuple = (0.0, 1.0, 3.0)
    # Model selection on the validation split (genjax/train/validation.py): every
    # validation_every steps (0 = never) the held-out objective (NLL, or the loss) of the EMA
    # params over the first validation_examples (0 = all) validation examples; the best one is
    # kept in checkpoints/best, and training stops after `patience` validations without a new
    # best (0 = never).
    validation_every: int = 0
    validation_examples: int = 512
    patience: int = 0

    def __post_init__(self):
        for name in ("batch_size", "sample_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"eval.{name} must be positive, got {getattr(self, name)}")
        if self.patience and not self.validation_every:
            raise ValueError(f"eval.patience = {self.patience} needs eval.validation_every > 0")
        for name in ("num_examples", "iwae_samples", "num_samples", "conditioning_per_condition",
                     "validation_every", "validation_examples", "patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"eval.{name} must be >= 0, got {getattr(self, name)}")


def from_config(config) -> tuple[TrainConfig, OptimizerConfig, EvalConfig]:
    return (
        config_to_dataclass(TrainConfig, config.training, where="config.training"),
        config_to_dataclass(OptimizerConfig, config.optimizer, where="config.optimizer"),
        config_to_dataclass(EvalConfig, config.eval, where="config.eval"),
    )
