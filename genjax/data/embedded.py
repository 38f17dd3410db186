"""The embedded datasets: generated in memory, offline and deterministic.

``EMBEDDED`` maps each name to a function ``split -> dict of arrays`` (the
whole split, cached; its ``"train"`` is the whole training pool) and the
metadata the arrays do not carry. Every embedded dataset has the splits
``"train"``, ``"validation"`` and ``"test"`` (:mod:`genjax.data.splits`):
``validation`` is the last 10% of the pool, ``train`` the first 90%.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import numpy as np

from genjax.data import digits, shapes, toy2d
from genjax.data.info import DatasetInfo
from genjax.data.iterator import Batch, Getter
from genjax.data.splits import SPLITS, pool_slice


@dataclasses.dataclass(frozen=True)
class _Embedded:
    """How to build one embedded dataset.

    Attributes:
      arrays: ``"train"`` (the whole training pool) or ``"test"`` -> a dict of
        read-only arrays ``[N, ...]``; its first key is the main one (``image`` or
        ``point``).
      num_levels, num_classes, factor_names: as in :class:`DatasetInfo`.
    """

    arrays: Callable[[str], dict[str, np.ndarray]]
    num_levels: int | None
    num_classes: int | None
    factor_names: tuple[str, ...] = ()


EMBEDDED: dict[str, _Embedded] = {
    "digits": _Embedded(digits.digits, num_levels=17, num_classes=10),
    "digits16": _Embedded(digits.digits16, num_levels=256, num_classes=10),
    "binarized_digits": _Embedded(digits.binarized_digits, num_levels=2, num_classes=10),
    "edges2digits": _Embedded(digits.edges2digits, num_levels=256, num_classes=10),
    "shapes": _Embedded(
        shapes.shapes,
        num_levels=256,
        num_classes=len(shapes.SHAPE_NAMES),
        factor_names=shapes.FACTOR_NAMES,
    ),
    "shapes_color": _Embedded(
        functools.partial(shapes.shapes, color=True),
        num_levels=256,
        num_classes=len(shapes.SHAPE_NAMES),
        factor_names=shapes.FACTOR_NAMES + ("color",),
    ),
    **{
        f"toy2d/{density}": _Embedded(
            functools.partial(toy2d.toy2d, density), num_levels=None, num_classes=None
        )
        for density in toy2d.DENSITIES
    },
}


def list_datasets() -> tuple[str, ...]:
    """Names of the embedded datasets, sorted. Any other name is looked up in tfds."""
    return tuple(sorted(EMBEDDED))


def load_embedded(name: str, split: str) -> tuple[Getter, DatasetInfo]:
    """The getter (int indices ``[B]`` -> batch of arrays ``[B, ...]``) and info of a split.

    Raises:
      ValueError: ``split`` is not one of ``SPLITS``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} of {name!r}: valid splits are {SPLITS}")
    spec = EMBEDDED[name]
    if split == "test":
        arrays = spec.arrays("test")
    else:  # train and validation: views of the pool's first 90% and last 10%
        pool = spec.arrays("train")
        part = pool_slice(split, len(next(iter(pool.values()))))
        arrays = {key: array[part] for key, array in pool.items()}
    main_key = next(iter(arrays))

    def getter(indices: np.ndarray) -> Batch:
        return {key: array[indices] for key, array in arrays.items()}

    info = DatasetInfo(
        name=name,
        kind="points" if main_key == "point" else "image",
        shape=arrays[main_key].shape[1:],
        num_levels=spec.num_levels,
        num_classes=spec.num_classes,
        num_examples=len(arrays[main_key]),
        split=split,
        keys=tuple(arrays),
        factor_names=spec.factor_names,
    )
    return getter, info
