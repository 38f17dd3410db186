"""A deterministic, resumable iterator of batches over a random-access source.

The order of epoch ``e`` is ``np.random.default_rng([seed, e]).permutation(n)``
(or ``arange(n)`` without shuffling), so the position ``(epoch, index)`` is the
whole state: a trainer saves :meth:`BatchIterator.get_state` with its
checkpoint and a resumed run reads exactly the batches an uninterrupted run
reads. Batches never straddle two epochs.

With ``rows=(start, stop)`` the iterator walks the global batches as before but
reads and returns only rows ``start:stop`` of each: one process's share of the
global batch in multi-process training. The position is that of the global
batches, the same in every process.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Batch = dict[str, np.ndarray]
Getter = Callable[[np.ndarray], Batch]


class BatchIterator:
    """Iterates over batches ``getter(indices)`` of a source of ``num_examples`` examples.

    Args:
      getter: maps int indices ``[B]`` to a batch, a dict of arrays ``[B, ...]``.
      num_examples: number of examples ``n`` in the source.
      batch_size: examples per batch ``B``.
      shuffle: visit the examples of each epoch in a fresh random order.
      seed: non-negative integer; epoch ``e`` uses
        ``np.random.default_rng([seed, e]).permutation(n)``.
      num_epochs: stop (``StopIteration``) after this many epochs; ``None``
        iterates forever.
      drop_remainder: leave out the last ``n % B`` examples of each epoch so
        that every batch has ``B`` examples; otherwise the last batch of an
        epoch is smaller.
      rows: ``(start, stop)`` with ``0 <= start < stop <= B``: return only these rows
        of every batch (needs ``drop_remainder``); ``None``: all of them.
    """

    def __init__(
        self,
        getter: Getter,
        num_examples: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_epochs: int | None = None,
        drop_remainder: bool = True,
        rows: tuple[int, int] | None = None,
    ):
        if num_examples <= 0:
            raise ValueError(f"num_examples must be positive, got {num_examples}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if drop_remainder and batch_size > num_examples:
            raise ValueError(
                f"batch_size {batch_size} is larger than the {num_examples} examples of the "
                "split: with drop_remainder=True no batch would ever be produced; use a "
                "smaller batch_size or drop_remainder=False"
            )
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if num_epochs is not None and num_epochs <= 0:
            raise ValueError(f"num_epochs must be positive or None, got {num_epochs}")
        if rows is not None:
            start, stop = rows
            if not (drop_remainder and 0 <= start < stop <= batch_size):
                raise ValueError(f"rows {rows} must satisfy 0 <= start < stop <= batch_size "
                                 f"{batch_size}, with drop_remainder=True")
            rows = (int(start), int(stop))
        self._rows = rows
        self._getter = getter
        self._num_examples = num_examples
        self._batch_size = batch_size
        self._shuffle = shuffle
        self._seed = seed
        self._num_epochs = num_epochs
        # Examples read per epoch: batches cover order[:epoch_end].
        self._epoch_end = (
            num_examples - num_examples % batch_size if drop_remainder else num_examples
        )
        self._epoch = 0
        self._index = 0
        self._order_cache: tuple[int, np.ndarray] | None = None

    @property
    def batches_per_epoch(self) -> int:
        """Number of batches in one epoch (the last may be smaller without drop_remainder)."""
        return -(-self._epoch_end // self._batch_size)

    def _order(self, epoch: int) -> np.ndarray:
        """The example order of ``epoch``: int64 ``[n]``."""
        if self._order_cache is None or self._order_cache[0] != epoch:
            if self._shuffle:
                order = np.random.default_rng([self._seed, epoch]).permutation(self._num_examples)
            else:
                order = np.arange(self._num_examples)
            self._order_cache = (epoch, order)
        return self._order_cache[1]

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> Batch:
        """The next batch, a dict of arrays ``[B, ...]``."""
        if self._num_epochs is not None and self._epoch >= self._num_epochs:
            raise StopIteration
        indices = self._order(self._epoch)[self._index : self._index + self._batch_size]
        self._index = min(self._index + self._batch_size, self._epoch_end)
        if self._index == self._epoch_end:
            self._epoch += 1
            self._index = 0
        if self._rows is not None:
            indices = indices[self._rows[0] : self._rows[1]]
        return self._getter(indices)

    def get_state(self) -> dict[str, int]:
        """Position of the next batch, JSON-serialisable: ``{"epoch": e, "index": i}``.

        ``index`` counts the examples of epoch ``e`` already read.
        """
        return {"epoch": self._epoch, "index": self._index}

    def set_state(self, state: dict[str, int]) -> None:
        """Moves to a position returned by :meth:`get_state` (of an iterator built alike)."""
        if set(state) != {"epoch", "index"}:
            raise ValueError(f"state must have exactly the keys 'epoch' and 'index', got {state}")
        epoch, index = int(state["epoch"]), int(state["index"])
        if epoch < 0 or not 0 <= index < self._epoch_end or index % self._batch_size:
            raise ValueError(
                f"invalid state {state}: need epoch >= 0 and index a multiple of the batch "
                f"size {self._batch_size} below {self._epoch_end}"
            )
        self._epoch, self._index = epoch, index
