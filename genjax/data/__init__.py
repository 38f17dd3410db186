"""Datasets as numpy batches: embedded offline datasets and prepared tfds datasets.

``iterator, info = load("digits16", "train", batch_size=64)`` gives a
deterministic, resumable :class:`BatchIterator` of dicts of numpy arrays and
a :class:`DatasetInfo`. Embedded datasets (:func:`list_datasets`): ``digits``,
``digits16``, ``binarized_digits``, ``edges2digits``, ``shapes``,
``shapes_color`` and ``toy2d/{moons,rings,checkerboard,gmm8}``. Any other name
(``mnist``, ``cifar10``, ``tfds:NAME``, ...) is read through
``tfds.data_source`` from a prepared copy; nothing is ever downloaded.

Every dataset has the splits ``train``, ``validation`` and ``test``, disjoint and
deterministic. ``validation`` is a fixed part of the training data: for embedded
datasets the last 10% of the training pool (its last ``n // 10`` examples in the
generator's fixed order; ``train`` is the first 90%, derived datasets split like their
base); for tfds datasets their own ``validation`` split where they have one, else
``train[90%:]`` (and ``train`` is then ``train[:90%]``). See :mod:`genjax.data.splits`.
"""

from genjax.data.embedded import list_datasets
from genjax.data.info import DatasetInfo
from genjax.data.iterator import BatchIterator
from genjax.data.loader import load
from genjax.data.tfds_source import DatasetNotPreparedError

__all__ = ["BatchIterator", "DatasetInfo", "DatasetNotPreparedError", "list_datasets", "load"]
