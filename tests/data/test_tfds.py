"""Tests of genjax/data/tfds_source.py: offline failure, a real prepared dataset, tfds mocks."""

import json
import socket
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from genjax.data import DatasetNotPreparedError, load, tfds_source


class GenjaxTinyImages(tfds.core.GeneratorBasedBuilder):
    """14 examples prepared on disk by the tests: example i is a 4x4 image filled with i."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        # A rank-2 Tensor rather than an Image: encoding Images needs TensorFlow.
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(4, 4), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=3),
            }
        )
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 10), "test": self._generate_examples(10, 14)}

    def _generate_examples(self, start, stop):
        for i in range(start, stop):
            yield i, {"image": np.full((4, 4), i, np.uint8), "label": i % 3}


class _LevelsBuilder(tfds.core.GeneratorBasedBuilder):
    """6 train examples of a 2x2 image whose dtype and values the subclass sets (genjax's
    train split: the first 5, ``train[:90%]``)."""

    VERSION = tfds.core.Version("1.0.0")
    DTYPE, VALUES = np.uint8, (0, 1)

    def _info(self):
        features = tfds.features.FeaturesDict(
            {"image": tfds.features.Tensor(shape=(2, 2), dtype=self.DTYPE)})
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(6):
            yield i, {"image": np.full((2, 2), self.VALUES[i % len(self.VALUES)], self.DTYPE)}


class BinarizedGenjaxTiny(_LevelsBuilder):
    """uint8 values 0/1 under a "binarized" name: the name is not read, the dtype is."""


class GenjaxBoolImages(_LevelsBuilder):
    DTYPE, VALUES = np.bool_, (False, True)


class GenjaxWideImages(_LevelsBuilder):
    DTYPE, VALUES = np.uint16, (0, 300)


class GenjaxTwoLevelsBroken(_LevelsBuilder):
    """Declared (in FEWER_LEVELS, by the test) to hold 2 levels, but holds 0 and 7."""

    VALUES = (0, 7)


def _prepared(builder_cls, tmp_path):
    builder_cls(data_dir=str(tmp_path)).download_and_prepare(file_format="array_record")
    return str(tmp_path)


def test_levels_come_from_the_image_feature(tmp_path, monkeypatch):
    _, info = load("binarized_genjax_tiny", "train", 5,
                   data_dir=_prepared(BinarizedGenjaxTiny, tmp_path))
    assert info.num_levels == 256                      # uint8, whatever the name says
    iterator, info = load("genjax_bool_images", "train", 5,
                          data_dir=_prepared(GenjaxBoolImages, tmp_path))
    assert info.num_levels == 2
    images = next(iterator)["image"]
    assert images.dtype == np.uint8 and set(np.unique(images)) == {0, 1}
    with pytest.raises(ValueError, match="'genjax_wide_images' stores uint16 images"):
        load("genjax_wide_images", "train", 5, data_dir=_prepared(GenjaxWideImages, tmp_path))
    assert tfds_source.FEWER_LEVELS == {"binarized_mnist": 2}
    monkeypatch.setitem(tfds_source.FEWER_LEVELS, "genjax_two_levels_broken", 2)
    iterator, info = load("genjax_two_levels_broken", "train", 5,
                          data_dir=_prepared(GenjaxTwoLevelsBroken, tmp_path))
    assert info.num_levels == 2
    with pytest.raises(ValueError, match="holds pixel value 7 but has 2 levels"):
        next(iterator)


@pytest.fixture
def no_network(monkeypatch):
    """Fails any attempt to resolve a host name or open a connection."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def tiny_data_dir(tmp_path):
    builder = GenjaxTinyImages(data_dir=str(tmp_path))
    builder.download_and_prepare(file_format="array_record")
    return tmp_path


@pytest.mark.parametrize("name", ["mnist", "tfds:cifar10", "binarized_mnist", "celeb_a"])
def test_unprepared_dataset_fails_fast_offline_and_says_how_to_prepare(name, tmp_path, no_network):
    start = time.perf_counter()
    with pytest.raises(DatasetNotPreparedError) as error:
        load(name, "train", 8, data_dir=str(tmp_path))
    assert time.perf_counter() - start < 5.0
    assert isinstance(error.value, FileNotFoundError)
    message = str(error.value)
    bare = name.removeprefix("tfds:")
    assert repr(bare) in message and str(tmp_path) in message
    assert f"tfds build {bare} --data_dir {tmp_path} --file_format array_record" in message
    assert not any(tmp_path.iterdir())  # nothing was downloaded or created


