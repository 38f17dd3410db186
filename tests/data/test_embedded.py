"""Tests of the embedded datasets (genjax/data/{embedded,digits,shapes,toy2d}.py) via ``load``."""

import time

import numpy as np
import pytest

from genjax.data import list_datasets, load
from genjax.data import shapes as shapes_lib

# (train, validation, test): validation is the last 10% of the old 1500 / 8000 / 10000 train pool.
SIZES = {
    "digits": (1350, 150, 297),
    "digits16": (1350, 150, 297),
    "binarized_digits": (1350, 150, 297),
    "edges2digits": (1350, 150, 297),
    "shapes": (7200, 800, 1000),
    "shapes_color": (7200, 800, 1000),
    "toy2d/moons": (9000, 1000, 2000),
    "toy2d/rings": (9000, 1000, 2000),
    "toy2d/checkerboard": (9000, 1000, 2000),
    "toy2d/gmm8": (9000, 1000, 2000),
    "toy2d/ring8": (9000, 1000, 2000),
    "toy2d/grid25": (9000, 1000, 2000),
}
SPLITS = ("train", "validation", "test")
SHAPES = {
    "digits": (8, 8, 1),
    "digits16": (16, 16, 1),
    "binarized_digits": (16, 16, 1),
    "edges2digits": (16, 16, 1),
    "shapes": (32, 32, 1),
    "shapes_color": (32, 32, 3),
}


def _whole(name: str, split: str) -> dict[str, np.ndarray]:
    """The whole split in its stored order, as one batch."""
    iterator, info = load(name, split, batch_size=10**6, shuffle=False, drop_remainder=False)
    return next(iterator)


def test_list_datasets_names_every_embedded_dataset():
    assert list_datasets() == tuple(sorted(SIZES))


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", sorted(SIZES))
def test_batches_match_the_info(name, split):
    iterator, info = load(name, split, batch_size=16)
    batch = next(iterator)
    assert info.name == name and info.split == split
    assert info.num_examples == SIZES[name][SPLITS.index(split)]
    assert tuple(batch) == info.keys
    main = batch["point" if info.kind == "points" else "image"]
    assert main.shape == (16,) + info.shape
    if info.kind == "points":
        assert info.shape == (2,) and main.dtype == np.float32
        assert info.num_levels is None and info.num_classes is None
        assert np.all(np.isfinite(main)) and np.abs(main).max() < 5
    else:
        assert info.shape == SHAPES[name] and main.dtype == np.uint8
        assert main.max() < info.num_levels
        assert batch["label"].dtype == np.int32
        assert 0 <= batch["label"].min() and batch["label"].max() < info.num_classes
    if "source" in batch:
        assert batch["source"].shape == batch["image"].shape and batch["source"].dtype == np.uint8
    if "factors" in batch:
        assert batch["factors"].dtype == np.float32
        assert batch["factors"].shape == (16, len(info.factor_names))


@pytest.mark.parametrize("name", ["digits16", "shapes", "toy2d/moons", "edges2digits"])
def test_loads_are_deterministic_and_seeded(name):
    first = [next(load(name, "train", 64, seed=5)[0]) for _ in range(2)]
    other = next(load(name, "train", 64, seed=6)[0])
    for key in first[0]:
        np.testing.assert_array_equal(first[0][key], first[1][key])
    key = next(iter(other))
    assert not np.array_equal(first[0][key], other[key])


def test_unknown_split_names_the_valid_ones():
    with pytest.raises(ValueError, match="'train', 'validation', 'test'"):
        load("digits", "val", 8)


def _rows(batch: dict) -> set:
    """Each example of a whole split as bytes (every key), for set comparisons."""
    n = len(next(iter(batch.values())))
    return {b"".join(np.ascontiguousarray(batch[k][i]).tobytes() for k in sorted(batch))
            for i in range(n)}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_validation_is_the_last_tenth_of_the_old_train_split(name):
    """train + validation = the generator's training pool in its order (the old train split),
    validation its last 10%; reloading gives the same arrays."""
    from genjax.data.embedded import EMBEDDED

    pool = EMBEDDED[name].arrays("train")
    train, validation = _whole(name, "train"), _whole(name, "validation")
    assert len(next(iter(pool.values()))) == SIZES[name][0] + SIZES[name][1]
    for key in pool:
        np.testing.assert_array_equal(np.concatenate([train[key], validation[key]]), pool[key])
        np.testing.assert_array_equal(_whole(name, "validation")[key], validation[key])


@pytest.mark.parametrize("name", ["digits", "edges2digits", "shapes", "shapes_color",
                                  "toy2d/moons", "toy2d/grid25"])
def test_validation_shares_no_example_with_train_or_test(name):
    """By content: the sklearn digits (all 1,797 distinct as image + label), the shapes'
    continuous factors and the toy2d points never repeat, so no example is in two splits."""
    train, validation, test = (_rows(_whole(name, split)) for split in SPLITS)
    assert len(validation) == SIZES[name][1]          # no duplicate within the split either
    assert not validation & train and not validation & test and not train & test


