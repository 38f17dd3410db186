"""Tests of genjax/data/iterator.py: order, coverage, resumption, stopping, errors."""

import json

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from genjax.data import BatchIterator


def _index_getter(indices: np.ndarray) -> dict[str, np.ndarray]:
    """A source whose example i is i itself."""
    return {"index": np.asarray(indices)}


def _make(num_examples=10, batch_size=3, **kwargs) -> BatchIterator:
    return BatchIterator(_index_getter, num_examples, batch_size, **kwargs)


def _take(iterator: BatchIterator, count: int) -> list[np.ndarray]:
    return [next(iterator)["index"] for _ in range(count)]


def test_epoch_order_is_the_documented_permutation():
    iterator = _make(10, 5, seed=7)
    for epoch in range(3):
        expected = np.random.default_rng([7, epoch]).permutation(10)
        np.testing.assert_array_equal(np.concatenate(_take(iterator, 2)), expected)


def test_without_shuffle_order_is_sequential():
    batches = _take(_make(10, 4, shuffle=False, drop_remainder=False), 3)
    np.testing.assert_array_equal(np.concatenate(batches), np.arange(10))


def test_without_drop_every_example_once_per_epoch():
    iterator = _make(10, 3, drop_remainder=False)
    assert iterator.batches_per_epoch == 4
    for _ in range(3):
        batches = _take(iterator, 4)
        assert [len(b) for b in batches] == [3, 3, 3, 1]
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(10))


def test_with_drop_batches_are_full_and_distinct_within_an_epoch():
    iterator = _make(10, 3, seed=1)
    assert iterator.batches_per_epoch == 3
    for epoch in range(2):
        batches = _take(iterator, 3)
        assert all(len(b) == 3 for b in batches)
        seen = np.concatenate(batches)
        assert len(np.unique(seen)) == 9
        np.testing.assert_array_equal(seen, np.random.default_rng([1, epoch]).permutation(10)[:9])


def test_seeds_change_the_order_and_the_same_seed_repeats_it():
    first = np.concatenate(_take(_make(100, 10, seed=0), 10))
    again = np.concatenate(_take(_make(100, 10, seed=0), 10))
    other = np.concatenate(_take(_make(100, 10, seed=1), 10))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_epochs_differ():
    iterator = _make(100, 100)
    assert not np.array_equal(next(iterator)["index"], next(iterator)["index"])


@given(
    num_examples=st.integers(1, 12),
    batch_size=st.integers(1, 5),
    drop_remainder=st.booleans(),
    shuffle=st.booleans(),
    cut=st.integers(0, 20),
)
def test_resume_gives_the_uninterrupted_batches(
    num_examples, batch_size, drop_remainder, shuffle, cut
):
    assume(not (drop_remainder and batch_size > num_examples))
    kwargs = dict(seed=3, shuffle=shuffle, drop_remainder=drop_remainder)
    total = 25
    reference = _take(_make(num_examples, batch_size, **kwargs), total)

    first = _make(num_examples, batch_size, **kwargs)
    head = _take(first, cut)
    state = json.loads(json.dumps(first.get_state()))
    resumed = _make(num_examples, batch_size, **kwargs)
    resumed.set_state(state)
    tail = _take(resumed, total - cut)

    assert len(reference) == len(head) + len(tail)
    for expected, got in zip(reference, head + tail):
        np.testing.assert_array_equal(expected, got)


def test_state_is_the_position_of_the_next_batch():
    iterator = _make(10, 3)
    assert iterator.get_state() == {"epoch": 0, "index": 0}
    _take(iterator, 2)
    assert iterator.get_state() == {"epoch": 0, "index": 6}
    _take(iterator, 1)  # the last full batch: 1 example dropped
    assert iterator.get_state() == {"epoch": 1, "index": 0}


def test_num_epochs_stops():
    iterator = _make(10, 3, num_epochs=2, drop_remainder=False)
    assert len(list(iterator)) == 8
    with pytest.raises(StopIteration):
        next(iterator)
    iterator.set_state({"epoch": 1, "index": 9})
    assert len(next(iterator)["index"]) == 1
    with pytest.raises(StopIteration):
        next(iterator)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size must be positive"),
        (dict(batch_size=11), "larger than the 10 examples"),
        (dict(num_epochs=0), "num_epochs"),
        (dict(seed=-1), "seed"),
        (dict(num_examples=0), "num_examples"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    arguments = dict(num_examples=10, batch_size=3) | kwargs
    with pytest.raises(ValueError, match=match):
        BatchIterator(_index_getter, **arguments)


def test_batch_larger_than_the_split_is_allowed_without_drop():
    assert len(next(_make(10, 11, drop_remainder=False))["index"]) == 10


@pytest.mark.parametrize(
    "state",
    [
        {"epoch": 0},
        {"epoch": -1, "index": 0},
        {"epoch": 0, "index": 9},
        {"epoch": 0, "index": -1},
        {"epoch": 0, "index": 4},
    ],
)
def test_bad_states_are_rejected(state):
    with pytest.raises(ValueError, match="state"):
        _make(10, 3).set_state(state)


def test_process_rows_make_up_the_global_batches_at_the_same_positions():
    """Two processes' rows (0:4 and 4:6 of a batch of 6) concatenate to the global batches,
    read only those examples, and keep the global iterator's position."""
    reads = []

    def getter(indices):
        reads.append(np.asarray(indices))
        return _index_getter(indices)

    whole = _make(20, 6, seed=3)
    parts = [BatchIterator(getter, 20, 6, seed=3, rows=rows) for rows in ((0, 4), (4, 6))]
    for _ in range(7):                               # across two epoch boundaries
        batches = [next(p)["index"] for p in parts]
        assert [len(b) for b in batches] == [4, 2]
        np.testing.assert_array_equal(np.concatenate(batches), next(whole)["index"])
        assert parts[0].get_state() == parts[1].get_state() == whole.get_state()
    assert all(len(r) in (4, 2) for r in reads)


def test_rows_must_lie_in_the_batch():
    for rows in ((0, 0), (2, 7), (-1, 3)):
        with pytest.raises(ValueError, match="rows"):
            _make(10, 6, rows=rows)
    with pytest.raises(ValueError, match="drop_remainder"):
        _make(10, 6, rows=(0, 3), drop_remainder=False)
