"""What a loaded split holds: :class:`DatasetInfo`."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static description of one split of a dataset.

    Attributes:
      name: the name given to :func:`genjax.data.load`.
      kind: ``"image"`` (batches hold ``image`` uint8 ``[B, H, W, C]``) or
        ``"points"`` (batches hold ``point`` float32 ``[B, D]``).
      shape: per-example shape of the main key: ``(H, W, C)`` or ``(D,)``.
      num_levels: number of discrete values per pixel (256 for 8-bit images,
        2 for binarized ``{0, 1}`` images), ``None`` for continuous points.
      num_classes: number of label classes, ``None`` when there is no label.
      num_examples: number of examples in this split.
      split: the split name.
      keys: the keys of every batch, e.g. ``("image", "label")``.
      factor_names: names of the columns of ``factors`` ``[B, F]`` (shapes
        datasets only).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    num_levels: int | None
    num_classes: int | None
    num_examples: int
    split: str
    keys: tuple[str, ...]
    factor_names: tuple[str, ...] = ()
