"""The shipped digits feature network: accuracy, and FID that tracks corruption."""

import numpy as np
import pytest

from genjax.core.metrics import fid_from_features
from genjax.data.digits import digits16
from genjax.eval import digits_features as df


@pytest.fixture(scope="module")
def test_features():
    images = digits16("test")["image"]
    return images, df.features_and_probs(images, 256)


def test_shipped_weights_classify_every_digit_set_above_95_percent():
    accuracy = df.test_accuracy()
    assert set(accuracy) == {"digits16", "digits", "binarized_digits"}
    assert min(accuracy.values()) >= 0.95, accuracy


def test_fid_train_vs_test_is_small_and_grows_with_noise(test_features):
    images, (test_feats, _) = test_features
    train_feats, _ = df.features_and_probs(digits16("train")["image"], 256)
    base = fid_from_features(train_feats, test_feats)
    rng = np.random.default_rng(0)
    fids = []
    for sigma in (20, 50, 90):
        noisy = np.clip(images + rng.normal(0, sigma, images.shape), 0, 255).astype(np.uint8)
        fids.append(fid_from_features(train_feats, df.features_and_probs(noisy, 256)[0]))
    assert base < fids[0] < fids[1] < fids[2], (base, fids)
    # "Small": near the floor of two disjoint same-size samples of the train split
    # (finite-sample bias), and tiny next to digits whose pixels are shuffled.
    floor = fid_from_features(train_feats[:750], train_feats[750:750 + len(images)])
    shuffled = images.reshape(len(images), -1)[:, rng.permutation(256)].reshape(images.shape)
    far = fid_from_features(train_feats, df.features_and_probs(shuffled, 256)[0])
    assert base < 2 * floor and base < 0.05 * far, (base, floor, far)


def test_fid_grows_with_blur(test_features):
    from PIL import Image, ImageFilter

    images, (test_feats, _) = test_features
    fids = []
    for radius in (0.5, 1.0, 2.0):
        blurred = np.stack([np.asarray(Image.fromarray(im[..., 0]).filter(
            ImageFilter.GaussianBlur(radius)))[..., None] for im in images])
        fids.append(fid_from_features(test_feats, df.features_and_probs(blurred, 256)[0]))
    assert fids[0] < fids[1] < fids[2], fids


def test_preprocess_rejects_colour_and_resizes():
    with pytest.raises(ValueError, match=r"\[B, H, W, 1\]"):
        df.preprocess(np.zeros((2, 8, 8, 3), np.uint8), 256)
    assert df.preprocess(np.zeros((2, 8, 8, 1), np.uint8), 17).shape == (2, 16, 16, 1)


def test_reference_cache_is_keyed_by_the_classifier_weights(tmp_path, monkeypatch):
    """After a retrain (new weights file) the cached reference features are not reused."""
    import jax
    from flax import serialization

    from genjax.eval import digits_features, samples

    monkeypatch.setenv("GENJAX_CACHE", str(tmp_path / "cache"))
    first = samples.reference_features("digits", "test", 17)
    retrained = jax.tree.map(lambda w: w + 0.05, digits_features.load_params())
    weights = tmp_path / "retrained.msgpack"
    weights.write_bytes(serialization.to_bytes(retrained))
    monkeypatch.setattr(digits_features, "WEIGHTS", str(weights))
    calls = []
    real = digits_features.features_and_probs
    monkeypatch.setattr(digits_features, "features_and_probs",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    again = samples.reference_features("digits", "test", 17)
    assert calls == [1]                      # recomputed, not served from the old entry
    assert not np.allclose(again, first)     # features of the new weights
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 2
