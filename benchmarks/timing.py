"""Timing helper shared by the benchmark scripts (run as ``python benchmarks/X.py``)."""

from __future__ import annotations

import time

import jax


def best_seconds(fn, *args, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls of ``fn(*args)``, after one untimed call that
    compiles and warms up; waits for the results (``block_until_ready``)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)
