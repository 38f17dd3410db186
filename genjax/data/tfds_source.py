"""TensorFlow Datasets read offline through ``tfds.data_source`` (random access, no TensorFlow).

genjax never downloads: a dataset that is not prepared under ``data_dir``
raises :class:`DatasetNotPreparedError` within milliseconds, before any call
that could reach the network, and says how to prepare it. Inside
``tfds.testing.mock_data`` the check is skipped, since the mock serves random
examples without files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genjax.data.embedded import list_datasets
from genjax.data.info import DatasetInfo
from genjax.data.iterator import Batch, Getter
from genjax.data.splits import tfds_split

TFDS_PREFIX = "tfds:"


class DatasetNotPreparedError(FileNotFoundError):
    """A tfds dataset has no prepared random-access copy under the data directory."""


def _prepare_command(name: str, data_dir: str) -> str:
    """The shell commands that prepare ``name`` under ``data_dir`` in array_record format."""
    return (
        f'  pip install "genjax[tf]" && tfds build {name} --data_dir {data_dir} '
        "--file_format array_record\n"
        "or\n"
        '  python -c "import tensorflow_datasets as tfds; '
        f"tfds.builder('{name}', data_dir='{data_dir}')"
        ".download_and_prepare(file_format='array_record')\""
    )


def _is_mocked() -> bool:
    """Whether ``tfds.testing.mock_data`` is active: it swaps ``download_and_prepare``
    (which would download) for a no-op that lives in ``tensorflow_datasets.testing``."""
    import tensorflow_datasets as tfds

    prepare = tfds.core.DatasetBuilder.download_and_prepare
    return prepare.__module__.startswith("tensorflow_datasets.testing")


def _check_prepared(builder: Any, name: str) -> None:
    """Raises :class:`DatasetNotPreparedError` unless ``builder`` has random-access files."""
    import tensorflow_datasets as tfds

    root = str(builder.data_dir_root)
    if not builder.is_prepared():
        raise DatasetNotPreparedError(
            f"tfds dataset {name!r} is not prepared: nothing at {builder.data_dir} "
            f"(data_dir {root}). genjax does not download data; prepare it once, on a "
            f"machine with internet access if this one has none, with\n"
            f"{_prepare_command(name, root)}"
        )
    formats = builder.info.available_file_formats()
    if not formats & set(tfds.core.FileFormat.with_random_access()):
        raise DatasetNotPreparedError(
            f"tfds dataset {name!r} at {builder.data_dir} is stored only in formats "
            f"{sorted(f.value for f in formats)}, which tfds.data_source cannot read at "
            f"random; prepare it again with\n{_prepare_command(name, root)}"
        )


def _image_key(features: Any) -> str:
    """The image feature: ``"image"`` if present, else the first ``tfds.features.Image``."""
    import tensorflow_datasets as tfds

    if "image" in features:
        return "image"
    for key, feature in features.items():
        if isinstance(feature, tfds.features.Image):
            return key
    raise ValueError(f"the tfds dataset has no image feature: features are {list(features)}")


# tfds datasets whose uint8 image feature holds fewer levels than uint8 allows. Their features
# do not say so (binarized_mnist declares a plain uint8 ``Image``), so the count is recorded here;
# the getter checks every batch against it.
FEWER_LEVELS = {"binarized_mnist": 2}


def _num_levels(name: str, feature: Any) -> int:
    """Pixel levels of an image feature: 2 for bool, 256 for uint8 (``FEWER_LEVELS`` for the
    datasets above); any other dtype is refused rather than cast."""
    dtype = np.dtype(getattr(feature, "np_dtype", np.uint8))
    if dtype == np.bool_:
        return 2
    if dtype != np.uint8:
        raise ValueError(
            f"tfds dataset {name!r} stores {dtype} images; genjax models 8-bit images "
            "(uint8 or bool) and does not cast (a cast would clip levels)")
    return FEWER_LEVELS.get(name, 256)


def load_tfds(name: str, split: str, data_dir: str | None) -> tuple[Getter, DatasetInfo]:
    """Opens ``split`` of the prepared tfds dataset ``name`` (``"tfds:"`` prefix optional).

    ``split`` is ``train``, ``validation`` or ``test``: the dataset's own validation
    split where it has one, else ``validation`` is ``train[90%:]`` and ``train`` is
    ``train[:90%]`` (:mod:`genjax.data.splits`).

    Returns a getter (int indices ``[B]`` -> ``image`` uint8 ``[B, H, W, C]``
    and, when the dataset has a ``label`` feature, ``label`` int32 ``[B]``)
    and the split's :class:`DatasetInfo`. ``num_levels`` is read from the image feature's
    dtype (bool: 2, uint8: 256), except for the datasets of ``FEWER_LEVELS``; a batch with a
    value at or above it raises.

    Raises:
      ValueError: tfds knows no dataset ``name``, the split is unknown, the images have no
        fixed shape or are neither uint8 nor bool, or a batch holds a value >= num_levels.
      DatasetNotPreparedError: the data is not on disk in a random-access format.
    """
    import tensorflow_datasets as tfds  # imported on use: it takes a while.

    tfds_name = name.removeprefix(TFDS_PREFIX)
    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        raise ValueError(
            f"unknown dataset {name!r}: neither an embedded dataset {list_datasets()} nor a "
            "tfds dataset (see tfds.list_builders())"
        ) from None
    if not _is_mocked():
        _check_prepared(builder, tfds_name)
    features = builder.info.features
    image_key = _image_key(features)
    shape = tuple(features[image_key].shape)
    if None in shape:
        raise ValueError(f"tfds dataset {name!r} has images of varying shape {shape}")
    if len(shape) == 2:
        shape += (1,)
    num_levels = _num_levels(tfds_name, features[image_key])
    has_label = "label" in features
    available = tuple(builder.info.splits.keys())
    source = tfds.data_source(tfds_name, split=tfds_split(split, available),
                              data_dir=data_dir, download=False)

    def getter(indices: np.ndarray) -> Batch:
        examples = [source[int(i)] for i in indices]
        images = np.stack([np.asarray(ex[image_key]) for ex in examples]).astype(np.uint8)
        if images.max(initial=0) >= num_levels:
            raise ValueError(
                f"tfds dataset {name!r} holds pixel value {int(images.max())} but has "
                f"{num_levels} levels (read from its image feature)")
        batch = {"image": images.reshape((len(examples),) + shape)}
        if has_label:
            batch["label"] = np.array([ex["label"] for ex in examples], dtype=np.int32)
        return batch

    info = DatasetInfo(
        name=name,
        kind="image",
        shape=shape,
        num_levels=num_levels,
        num_classes=getattr(features["label"], "num_classes", None) if has_label else None,
        num_examples=len(source),
        split=split,
        keys=("image", "label") if has_label else ("image",),
    )
    return getter, info
