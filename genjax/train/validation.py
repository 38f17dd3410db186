"""The held-out objective on the ``validation`` split, and the record of the best one.

Every ``eval.validation_every`` steps the trainer measures, on the EMA parameters, over
the first ``eval.validation_examples`` examples of ``validation`` with a fixed key (batch
i gets ``fold_in(key(seed + 2), i)``), so values are comparable across steps:

- ``validation_nll``: the mean of ``-log_prob`` in nats per example, for a model with a
  likelihood (``capabilities.has_likelihood``; exact or a bound, as its ``log_prob`` is);
- ``validation_loss``: otherwise the mean of ``model.loss`` (weighted by batch size), for a
  model trained by one phase (one loss, one parameter group).

A model whose update rule has several phases (GANs, pix2pix with its discriminator,
CycleGAN, StyleGAN) plays a game: neither player's loss, nor their sum, is lower for a
better model, so it has no held-out objective and ``validation_every > 0`` is refused
before anything is compiled; compare its checkpoints by their samples (``genjax eval
--checkpoint STEP``). Lower is better for both objectives.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from genjax import data as gdata
from genjax.models.protocol import check_batch, update_rule


def objective_name(model) -> str:
    """``"validation_nll"`` or ``"validation_loss"`` (see the module docstring); ValueError
    for a model trained by several phases."""
    if model.capabilities.has_likelihood:
        return "validation_nll"
    phases = update_rule(model).phases
    if len(phases) > 1:
        raise ValueError(
            f"eval.validation_every: model {type(model).__name__} trains by several phases "
            f"({', '.join(p.label for p in phases)}), a game with no held-out objective that "
            "is lower for a better model; set eval.validation_every=0 and compare its "
            "checkpoints with genjax eval --checkpoint STEP")
    return "validation_loss"


def validation_batches(config, ecfg) -> list[dict]:
    """The first ``ecfg.validation_examples`` (0: all) examples of ``validation``, in their
    stored order, as host batches of at most ``ecfg.batch_size``."""
    it, info = gdata.load(config.data.name, "validation", ecfg.batch_size, shuffle=False,
                          num_epochs=1, drop_remainder=False,
                          data_dir=config.data.get("data_dir") or None)
    limit = ecfg.validation_examples or info.num_examples
    batches, seen = [], 0
    for batch in it:
        if seen >= limit:
            break
        batch = {k: v[: limit - seen] for k, v in batch.items()}
        batches.append(batch)
        seen += len(next(iter(batch.values())))
    return batches


def make_validation(model, batches: list[dict], seed: int,
                    log_prob_kwargs: dict | None = None) -> tuple[str, Callable]:
    """(metric name, ``params -> float``): the held-out objective over ``batches``."""
    name = objective_name(model)
    key = jax.random.key(seed + 2)
    for batch in batches:
        check_batch(model, batch)
    if name == "validation_nll":
        kwargs = log_prob_kwargs or {}
        fn = jax.jit(lambda p, b, k: -model.log_prob(p, b, k, **kwargs).sum())
    else:
        fn = jax.jit(lambda p, b, k: model.loss(p, b, k)[0] * len(next(iter(b.values()))))
    total = sum(len(next(iter(b.values()))) for b in batches)

    def evaluate(params) -> float:
        sums = [fn(params, b, jax.random.fold_in(key, i)) for i, b in enumerate(batches)]
        return float(np.sum(np.asarray(jax.device_get(sums), np.float64)) / total)

    return name, evaluate


@dataclasses.dataclass
class BestTracker:
    """The best validation so far (lower is better) and how many validations since.

    Saved with every checkpoint (in its data JSON, under ``"validation"``), so a resumed run
    compares against the best as of the step it resumes from; ``checkpoints/best.json``
    records the same for the state in ``checkpoints/best``.
    """

    metric: str
    best_step: int | None = None
    best_value: float | None = None
    stale: int = 0           # validations since the best one

    def update(self, step: int, value: float) -> bool:
        """Record a validation; True when it is a new best."""
        if self.best_value is None or value < self.best_value:
            self.best_step, self.best_value, self.stale = step, value, 0
            return True
        self.stale += 1
        return False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "BestTracker":
        return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls) if f.name in record})