def test_derived_datasets_split_like_their_base():
    base = _whole("digits16", "validation")
    for name in ("binarized_digits", "edges2digits"):
        np.testing.assert_array_equal(_whole(name, "validation")["label"], base["label"])
    np.testing.assert_array_equal(_whole("edges2digits", "validation")["image"], base["image"])
    np.testing.assert_array_equal(_whole("shapes_color", "validation")["factors"][:, :5],
                                  _whole("shapes", "validation")["factors"])


def test_unknown_dataset_lists_the_embedded_ones():
    with pytest.raises(ValueError, match="digits16"):
        load("toy2d/spirals", "train", 8)


@pytest.mark.parametrize("batch_size, match", [(0, "positive"), (1351, "larger than the 1350")])
def test_bad_batch_sizes(batch_size, match):
    with pytest.raises(ValueError, match=match):
        load("digits", "train", batch_size)


def test_cached_arrays_cannot_be_modified_through_a_batch():
    batch = next(load("digits", "train", 8, shuffle=False)[0])
    batch["image"][:] = 0
    assert next(load("digits", "train", 8, shuffle=False)[0])["image"].any()


# --- digits -------------------------------------------------------------------------------------


def test_digit_splits_partition_the_sklearn_digits():
    from sklearn.datasets import load_digits

    reference = load_digits()
    raw = reference.images.astype(np.uint8).reshape(len(reference.images), -1)
    rows = {tuple(r) + (t,) for r, t in zip(raw, reference.target)}
    train, validation, test = (_whole("digits", split) for split in SPLITS)

    def keyed(batch):
        return [
            tuple(r) + (t,)
            for r, t in zip(batch["image"].reshape(len(batch["image"]), -1), batch["label"])
        ]

    train_rows, val_rows, test_rows = keyed(train), keyed(validation), keyed(test)
    assert not set(train_rows) & set(test_rows)
    assert not set(val_rows) & (set(train_rows) | set(test_rows))
    assert set(train_rows) | set(val_rows) | set(test_rows) == rows
    assert len(train_rows) + len(val_rows) + len(test_rows) == len(reference.images)
    assert set(np.unique(train["image"])) == set(range(17))
    assert load("digits", "train", 8)[1].num_levels == 17


def test_digits16_is_an_upsampled_digits():
    small, large = _whole("digits", "train"), _whole("digits16", "train")
    np.testing.assert_array_equal(small["label"], large["label"])
    pooled = large["image"].astype(np.float32).reshape(-1, 8, 2, 8, 2).mean(axis=(2, 4))
    correlation = np.corrcoef(pooled.ravel(), small["image"].astype(np.float32).ravel())[0, 1]
    assert correlation > 0.95


def test_binarized_digits_threshold_digits16():
    binary, gray = _whole("binarized_digits", "test"), _whole("digits16", "test")
    assert set(np.unique(binary["image"])) == {0, 1}
    np.testing.assert_array_equal(binary["image"] == 1, gray["image"] > 127)
    np.testing.assert_array_equal(binary["label"], gray["label"])


