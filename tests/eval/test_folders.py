"""Metrics between folders of images: same numbers as in memory, cache, feature choice, errors."""

import os

import numpy as np
import pytest
from PIL import Image

from genjax.core import metrics
from genjax.data.digits import digits16
from genjax.eval import digits_features, folders, inception


def write_pngs(path, images, mode="L", ext="png"):
    os.makedirs(path, exist_ok=True)
    for i, image in enumerate(images):
        array = image[..., 0] if mode == "L" else image
        Image.fromarray(array, mode=mode).save(os.path.join(path, f"{i:04d}.{ext}"))
    return str(path)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENJAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(folders, "KID_SUBSETS", 10)              # 100 in real use
    return tmp_path / "cache" / "features"


@pytest.fixture(scope="module")
def digit_sets():
    images = np.asarray(digits16("test")["image"])
    return images[:120], images[120:220]


def test_folder_metrics_equal_the_in_memory_metrics(tmp_path, digit_sets):
    real_images, fake_images = digit_sets
    real = write_pngs(tmp_path / "real", real_images)
    fake = write_pngs(tmp_path / "fake", fake_images)
    results = folders.evaluate_folders(real, fake, progress=False)
    assert results["features"] == "digits"                       # auto: 16x16 grayscale
    assert (results["num_real"], results["num_fake"]) == (120, 100)
    assert results["real_shape"] == "16x16x1"

    real_feats, _ = digits_features.features_and_probs(real_images, 256)
    fake_feats, fake_probs = digits_features.features_and_probs(fake_images, 256)
    kid, kid_std = metrics.kernel_inception_distance(real_feats, fake_feats, num_subsets=10,
                                                     subset_size=100)
    expected = {
        "fid_digits": metrics.fid_from_features(real_feats, fake_feats),
        "kid_digits": kid, "kid_digits_std": kid_std,
        "is_digits": metrics.inception_score(fake_probs, num_splits=10)[0],
        "precision": metrics.precision_recall(real_feats, fake_feats, k=3)[0],
        "recall": metrics.precision_recall(real_feats, fake_feats, k=3)[1],
    }
    for key, value in expected.items():
        np.testing.assert_allclose(results[key], value, rtol=1e-6, err_msg=key)
    assert results["fid_digits"] > 0


def test_a_folder_against_itself(tmp_path, digit_sets):
    real = write_pngs(tmp_path / "real", digit_sets[0][:40])
    results = folders.evaluate_folders(real, real, features="digits", progress=False)
    features, _ = digits_features.features_and_probs(digit_sets[0][:40], 256)
    scale = np.trace(np.cov(features, rowvar=False))          # FID of a shift by one std
    assert abs(results["fid_digits"]) < 1e-6 * scale, (results["fid_digits"], scale)
    assert results["precision"] == results["recall"] == 1.0


def test_real_features_are_cached_by_folder_contents(tmp_path, digit_sets, cache, monkeypatch):
    real = write_pngs(tmp_path / "real", digit_sets[0][:20])
    fake = write_pngs(tmp_path / "fake", digit_sets[1][:20])
    first = folders.evaluate_folders(real, fake, progress=False)
    assert len(os.listdir(cache)) == 1

    extracted = []
    extract = folders._extract
    monkeypatch.setattr(folders, "_extract",
                        lambda folder, *a: extracted.append(folder.path) or extract(folder, *a))
    again = folders.evaluate_folders(real, fake, progress=False)
    assert extracted == [fake] and again == first                # real read from the cache

    Image.fromarray(digit_sets[1][30, ..., 0]).save(os.path.join(real, "0007.png"))
    changed = folders.evaluate_folders(real, fake, progress=False)
    assert extracted == [fake, real, fake] and len(os.listdir(cache)) == 2
    assert changed["fid_digits"] != first["fid_digits"]


