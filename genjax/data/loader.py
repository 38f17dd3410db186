"""``load``: one entry point for embedded and tfds datasets."""

from __future__ import annotations

from genjax.data.embedded import EMBEDDED, load_embedded
from genjax.data.info import DatasetInfo
from genjax.data.iterator import BatchIterator
from genjax.data.tfds_source import load_tfds


def load(
    name: str,
    split: str,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    num_epochs: int | None = None,
    data_dir: str | None = None,
    drop_remainder: bool = True,
    rows: tuple[int, int] | None = None,
) -> tuple[BatchIterator, DatasetInfo]:
    """Batches of one split of a dataset, and its description.

    Names in :func:`list_datasets` are embedded (``data_dir`` is ignored);
    any other name, with or without a ``"tfds:"`` prefix, is a prepared tfds
    dataset under ``data_dir`` (tfds' default when ``None``), read offline.

    Batches are dicts of numpy arrays ``[B, ...]``: ``image`` uint8
    ``[B, H, W, C]``, ``label`` int32 ``[B]`` where the data has labels,
    ``source`` uint8 ``[B, H, W, C]`` for paired data, ``factors`` float32
    ``[B, F]`` for shapes, ``point`` float32 ``[B, 2]`` for toy2d.
    See :class:`BatchIterator` for ``shuffle``, ``seed``, ``num_epochs``,
    ``drop_remainder`` and ``rows`` (one process's rows of every batch).

    Raises:
      ValueError: bad ``batch_size``, unknown dataset or split, or a batch
        larger than the split with ``drop_remainder``.
      genjax.data.DatasetNotPreparedError: a tfds dataset is not on disk.
    """
    if batch_size <= 0:  # checked before any data is read
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if name in EMBEDDED:
        getter, info = load_embedded(name, split)
    else:
        getter, info = load_tfds(name, split, data_dir)
    iterator = BatchIterator(
        getter,
        info.num_examples,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        num_epochs=num_epochs,
        drop_remainder=drop_remainder,
        rows=rows,
    )
    return iterator, info
