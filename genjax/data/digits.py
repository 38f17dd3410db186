"""scikit-learn's handwritten digits at 8x8 and 16x16, binarized, and paired with edge maps.

The 1,797 images of ``sklearn.datasets.load_digits`` take the 17 values 0..16:
``digits`` keeps them as they are (``num_levels = 17``), so likelihoods are
measured on the real discrete data; ``digits16`` first scales them to 0..255
(``round(v * 255 / 16)``) and resizes bilinearly, which fills in the levels
between (``num_levels = 256``). A fixed permutation (seed 0) splits them:
its last 297 examples are ``test``, the first 1,500 the training pool
(``"train"`` here), whose last 150 :func:`genjax.data.load` serves as
``validation`` and first 1,350 as ``train`` (:mod:`genjax.data.splits`). Every
function here returns the whole split as read-only arrays, built once per
process.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

NUM_TEST = 297
# Sobel gradient magnitude above which a pixel is an edge (a sharp 0 -> 255 step gives 1020).
EDGE_THRESHOLD = 400.0


def _read_only(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Marks cached arrays read-only so that no caller can change them for the next."""
    for array in arrays.values():
        array.flags.writeable = False
    return arrays


@functools.lru_cache(maxsize=None)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits: images uint8 ``[N, 8, 8, 1]`` in 0..16, labels int32 ``[N]``."""
    from sklearn.datasets import load_digits  # scikit-learn imports slowly: only on use.

    digits = load_digits()
    return digits.images.astype(np.uint8)[..., None], digits.target.astype(np.int32)


def _split_indices(split: str) -> np.ndarray:
    """Indices into the 1,797 digits of ``split`` ("train": 1,500, "test": 297)."""
    order = np.random.default_rng(0).permutation(len(_all_digits()[1]))
    return order[:-NUM_TEST] if split == "train" else order[-NUM_TEST:]


@functools.lru_cache(maxsize=None)
def digits(split: str) -> dict[str, np.ndarray]:
    """``image`` uint8 ``[N, 8, 8, 1]`` in 0..16 and ``label`` int32 ``[N]`` in 0..9."""
    images, labels = _all_digits()
    indices = _split_indices(split)
    return _read_only({"image": images[indices], "label": labels[indices]})


def _upsample(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (PIL) resize: uint8 ``[N, h, w, 1]`` -> uint8 ``[N, size, size, 1]``."""
    resized = [
        np.asarray(Image.fromarray(image[..., 0]).resize((size, size), Image.BILINEAR))
        for image in images
    ]
    return np.stack(resized)[..., None]


@functools.lru_cache(maxsize=None)
def digits16(split: str) -> dict[str, np.ndarray]:
    """``image`` uint8 ``[N, 16, 16, 1]`` (digits scaled to 0..255, bilinear resize),
    ``label`` int32 ``[N]``."""
    small = digits(split)
    scaled = np.round(small["image"] * (255.0 / 16.0)).astype(np.uint8)
    return _read_only({"image": _upsample(scaled, 16), "label": small["label"]})


@functools.lru_cache(maxsize=None)
def binarized_digits(split: str) -> dict[str, np.ndarray]:
    """``image`` uint8 ``[N, 16, 16, 1]``: ``digits16 > 127`` in {0, 1}; ``label`` int32 ``[N]``."""
    base = digits16(split)
    return _read_only({"image": (base["image"] > 127).astype(np.uint8), "label": base["label"]})


def sobel_edges(images: np.ndarray) -> np.ndarray:
    """Edge maps: uint8 ``[N, H, W, 1]`` -> uint8 ``[N, H, W, 1]`` in {0, 255}.

    A pixel is an edge where the Sobel gradient magnitude
    ``sqrt(gx**2 + gy**2)`` of the zero-padded image exceeds ``EDGE_THRESHOLD``.
    Each output pixel depends only on its 3x3 neighbourhood, so edges lie within
    the digit dilated by one pixel.
    """
    p = np.pad(images[..., 0].astype(np.float32), ((0, 0), (1, 1), (1, 1)))
    rows = p[:, :-2] + 2.0 * p[:, 1:-1] + p[:, 2:]  # vertical smoothing  [N, H, W + 2]
    cols = p[:, :, :-2] + 2.0 * p[:, :, 1:-1] + p[:, :, 2:]  # horizontal  [N, H + 2, W]
    gx = rows[:, :, 2:] - rows[:, :, :-2]
    gy = cols[:, 2:, :] - cols[:, :-2, :]
    edges = np.hypot(gx, gy) > EDGE_THRESHOLD
    return (edges * 255).astype(np.uint8)[..., None]


@functools.lru_cache(maxsize=None)
def edges2digits(split: str) -> dict[str, np.ndarray]:
    """Paired digits: ``image`` uint8 ``[N, 16, 16, 1]`` (digits16), ``source`` its
    edge map uint8 ``[N, 16, 16, 1]`` in {0, 255}, ``label`` int32 ``[N]``."""
    base = digits16(split)
    return _read_only(
        {
            "image": base["image"],
            "source": sobel_edges(base["image"]),
            "label": base["label"],
        }
    )
