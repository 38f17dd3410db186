"""Device prefetch: the next batches are read and put on the devices while a step runs.

``Prefetcher(produce, depth)`` calls ``produce()`` in a background thread and keeps up
to ``depth`` results ready; ``next(prefetcher)`` returns them in the order produced.
The trainer's ``produce`` reads K batches from the data iterator, places them with
:func:`genjax.train.step.put_batch` and records the iterator position after them, so
the checkpointed position is that of the last batches *consumed*, not of the ones
read ahead, and a resumed run reads the same batches. ``depth = 0`` calls
``produce()`` on demand in the calling thread (no thread).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

_POLL_S = 0.05


class Prefetcher:
    """Results of ``produce()``, up to ``depth`` of them computed ahead in a thread."""

    def __init__(self, produce: Callable[[], Any], depth: int = 2):
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        self._produce = produce
        self._depth = depth
        self._thread = None
        if depth:
            self._queue: queue.Queue = queue.Queue(maxsize=depth)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="genjax-prefetch",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = (True, self._produce())
            except BaseException as err:   # handed to the consumer, raised there
                item = (False, err)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue
            if not item[0]:
                return

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self):
        if self._thread is None:
            return self._produce()
        ok, value = self._queue.get()
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Stop the thread (results computed ahead are dropped)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
