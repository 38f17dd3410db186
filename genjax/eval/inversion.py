"""Invert a trained generator on a set of images and measure the reconstructions.

``genjax sample --workdir RUN --invert DIR`` calls :func:`invert_images` on the PNG/JPEG
images of ``DIR``; models that declare ``capabilities.inversion`` implement
``invert(params, rng, images, num_steps)`` (:mod:`genjax.core.inversion`).
"""

from __future__ import annotations

import jax
import numpy as np

from genjax.core.metrics import psnr_from_mse


def invert_images(model, params, images: np.ndarray, num_steps: int, *, seed: int = 0,
                  batch_size: int = 64) -> dict:
    """Reconstructions and their error of uint8 ``images`` [N, H, W, C].

    Returns a dict: ``reconstructions`` uint8 [N, H, W, C], ``mse`` (mean squared error
    per pixel on the levels 0..L-1, over every image) and ``psnr`` (dB, peak L - 1, from
    that MSE), and ``num_images``.

    Raises:
      ValueError: the model cannot invert, or the images are not of its shape.
    """
    name = type(model).__name__
    if not model.capabilities.inversion:
        raise ValueError(f"{name} has no inversion (a generator without an encoder has it: "
                         "the GANs)")
    shape = tuple(model.config.image_shape)
    images = np.asarray(images)
    if images.shape[1:] != shape:
        raise ValueError(f"the images are {images.shape[1:]} (HxWxC) but the model makes "
                         f"{shape}")
    if num_steps < 1:
        raise ValueError(f"the number of inversion steps must be >= 1, got {num_steps}")
    invert = jax.jit(model.invert, static_argnums=3)
    out = []
    for i in range(0, len(images), batch_size):
        chunk = images[i:i + batch_size]
        pad = batch_size - len(chunk) if len(images) > batch_size else 0
        padded = np.concatenate([chunk, chunk[:1].repeat(pad, 0)]) if pad else chunk
        _, recon = invert(params, jax.random.key(seed + i), padded, num_steps)
        out.append(np.asarray(recon)[:len(chunk)])
    recon = np.concatenate(out)
    peak = model.config.num_levels - 1
    mse = float(np.mean((images.astype(np.float64) - recon.astype(np.float64)) ** 2))
    return {"reconstructions": recon, "num_images": len(images), "mse": mse,
            "psnr": float(psnr_from_mse(mse, peak)) if mse > 0 else float("inf")}