def test_edges_are_nonempty_and_lie_within_the_dilated_digit():
    paired, gray = _whole("edges2digits", "train"), _whole("digits16", "train")
    np.testing.assert_array_equal(paired["image"], gray["image"])
    edges = paired["source"][..., 0]
    assert set(np.unique(edges)) == {0, 255}
    assert (edges > 0).reshape(len(edges), -1).sum(axis=1).min() > 0
    digit = np.pad(gray["image"][..., 0] > 0, ((0, 0), (1, 1), (1, 1)))
    dilated = np.zeros_like(edges, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            dilated |= digit[:, dy : dy + 16, dx : dx + 16]
    assert not np.any((edges > 0) & ~dilated)
    assert (edges > 0).sum() < (gray["image"] > 0).sum()  # outlines, not filled digits


# --- shapes -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_train():
    return _whole("shapes", "train")


def test_shape_factors_are_in_range(shapes_train):
    factors = shapes_train["factors"]
    np.testing.assert_array_equal(shapes_train["label"], factors[:, 0])
    assert set(np.unique(factors[:, 0])) == {0, 1, 2}
    assert 0.5 <= factors[:, 1].min() and factors[:, 1].max() <= 1.0
    assert 0.0 <= factors[:, 2].min() and factors[:, 2].max() < 2 * np.pi
    assert 0.0 <= factors[:, 3:].min() and factors[:, 3:].max() <= 1.0
    assert set(np.unique(shapes_train["image"])) == {0, 255}


def test_larger_scale_gives_more_foreground(shapes_train):
    area = (shapes_train["image"] > 0).reshape(len(shapes_train["image"]), -1).sum(axis=1)
    scale, shape = shapes_train["factors"][:, 1], shapes_train["label"]
    assert area.min() > 0
    for k in range(3):
        small = area[(shape == k) & (scale < 0.6)].mean()
        large = area[(shape == k) & (scale > 0.9)].mean()
        assert large > 2.0 * small  # area grows as scale**2: (0.95 / 0.55)**2 ~ 3


def test_positions_move_the_centroid(shapes_train):
    mask = shapes_train["image"][..., 0] > 0
    area = mask.sum(axis=(1, 2))
    coords = np.arange(32) + 0.5
    centroid_x = (mask.sum(axis=1) * coords).sum(axis=1) / area
    centroid_y = (mask.sum(axis=2) * coords).sum(axis=1) / area
    assert np.corrcoef(centroid_x, shapes_train["factors"][:, 3])[0, 1] > 0.97
    assert np.corrcoef(centroid_y, shapes_train["factors"][:, 4])[0, 1] > 0.97


def test_rotation_turns_the_ellipse(shapes_train):
    factors = shapes_train["factors"]
    large_ellipses = (shapes_train["label"] == 1) & (factors[:, 1] > 0.8)
    mask = shapes_train["image"][large_ellipses, :, :, 0] > 0
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    x, y = cols[None] * mask, -rows[None] * mask  # y points up
    area = mask.sum(axis=(1, 2))
    mx, my = x.sum(axis=(1, 2)) / area, y.sum(axis=(1, 2)) / area
    cxx = (x**2).sum(axis=(1, 2)) / area - mx**2
    cyy = (y**2).sum(axis=(1, 2)) / area - my**2
    cxy = (x * y).sum(axis=(1, 2)) / area - mx * my
    major_axis = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
    difference = np.angle(np.exp(2j * (major_axis - factors[large_ellipses, 2]))) / 2
    assert np.median(np.abs(difference)) < 0.15


def test_shapes_color_paints_the_shapes(shapes_train):
    colored = _whole("shapes_color", "train")
    np.testing.assert_array_equal(colored["factors"][:, :5], shapes_train["factors"])
    np.testing.assert_array_equal(
        colored["image"].max(axis=-1, keepdims=True), shapes_train["image"]
    )
    color = shapes_lib.COLORS[colored["factors"][:, 5].astype(int)]
    foreground = shapes_train["image"][..., 0] > 0
    np.testing.assert_array_equal(
        colored["image"][foreground],
        np.broadcast_to(color[:, None, None], colored["image"].shape)[foreground],
    )
    assert len(np.unique(colored["factors"][:, 5])) == len(shapes_lib.COLORS)


def test_shapes_generation_is_fast():
    shapes_lib.shapes.cache_clear()
    start = time.perf_counter()
    for split in ("train", "test"):
        shapes_lib.shapes(split)
    assert time.perf_counter() - start < 2.0


# --- toy2d --------------------------------------------------------------------------------------


def _points(density: str, split: str = "train") -> np.ndarray:
    return _whole(f"toy2d/{density}", split)["point"]


@pytest.mark.parametrize("density", ["moons", "rings", "checkerboard", "gmm8"])
def test_toy2d_is_roughly_standardized_and_splits_differ(density):
    train, test = _points(density, "train"), _points(density, "test")
    assert np.abs(train.mean(axis=0)).max() < 0.3
    assert 0.5 < train.std() < 3.0
    assert not np.isin(test.view(np.int64), train.view(np.int64)).any()  # no shared point
    np.testing.assert_allclose(train.mean(axis=0), test.mean(axis=0), atol=0.15)


def test_gmm8_has_eight_equal_modes_on_the_circle():
    points = _points("gmm8")
    angles = 2 * np.pi * np.arange(8) / 8
    centres = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    distances = np.linalg.norm(points[:, None] - centres[None], axis=-1)
    nearest = distances.argmin(axis=1)
    assert distances.min(axis=1).max() < 0.6  # 6 standard deviations
    np.testing.assert_allclose(np.bincount(nearest, minlength=8) / len(points), 1 / 8, atol=0.015)
    assert 0.08 < (points - centres[nearest]).std() < 0.12


def test_checkerboard_points_lie_in_the_black_squares():
    points = _points("checkerboard")
    cells = np.floor(points).astype(int)
    assert np.all((cells.sum(axis=1) % 2) == 0)
    assert np.all((points >= -2) & (points < 2))
    _, counts = np.unique(cells, axis=0, return_counts=True)
    assert len(counts) == 8
    np.testing.assert_allclose(counts / len(points), 1 / 8, atol=0.015)


def test_rings_have_radii_one_two_three():
    radius = np.linalg.norm(_points("rings"), axis=1)
    ring = np.rint(radius)
    assert set(np.unique(ring)) == {1.0, 2.0, 3.0}
    assert np.abs(radius - ring).max() < 0.5
    np.testing.assert_allclose(np.bincount(ring.astype(int))[1:] / len(radius), 1 / 3, atol=0.02)


def test_moons_lie_on_two_half_circles():
    points = _points("moons") / 2.0 + np.array([0.5, 0.25])  # back to unit half circles
    upper = np.abs(np.linalg.norm(points, axis=1) - 1.0)
    lower = np.abs(np.linalg.norm(points - np.array([1.0, 0.5]), axis=1) - 1.0)
    assert np.median(np.minimum(upper, lower)) < 0.1
    on_upper = upper < lower
    assert 0.45 < on_upper.mean() < 0.55
    assert np.median(points[on_upper, 1]) > 0.3 and np.median(points[~on_upper, 1]) < 0.2
