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
