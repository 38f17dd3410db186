"""Sample-quality metrics of a model against a data split, in a feature space.

For the embedded digit datasets the feature space is the shipped digits
classifier (:mod:`genjax.eval.digits_features`): FID, KID, Inception Score
(over its 10 classes), improved precision/recall, and, for class-conditional
models, the accuracy with which samples asked for class c are classified as c.
Reference statistics of a split are cached under ``~/.cache/genjax`` (or
``$GENJAX_CACHE``), keyed by dataset, split and the feature network's weights
(so ``python -m genjax.eval.digits_features --retrain`` is never served stale
features).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from genjax import data as gdata
from genjax.core import metrics
from genjax.eval import digits_features

DIGIT_DATASETS = ("digits", "digits16", "binarized_digits")


def cache_dir() -> str:
    return os.environ.get("GENJAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                                       "genjax"))


def reference_features(dataset: str, split: str, num_levels: int, data_dir=None) -> np.ndarray:
    """Digits features of every image of ``split``, cached on disk as .npz, keyed by the
    dataset, the split and the classifier's weights."""
    key = digits_features.weights_digest()
    path = os.path.join(cache_dir(), "features",
                        f"{dataset}_{split}_digits_features_{key}.npz")
    if os.path.exists(path):
        return np.load(path)["features"]
    it, _ = gdata.load(dataset, split, 512, shuffle=False, num_epochs=1, drop_remainder=False,
                       data_dir=data_dir)
    images = np.concatenate([b["image"] for b in it])
    features, _ = digits_features.features_and_probs(images, num_levels)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, features=features)
    return features


def draw_samples(model, params, rng, num_samples: int, batch_size: int, num_classes: int = 0):
    """(samples [N, ...], requested labels [N] or None): labels cycle 0..K-1 when conditional."""
    sample = jax.jit(model.sample, static_argnums=2)
    labels = np.arange(num_samples) % num_classes if num_classes else None
    out = []
    for i in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - i)
        cond = None if labels is None else labels[i:i + batch_size]
        if cond is not None and n < batch_size:      # keep one compiled shape
            cond = np.concatenate([cond, np.zeros(batch_size - n, cond.dtype)])
        batch = sample(params, jax.random.fold_in(rng, i), batch_size, cond)
        out.append(np.asarray(batch)[:n])
    return np.concatenate(out), labels


def digit_sample_metrics(model, params, rng, dataset: str, split: str, num_levels: int,
                         num_samples: int, batch_size: int, num_classes: int = 0,
                         data_dir=None) -> dict:
    """FID/KID/IS/precision/recall (and class accuracy) of model samples vs ``split``."""
    samples, labels = draw_samples(model, params, rng, num_samples, batch_size, num_classes)
    fake, probs = digits_features.features_and_probs(samples, num_levels)
    real = reference_features(dataset, split, num_levels, data_dir)
    kid, kid_std = metrics.kernel_inception_distance(real, fake, num_subsets=50,
                                                     subset_size=min(len(real), len(fake)))
    precision, recall = metrics.precision_recall(real, fake, k=3)
    out = {
        "num_samples": int(num_samples),
        "fid_digits": metrics.fid_from_features(real, fake),
        "kid_digits": kid,
        "kid_digits_std": kid_std,
        "is_digits": metrics.inception_score(probs, num_splits=5)[0],
        "precision": precision,
        "recall": recall,
    }
    if labels is not None:
        out["class_accuracy"] = float((probs.argmax(1) == labels).mean())
    return out
