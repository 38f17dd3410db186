"""Sample grids as PNG."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def image_grid(images, num_levels: int = 256, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """images uint8 levels [N, H, W, C] (C = 1 or 3) -> one uint8 picture in 0..255,
    [rows * (H + pad) + pad, cols * (W + pad) + pad, C]."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    n, h, w, c = images.shape
    scaled = np.round(images.astype(np.float32) * (255.0 / (num_levels - 1))).astype(np.uint8)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.zeros((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y:y + h, x:x + w] = scaled[i]
    return grid


def save_image_grid(path: str, images, num_levels: int = 256, ncols: int | None = None,
                    upscale: int = 1) -> None:
    """Write :func:`image_grid` to ``path`` (PNG), optionally enlarged ``upscale`` times."""
    grid = image_grid(images, num_levels, ncols)
    mode = "L" if grid.shape[-1] == 1 else "RGB"
    img = Image.fromarray(grid[..., 0] if mode == "L" else grid, mode=mode)
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    img.save(path)


def points_image(points, size: int = 128, extent: float | None = None) -> np.ndarray:
    """2-D points [N, 2] -> uint8 [size, size] density picture (white = dense),
    over the square [-extent, extent]^2 (default: covering the points)."""
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be [N, 2], got shape {points.shape}")
    extent = extent or float(np.abs(points).max()) * 1.05 + 1e-9
    hist, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=size,
                                range=[[-extent, extent], [-extent, extent]])
    picture = np.log1p(hist[::-1])          # y axis upwards
    return np.round(255 * picture / max(picture.max(), 1e-9)).astype(np.uint8)


def save_samples(path: str, samples, num_levels: int | None) -> None:
    """Images uint8 [N, H, W, C] as a grid, 2-D points [N, 2] as a density picture."""
    samples = np.asarray(samples)
    if samples.ndim == 4:
        save_image_grid(path, samples, num_levels or 256, upscale=4)
    else:
        Image.fromarray(points_image(samples), mode="L").save(path)
