"""genjax/train/distributed.py, the fsdp sharding rule and the device prefetch: the parts
that run in one process. Multi-process and multi-device runs: test_multihost.py."""

from __future__ import annotations

import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from genjax.data import BatchIterator
from genjax.train import distributed
from genjax.train import step as step_lib
from genjax.train.prefetch import Prefetcher


def test_fsdp_shards_large_leaves_on_their_largest_divisible_dimension():
    spec = step_lib._fsdp_spec
    assert spec((64, 512), 2) == P(None, "data")          # the largest dimension
    assert spec((512, 64), 4) == P("data")
    assert spec((3, 3, 64, 64), 2) == P(None, None, "data")   # the first of equals
    assert spec((1025,), 2) == P()                          # nothing divisible: replicated
    assert spec((3, 601), 4) == P()
    assert spec((602, 3), 8) == P()
    assert spec((30, 30), 2) == P()                          # small (< FSDP_MIN_SIZE)
    assert spec((), 2) == P()
    assert spec((4096,), 1) == P()                           # one device


def test_one_process_reads_the_whole_batch():
    for parallel in ("none", "mesh", "fsdp", "pmap"):
        assert step_lib.process_rows(16, parallel) == (0, 16)
        distributed.check_parallel(parallel)       # any mode is fine for one process


def test_initialize_does_nothing_unless_asked(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "GENJAX_NUM_PROCESSES", "GENJAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.requested()
    assert distributed.initialize() is False
    assert distributed.requested(num_processes=2) and distributed.requested(auto=True)
    monkeypatch.setenv("GENJAX_NUM_PROCESSES", "2")
    assert distributed.requested()
    assert distributed._env_int("GENJAX_NUM_PROCESSES") == 2
    monkeypatch.setenv("GENJAX_PROCESS_ID", "one")
    with pytest.raises(ValueError, match="GENJAX_PROCESS_ID"):
        distributed._env_int("GENJAX_PROCESS_ID")


def _positions_and_batches(depth: int, count: int):
    it = BatchIterator(lambda i: {"index": np.asarray(i)}, 10, 3, seed=1)

    def produce():
        return next(it)["index"], it.get_state()

    with Prefetcher(produce, depth) as ahead:
        return [next(ahead) for _ in range(count)]


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_prefetch_keeps_the_order_and_the_position_of_each_batch(depth):
    """The batches and, with each, the position after it, as without prefetching."""
    plain = _positions_and_batches(0, 8)
    ahead = _positions_and_batches(depth, 8)
    for (b0, s0), (b1, s1) in zip(plain, ahead):
        np.testing.assert_array_equal(b0, b1)
        assert s0 == s1
    assert plain[-1][1] == {"epoch": 2, "index": 6}


def test_prefetch_raises_the_producers_error_in_order():
    calls = {"n": 0}

    def produce():
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("source failed")
        return calls["n"]

    with Prefetcher(produce, 2) as ahead:
        assert [next(ahead), next(ahead)] == [1, 2]
        with pytest.raises(RuntimeError, match="source failed"):
            next(ahead)
    with pytest.raises(ValueError, match="depth"):
        Prefetcher(produce, -1)