def test_gray_rgb_and_jpeg_files_are_read_as_grayscale(tmp_path, digit_sets):
    images = digit_sets[0][:6]
    rgb = write_pngs(tmp_path / "rgb", np.repeat(images, 3, -1), mode="RGB")
    folder = folders.scan_folder(rgb)
    assert folder.channels == 3 and folder.read().shape == (6, 16, 16, 3)
    gray = write_pngs(tmp_path / "gray", images)
    assert folders.choose_features(folder, folders.scan_folder(gray)) == "digits"
    np.testing.assert_array_equal(folders.scan_folder(gray).read(), images)   # lossless

    jpeg = write_pngs(tmp_path / "jpeg", images, ext="jpg")
    Image.fromarray(images[0, ..., 0]).convert("RGBA").save(tmp_path / "jpeg" / "x.png")
    mixed = folders.scan_folder(jpeg)
    assert len(mixed) == 7 and mixed.channels == 3                # gray + RGBA -> RGB
    assert folders.choose_features(mixed, mixed) == "digits"


def test_colour_or_large_images_need_inception_weights(tmp_path):
    rng = np.random.default_rng(0)
    colour = write_pngs(tmp_path / "colour", rng.integers(0, 256, (5, 8, 8, 3), np.uint8), "RGB")
    with pytest.raises(ValueError, match="auto chose inception.*--inception_weights FILE"):
        folders.evaluate_folders(colour, colour, progress=False)
    with pytest.raises(folders.FolderError, match="needs grayscale images"):
        folders.evaluate_folders(colour, colour, features="digits", progress=False)
    large = write_pngs(tmp_path / "large", rng.integers(0, 256, (5, 20, 20, 1), np.uint8))
    gray = folders.scan_folder(large)
    assert folders.choose_features(gray, gray) == "inception"
    with pytest.raises(ValueError, match="no such file"):
        folders.evaluate_folders(large, large, "inception", str(tmp_path / "none.msgpack"))


@pytest.mark.slow
def test_inception_features_from_a_weights_file(tmp_path):
    rng = np.random.default_rng(0)
    weights = str(tmp_path / "w.msgpack")
    inception.save_inception_params(weights, inception.init_params(seed=0))
    real = write_pngs(tmp_path / "real", rng.integers(0, 256, (4, 8, 8, 3), np.uint8), "RGB")
    fake = write_pngs(tmp_path / "fake", rng.integers(0, 256, (4, 8, 8, 3), np.uint8), "RGB")
    results = folders.evaluate_folders(real, fake, inception_weights=weights, progress=False)
    assert results["features"] == "inception"
    assert results["fid_inception"] > 0 and 1.0 <= results["is_inception"] <= 1008


@pytest.mark.parametrize("files, message", [
    (None, "no such folder"),
    ({"notes.txt": b"x"}, "holds no PNG or JPEG images"),
    ({f"{i}.png": (8, 8) for i in range(3)}, "holds 3 images; the metrics need at least 4"),
    ({"a.png": (8, 8), "b.png": (8, 8), "c.png": (8, 8), "d.png": (16, 8)},
     r"differ in size: a.png is 8x8 \(HxW\), d.png is 8x16"),
    ({"a.png": b"not a png", "b.png": (8, 8), "c.png": (8, 8), "d.png": (8, 8)},
     "cannot read .*a.png"),
])
def test_clear_errors_for_bad_folders(tmp_path, files, message):
    path = tmp_path / "images"
    if files is not None:
        path.mkdir()
        for name, content in files.items():
            if isinstance(content, bytes):
                (path / name).write_bytes(content)
            else:
                Image.new("L", content).save(path / name)
    with pytest.raises(folders.FolderError, match=message):
        folders.scan_folder(str(path))


def test_16_bit_images_are_refused_not_clipped(tmp_path):
    from PIL import Image

    for i in range(folders.MIN_IMAGES):
        pixels = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000 + i)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")     # PIL mode I;16
    with pytest.raises(folders.FolderError, match="16-bit pixels"):
        folders.scan_folder(str(tmp_path))
