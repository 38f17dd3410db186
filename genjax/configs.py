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


# (image_shape, num_levels) of the datasets the autoregressive configs name (the embedded
# ones are checked against their DatasetInfo in tests/test_configs.py).
IMAGE_DATASETS = {
    "binarized_digits": ((16, 16, 1), 2),
    "digits": ((8, 8, 1), 17),
    "digits16": ((16, 16, 1), 256),
    "shapes": ((32, 32, 1), 256),
    "mnist": ((28, 28, 1), 256),
    "binarized_mnist": ((28, 28, 1), 2),
    "cifar10": ((32, 32, 3), 256),
}
# Label classes of those datasets (a class-conditional config conditions on all of them).
DATASET_CLASSES = {"binarized_digits": 10, "digits": 10, "digits16": 10, "shapes": 3,
                   "mnist": 10, "binarized_mnist": 0, "cifar10": 10}


def autoregressive_config(model: str, dataset: str, *, model_kwargs=None, training=None,
                          **kwargs) -> ml_collections.ConfigDict:
    """:func:`make_config` with ``image_shape`` and ``num_levels`` set from ``dataset`` and
    the training defaults of the autoregressive configs (which take the dataset as the
    config argument, ``--config configs/pixelcnn.py:digits16``)."""
    if dataset not in IMAGE_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} for this config; "
                         f"choose one of {sorted(IMAGE_DATASETS)}")
    shape, levels = IMAGE_DATASETS[dataset]
    model_kwargs = dict(model_kwargs or {})
    if model_kwargs.get("num_classes"):          # class-conditional: the dataset's classes
        if not DATASET_CLASSES[dataset]:
            raise ValueError(f"{model} is class-conditional here, but {dataset!r} has no labels")
        model_kwargs["num_classes"] = DATASET_CLASSES[dataset]
    train = dict(log_every=100, checkpoint_every=1000, sample_every=1000,
                 num_sample_images=64, ema_decay=0.999)
    train.update(training or {})
    # Sequential samplers are slow on a CPU: 500 samples for FID by default. The held-out
    # NLL on the validation split every 100 steps keeps checkpoints/best (these models
    # overfit small data: evaluate with --checkpoint best).
    kwargs.setdefault("eval", dict(num_samples=500, validation_every=100))
    return make_config(model, dataset,
                       model_kwargs=dict(model_kwargs, image_shape=shape, num_levels=levels),
                       training=train, **kwargs)


def load_sibling(config_file: str, name: str, arg: str | None = None
                 ) -> ml_collections.ConfigDict:
    """``get_config()`` (or ``get_config(arg)``) of ``name``.py in the directory of
    ``config_file`` (for configs that change a few fields of another)."""
    path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"genjax_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config() if arg is None else module.get_config(arg)
