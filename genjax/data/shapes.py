"""Procedural dSprites-like images with known generative factors.

Each image is one white shape on black, 32x32 pixels, drawn from factors
sampled uniformly (from a seed fixed per split):

============  =======================================================
shape         0 square, 1 ellipse (axes 1 : 0.6), 2 heart
scale         in [0.5, 1]: half-size ``scale * HALF_SIZE`` pixels
rotation      in [0, 2 pi), counter-clockwise, radians
pos_x, pos_y  in [0, 1]: centre from left to right, top to bottom, kept
              far enough from the border that every shape fits
color         (``shapes_color`` only) index into ``COLORS``
============  =======================================================

A pixel is on when its centre, mapped into the shape's unit frame, satisfies
the shape's inequality; all pixels of a chunk of images are tested at once.
``shapes_color`` draws the same geometric factors as ``shapes`` (same seed)
and then a colour per image, so its images are the ``shapes`` images painted.
``"train"`` here is the training pool of 8,000 images: :func:`genjax.data.load`
serves its first 7,200 as ``train`` and its last 800 as ``validation``
(:mod:`genjax.data.splits`); ``test`` has 1,000.
"""

from __future__ import annotations

import functools

import numpy as np

IMAGE_SIZE = 32
HALF_SIZE = 6.0  # pixels, at scale 1
# Every shape lies within radius sqrt(2) of its unit frame, so this margin keeps it inside.
_MARGIN = HALF_SIZE * 2.0**0.5
SHAPE_NAMES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "rotation", "pos_x", "pos_y")
COLORS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255]],
    dtype=np.uint8,
)
SIZES = {"train": 8_000, "test": 1_000}
_SPLIT_SEEDS = {"train": 0, "test": 1}
_CHUNK = 1_000


def sample_factors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform factors float32 ``[n, 5]`` in the order of ``FACTOR_NAMES``."""
    return np.stack(
        [
            rng.integers(0, len(SHAPE_NAMES), n),
            rng.uniform(0.5, 1.0, n),
            rng.uniform(0.0, 2.0 * np.pi, n),
            rng.uniform(0.0, 1.0, n),
            rng.uniform(0.0, 1.0, n),
        ],
        axis=1,
    ).astype(np.float32)


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether unit-frame points ``(u, v)`` lie in shape ``shape``: bool, shape of ``u``."""
    if shape == 0:  # square
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if shape == 1:  # ellipse
        return u**2 + (v / 0.6) ** 2 <= 1.0
    return (u**2 + v**2 - 1.0) ** 3 - u**2 * v**3 <= 0.0  # heart


def _masks(factors: np.ndarray) -> np.ndarray:
    """Foreground masks: factors float32 ``[n, 5]`` -> bool ``[n, 32, 32]``."""
    shape, scale, rotation, pos_x, pos_y = (f[:, None, None] for f in factors.T)
    travel = IMAGE_SIZE - 2.0 * _MARGIN
    pixel = np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5
    dx = pixel[None, None, :] - (_MARGIN + pos_x * travel)  # [n, 1, 32]: columns
    dy = (_MARGIN + pos_y * travel) - pixel[None, :, None]  # [n, 32, 1]: rows, y pointing up
    cos, sin = np.cos(rotation), np.sin(rotation)
    radius = scale * HALF_SIZE
    # Rotate pixel offsets by -rotation into the shape's unit frame.
    u = (cos * dx + sin * dy) / radius  # [n, 32, 32]
    v = (cos * dy - sin * dx) / radius
    masks = np.empty(u.shape, dtype=bool)
    for k in range(len(SHAPE_NAMES)):
        is_k = shape[:, 0, 0] == k
        masks[is_k] = _inside(k, u[is_k], v[is_k])
    return masks


def render(factors: np.ndarray) -> np.ndarray:
    """Images uint8 ``[n, 32, 32, 1]`` in {0, 255} of factors ``[n, 5]``."""
    masks = [_masks(factors[i : i + _CHUNK]) for i in range(0, len(factors), _CHUNK)]
    return (np.concatenate(masks) * np.uint8(255))[..., None]


@functools.lru_cache(maxsize=None)
def shapes(split: str, color: bool = False) -> dict[str, np.ndarray]:
    """One split, built once per process.

    Returns ``image`` uint8 ``[N, 32, 32, C]`` in {0, 255} (C = 3 with
    ``color``, else 1), ``label`` int32 ``[N]`` (the shape index) and
    ``factors`` float32 ``[N, F]`` (``FACTOR_NAMES``, then the colour index
    with ``color``).
    """
    rng = np.random.default_rng([_SPLIT_SEEDS[split]])
    factors = sample_factors(rng, SIZES[split])
    images = render(factors)
    if color:
        color_index = rng.integers(0, len(COLORS), len(factors))
        images = np.where(images > 0, COLORS[color_index][:, None, None, :], np.uint8(0))
        factors = np.concatenate([factors, color_index[:, None].astype(np.float32)], axis=1)
    arrays = {"image": images, "label": factors[:, 0].astype(np.int32), "factors": factors}
    for array in arrays.values():
        array.flags.writeable = False
    return arrays
