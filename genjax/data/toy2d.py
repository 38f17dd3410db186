"""Two-dimensional toy densities as point clouds: ``point`` float32 ``[N, 2]``.

Each density has a fixed size per split (a training pool of 10,000, which
:func:`genjax.data.load` serves as 9,000 ``train`` and 1,000 ``validation``
examples, and 2,000 test) and is drawn
with numpy from a seed fixed by its name and split, so every process sees the
same points. Coordinates are a few units wide:

- ``moons``: two interleaved half circles of radius 2, Gaussian noise 0.2.
- ``rings``: three concentric circles of radius 1, 2 and 3 (equally likely),
  radial noise 0.08.
- ``checkerboard``: uniform over the unit squares of ``[-2, 2]^2`` whose
  ``floor(x) + floor(y)`` is even (8 of the 16).
- ``gmm8``: equal mixture of 8 Gaussians of std 0.1 centred at radius 2,
  angles ``k * pi / 4``.
- ``ring8``: the mode-coverage benchmark of VEEGAN and PacGAN: 8 Gaussians of std 0.02
  on the circle of radius 2 (angles ``k * pi / 4``).
- ``grid25``: 25 Gaussians of std 0.05 centred on the grid ``{-4, -2, 0, 2, 4}^2``.

``MODES`` gives the centres and the std of the mixtures, for mode-coverage metrics
(:func:`genjax.core.metrics.mode_coverage`).
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

SIZES = {"train": 10_000, "test": 2_000}
_SPLIT_SEEDS = {"train": 0, "test": 1}


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two half circles: ``2 * (cos t, sin t)`` and its mirror image, shifted to interleave."""
    t = rng.uniform(0.0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(t), 1.0 - np.cos(t)) - 0.5
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t)) - 0.25
    return 2.0 * np.stack([x, y], axis=1) + 0.2 * rng.normal(size=(n, 2))


def _rings(rng: np.random.Generator, n: int) -> np.ndarray:
    """Radius uniform in {1, 2, 3} plus noise, angle uniform."""
    radius = rng.integers(1, 4, n) + 0.08 * rng.normal(size=n)
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    return radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    """x uniform on [-2, 2]; y uniform on one of the two squares of x's column with even parity."""
    x = rng.uniform(-2.0, 2.0, n)
    y = rng.random(n) - 2.0 * rng.integers(0, 2, n) + np.floor(x) % 2
    return np.stack([x, y], axis=1)


def _gmm8(rng: np.random.Generator, n: int) -> np.ndarray:
    """Component k ~ uniform{0..7}, point ~ N(2 (cos k pi/4, sin k pi/4), 0.1^2 I)."""
    angle = rng.integers(0, 8, n) * (np.pi / 4.0)
    centres = 2.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + 0.1 * rng.normal(size=(n, 2))


def _mixture(centres: np.ndarray, std: float):
    """Equal mixture of isotropic Gaussians N(centre_k, std^2 I)."""

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        k = rng.integers(0, len(centres), n)
        return centres[k] + std * rng.normal(size=(n, 2))

    return draw


_RING8 = 2.0 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)
_GRID25 = np.stack(np.meshgrid(np.arange(-4.0, 5.0, 2.0), np.arange(-4.0, 5.0, 2.0),
                               indexing="ij"), -1).reshape(-1, 2)
# density -> (centres [K, 2], std) of the mixtures whose modes are counted
MODES = {"ring8": (_RING8, 0.02), "grid25": (_GRID25, 0.05)}

DENSITIES = {
    "moons": _moons,
    "rings": _rings,
    "checkerboard": _checkerboard,
    "gmm8": _gmm8,
    **{name: _mixture(*spec) for name, spec in MODES.items()},
}


def dataset_name(density: str) -> str:
    """``"toy2d/<density>"``, or a ValueError naming the densities (for config arguments)."""
    if density not in DENSITIES:
        raise ValueError(f"unknown toy2d density {density!r}; choose one of {sorted(DENSITIES)}")
    return f"toy2d/{density}"


@functools.lru_cache(maxsize=None)
def toy2d(density: str, split: str) -> dict[str, np.ndarray]:
    """``point`` float32 ``[N, 2]`` of ``density`` (a key of ``DENSITIES``) for ``split``."""
    rng = np.random.default_rng([zlib.crc32(density.encode()), _SPLIT_SEEDS[split]])
    points = DENSITIES[density](rng, SIZES[split]).astype(np.float32)
    points.flags.writeable = False
    return {"point": points}