def test_unknown_tfds_name_fails_fast(no_network):
    start = time.perf_counter()
    with pytest.raises(ValueError, match="unknown dataset 'no_such_dataset_xyz'.*digits16"):
        load("no_such_dataset_xyz", "train", 8)
    assert time.perf_counter() - start < 5.0


def test_prepared_dataset_is_read_offline(tiny_data_dir, no_network):
    iterator, info = load(
        "genjax_tiny_images",
        "train",
        4,
        data_dir=str(tiny_data_dir),
        num_epochs=1,
        drop_remainder=False,
    )
    assert info.shape == (4, 4, 1)  # channel axis added
    assert (info.num_examples, info.num_classes, info.num_levels) == (9, 3, 256)  # 90% of 10
    assert info.keys == ("image", "label")
    batches = list(iterator)
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    assert images.dtype == np.uint8 and images.shape == (9, 4, 4, 1) and labels.dtype == np.int32
    values = images[:, 0, 0, 0]
    assert len(set(values)) == 9 and set(values) < set(range(10))
    np.testing.assert_array_equal(labels, values % 3)
    assert np.all(images == values[:, None, None, None])


def _values(data_dir, split):
    iterator, info = load("genjax_tiny_images", split, 1, data_dir=data_dir, shuffle=False,
                          num_epochs=1)
    return [int(b["image"][0, 0, 0, 0]) for b in iterator]


def test_validation_is_the_last_tenth_of_train_without_its_own_split(tiny_data_dir):
    """No validation split in the dataset: validation = train[90%:], train = train[:90%]:
    disjoint, together the 10 train examples, apart from test, the same on every load."""
    data_dir = str(tiny_data_dir)
    train, validation, test = (_values(data_dir, s) for s in ("train", "validation", "test"))
    assert len(train) == 9 and len(validation) == 1
    assert sorted(train + validation) == list(range(10)) and sorted(test) == [10, 11, 12, 13]
    assert _values(data_dir, "validation") == validation and _values(data_dir, "train") == train


def test_a_dataset_with_a_validation_split_uses_it():
    from genjax.data.splits import tfds_split

    assert tfds_split("train", ("train", "validation", "test")) == "train"
    assert tfds_split("validation", ("train", "validation", "test")) == "validation"
    assert tfds_split("validation", ("train", "test")) == "train[90%:]"
    assert tfds_split("test", ("train", "test")) == "test"


def test_prepared_dataset_rejects_unknown_split(tiny_data_dir):
    with pytest.raises(ValueError, match="train"):
        load("genjax_tiny_images", "extra", 4, data_dir=str(tiny_data_dir))


def test_dataset_prepared_without_random_access_is_not_prepared(tiny_data_dir, no_network):
    info_path = tiny_data_dir / "genjax_tiny_images" / "1.0.0" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["fileFormat"] = "tfrecord"  # what `tfds build` writes by default
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetNotPreparedError, match="(?s)tfrecord.*--file_format array_record"):
        load("genjax_tiny_images", "train", 4, data_dir=str(tiny_data_dir))


@pytest.mark.parametrize(
    "name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3)), ("tfds:mnist", (28, 28, 1))]
)
def test_mocked_tfds_end_to_end(name, shape, tmp_path):
    with tfds.testing.mock_data(num_examples=40):
        iterator, info = load(name, "train", 8, data_dir=str(tmp_path), seed=3)
        assert (info.kind, info.shape, info.num_classes, info.num_levels) == (
            "image",
            shape,
            10,
            256,
        )
        assert info.num_examples == 40 and info.keys == ("image", "label")
        batches = [next(iterator) for _ in range(7)]  # crosses the epoch boundary after 5
        resumed, _ = load(name, "train", 8, data_dir=str(tmp_path), seed=3)
        resumed.set_state({"epoch": 0, "index": 24})
        tail = [next(resumed) for _ in range(4)]
    for batch in batches:
        assert batch["image"].shape == (8,) + shape and batch["image"].dtype == np.uint8
        assert batch["label"].dtype == np.int32
        assert 0 <= batch["label"].min() and batch["label"].max() < 10
    for expected, got in zip(batches[3:], tail):
        for key in expected:
            np.testing.assert_array_equal(expected[key], got[key])
    assert not np.array_equal(batches[0]["image"], batches[5]["image"])
