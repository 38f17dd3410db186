"""Build locked ``ml_collections`` configs whose defaults come from the dataclasses.

Every config file in ``configs/`` starts from :func:`make_config`, which lays out
the groups ``data / model / training / optimizer / eval`` with every field of
the family's config dataclass, so that an override of a key that does not
exist (``--config.training.num_step=...``) fails loudly, naming the valid keys.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os

import ml_collections

from genjax import models
from genjax.train.config import EvalConfig, OptimizerConfig, TrainConfig


def _group(cls, **overrides) -> ml_collections.ConfigDict:
    values = {f.name: getattr(cls(), f.name) if f.default is dataclasses.MISSING else f.default
              for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for {cls.__name__}; valid: {sorted(values)}")
    values.update(overrides)
    return ml_collections.ConfigDict(values)


def make_config(model: str, dataset: str, *, seed: int = 0, model_kwargs=None, training=None,
                optimizer=None, eval=None, data_dir: str = "") -> ml_collections.ConfigDict:
    """A complete, locked config for ``model`` trained on ``dataset``."""
    model_cls = models.config_class(model)
    config = ml_collections.ConfigDict()
    config.seed = seed                                   # root of every random key
    config.data = ml_collections.ConfigDict(dict(
        name=dataset,              # genjax.data.list_datasets() or a tfds name
        data_dir=data_dir,         # tfds data_dir ("" = tfds default)
    ))
    config.model = _group(model_cls, **(model_kwargs or {}))
    config.model.name = model
    config.training = _group(TrainConfig, **(training or {}))
    config.optimizer = _group(OptimizerConfig, **(optimizer or {}))
    config.eval = _group(EvalConfig, **(eval or {}))
    config.lock()
    return config


def load_sibling(config_file: str, name: str) -> ml_collections.ConfigDict:
    """``get_config()`` of ``name``.py in the directory of ``config_file`` (for configs that
    change a few fields of another)."""
    path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"genjax_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
