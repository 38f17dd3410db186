"""Super-resolution quality of a model that declares ``capabilities.super_resolution``.

Over the images of a split: each high-res image x is downsampled by the model
(``model.downsample``, average pooling) to z, super-resolved to x_hat ~ p(x | z), and
compared with x by PSNR in dB on the levels (:func:`genjax.core.metrics.psnr_per_image`,
averaged over the images), next to the baseline of bicubic upsampling of z
(``jax.image.resize(..., "bicubic")``, rounded to the levels). On the digit datasets
also the FID, in the shipped digits classifier's features, of the SR outputs (and of the
bicubic baseline) against the split's real images.
"""

from __future__ import annotations

import jax
import numpy as np

from genjax.core import likelihoods as lk
from genjax.core import metrics


def bicubic_upsample(low, shape, num_levels: int) -> jax.Array:
    """Bicubic upsampling of low-res images ``low`` in [-1, 1] [B, h, w, C] to
    ``shape = (H, W, C)``, clipped and rounded to the levels: uint8 [B, H, W, C]."""
    up = jax.image.resize(low, (low.shape[0],) + tuple(shape), method="bicubic")
    return lk.from_symmetric(up.clip(-1.0, 1.0), num_levels)


def super_resolution_metrics(model, params, batches, rng, *, num_levels: int,
                             max_examples: int = 0, digits_dataset: str | None = None,
                             split: str = "test", data_dir=None, **sample_kwargs) -> dict:
    """``psnr_sr`` and ``psnr_bicubic`` (dB, the mean over images), ``sr_examples``; with
    ``digits_dataset`` also ``fid_digits_sr`` and ``fid_digits_bicubic`` against the real
    images of ``split``. ``max_examples`` > 0 limits the images."""
    shape = tuple(model.config.image_shape)
    resolve = jax.jit(lambda p, k, z: model.super_resolve(p, k, z, **sample_kwargs))
    downsample = jax.jit(model.downsample)
    real, sr, bicubic = [], [], []
    count = 0
    for i, batch in enumerate(batches):
        images = np.asarray(batch["image"])
        if max_examples:
            images = images[:max_examples - count]
        if not len(images):
            break
        low = downsample(images)
        sr.append(np.asarray(resolve(params, jax.random.fold_in(rng, i), low)))
        bicubic.append(np.asarray(bicubic_upsample(low, shape, num_levels)))
        real.append(images)
        count += len(images)
        if max_examples and count >= max_examples:
            break
    real, sr, bicubic = map(np.concatenate, (real, sr, bicubic))
    out = {"sr_examples": int(len(real)),
           "psnr_sr": float(np.mean(metrics.psnr_per_image(real, sr, num_levels))),
           "psnr_bicubic": float(np.mean(metrics.psnr_per_image(real, bicubic, num_levels)))}
    if digits_dataset is not None:
        from genjax.eval import digits_features
        from genjax.eval.samples import reference_features

        ref = reference_features(digits_dataset, split, num_levels, data_dir)
        for name, images in (("sr", sr), ("bicubic", bicubic)):
            feats, _ = digits_features.features_and_probs(images, num_levels)
            out[f"fid_digits_{name}"] = metrics.fid_from_features(ref, feats)
    return out
