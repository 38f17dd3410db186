"""The three splits every dataset has: ``train``, ``validation`` and ``test``.

``validation`` is a fixed part of the training data, for model selection
(``eval.validation_every``, ``checkpoints/best``); ``test`` is kept for the
numbers reported. The rule, the same for every dataset:

- Embedded datasets generate a training pool and a test set. ``validation``
  is the last 10% of the pool (its last ``n // 10`` examples, in the
  generator's fixed order) and ``train`` the first 90%, so the three splits
  are disjoint and deterministic. Derived datasets (``digits16``,
  ``binarized_digits``, ``edges2digits``, ``shapes_color``) are built from the
  same pool in the same order, so their splits hold the same examples as
  their base's.
- tfds datasets use their own ``validation`` split where they have one (and
  ``train`` whole); otherwise ``validation`` is ``train[90%:]`` and ``train``
  is ``train[:90%]`` (tfds slicing, boundary rounded to the closest example).
"""

from __future__ import annotations

SPLITS = ("train", "validation", "test")
VALIDATION_PERCENT = 10


def num_validation(pool_size: int) -> int:
    """Examples of a training pool of ``pool_size`` that go to ``validation``: the last
    ``pool_size // 10``."""
    return pool_size * VALIDATION_PERCENT // 100


def pool_slice(split: str, pool_size: int) -> slice:
    """The part of the training pool that is ``split`` ("train" or "validation")."""
    boundary = pool_size - num_validation(pool_size)
    return slice(0, boundary) if split == "train" else slice(boundary, pool_size)


def tfds_split(split: str, available) -> str:
    """The tfds split string of ``split`` given the dataset's ``available`` split names:
    its own ``validation`` where it has one, else the last 10% of ``train``."""
    if split not in ("train", "validation") or "validation" in available:
        return split
    cut = 100 - VALIDATION_PERCENT
    return f"train[:{cut}%]" if split == "train" else f"train[{cut}%:]"
