"""What ``genjax eval`` computes for a trained model, and the table it prints."""

from __future__ import annotations

import math

import jax
import numpy as np

from genjax import data as gdata
from genjax.eval.likelihood import independent_pixel_bpd, nll_and_stats_on_split, nll_on_split
from genjax.core import metrics
from genjax.data import toy2d
from genjax.eval.samples import DIGIT_DATASETS, digit_sample_metrics, draw_samples
from genjax.models import config_to_dataclass
from genjax.train.config import EvalConfig


def _all_images(name: str, split: str, data_dir) -> np.ndarray:
    it, _ = gdata.load(name, split, 512, shuffle=False, num_epochs=1, drop_remainder=False,
                       data_dir=data_dir)
    return np.concatenate([b["image"] for b in it])


def evaluate_run(config, model, params, *, split: str | None = None, seed: int = 0) -> dict:
    """Every metric the family supports, on ``split`` (default ``config.eval.split``)."""
    ecfg = config_to_dataclass(EvalConfig, config.eval, where="config.eval")
    split = split or ecfg.split
    data_dir = config.data.get("data_dir") or None
    results = {"dataset": config.data.name, "split": split, "model": config.model.name}
    batches, info = gdata.load(config.data.name, split, ecfg.batch_size, shuffle=False,
                               num_epochs=1, drop_remainder=False, data_dir=data_dir)
    caps = model.capabilities
    if caps.has_likelihood:
        kwargs = {"num_samples": ecfg.iwae_samples} if ecfg.iwae_samples else {}
        stats = {}
        if caps.log_prob_stats:
            nll, stats = nll_and_stats_on_split(model, params, batches, jax.random.key(seed),
                                                max_examples=ecfg.num_examples, **kwargs)
        else:
            nll = nll_on_split(model, params, batches, jax.random.key(seed),
                               max_examples=ecfg.num_examples, **kwargs)
        num_dims = math.prod(info.shape)
        results["num_examples"] = int(len(nll))
        results["nll_nats"] = float(nll.mean())
        results["bits_per_dim"] = float(nll.mean() / (num_dims * math.log(2.0)))
        results["bits_per_dim_is"] = caps.likelihood_kind
        # means over the examples, e.g. the likelihood ODE's function evaluations "log_prob_nfe"
        results.update({f"log_prob_{k}": float(v.mean()) for k, v in stats.items()})
        if caps.likelihood_kind == "IWAE lower bound":
            results["iwae_samples"] = ecfg.iwae_samples or model.config.iwae_samples
        if info.kind == "image" and info.num_levels:
            train = _all_images(config.data.name, "train", data_dir)
            test = _all_images(config.data.name, split, data_dir)
            results["independent_pixel_bpd"] = independent_pixel_bpd(train, test, info.num_levels)
    if caps.split_metrics:
        # Family-specific measurements over the whole split (VQ-VAE reconstructions,
        # the token prior's nats per code).
        batches, _ = gdata.load(config.data.name, split, ecfg.batch_size, shuffle=False,
                                num_epochs=1, drop_remainder=False, data_dir=data_dir)
        results.update(model.split_metrics(params, batches))
    if ecfg.conditioning_per_condition and caps.conditioning != "none":
        results.update(_conditioning_rows(model, params, seed, ecfg))
    if caps.super_resolution:
        # SR outputs given the split's downsampled images: PSNR against bicubic, FID.
        from genjax.eval.super_resolution import super_resolution_metrics

        batches, _ = gdata.load(config.data.name, split, ecfg.batch_size, shuffle=False,
                                num_epochs=1, drop_remainder=False, data_dir=data_dir)
        digits = config.data.name if config.data.name in DIGIT_DATASETS else None
        results.update(super_resolution_metrics(
            model, params, batches, jax.random.key(seed + 2), num_levels=info.num_levels,
            max_examples=ecfg.num_examples, digits_dataset=digits, split=split,
            data_dir=data_dir))
    if ecfg.num_samples and config.data.name in DIGIT_DATASETS:
        results.update(digit_sample_metrics(
            model, params, jax.random.key(seed + 1), config.data.name, split, info.num_levels,
            ecfg.num_samples, ecfg.sample_batch_size,
            caps.num_classes, data_dir))
    if ecfg.num_samples and info.kind == "points":
        points, _ = draw_samples(model, params, jax.random.key(seed + 1), ecfg.num_samples,
                                 ecfg.sample_batch_size)
        results["num_samples"] = ecfg.num_samples
        density = config.data.name.removeprefix("toy2d/")
        if density in toy2d.MODES:
            results.update(metrics.mode_coverage(points, *toy2d.MODES[density]))
        if points.ndim == 2:
            results.update(_distances_to_split(points, config.data.name, split, data_dir, seed))
    return results


def _conditioning_rows(model, params, seed: int, ecfg) -> dict:
    """:func:`genjax.eval.conditioning.conditioning_accuracy` (the token prior's and any
    conditional model's) as flat rows: ``conditioning/w=3/all``, ..., and the chance levels
    ``conditioning/chance/...``."""
    from genjax.eval.conditioning import conditioning_accuracy

    result = conditioning_accuracy(model, params, jax.random.key(seed + 2),
                                   tuple(float(w) for w in ecfg.conditioning_guidance),
                                   ecfg.conditioning_per_condition)
    rows = {}
    for key, value in result.items():
        if isinstance(value, dict):
            rows.update({f"conditioning/{key}/{name}": v for name, v in value.items()})
        else:
            rows[f"conditioning/{key}"] = value
    return rows


def split_points(name: str, split: str, n: int, seed: int, data_dir=None) -> np.ndarray:
    """min(n, split size) points of ``split``: all of them if no more than n, else a subset
    drawn without replacement by ``np.random.default_rng(seed)`` (the eval seed)."""
    it, _ = gdata.load(name, split, 512, shuffle=False, num_epochs=1, drop_remainder=False,
                       data_dir=data_dir)
    points = np.concatenate([b["point"] for b in it])
    if len(points) <= n:
        return points
    return points[np.sort(np.random.default_rng(seed).choice(len(points), n, replace=False))]


def _distances_to_split(samples: np.ndarray, name: str, split: str, data_dir, seed: int) -> dict:
    """W2 and unbiased MMD^2 (:mod:`genjax.core.metrics`) between n model samples and n
    points of ``split``, n = min(number of samples, split size)."""
    test = split_points(name, split, len(samples), seed, data_dir)
    samples = np.asarray(samples, np.float64)[:len(test)]
    return {"w2_to_test": metrics.wasserstein2(samples, test),
            "mmd_to_test": metrics.mmd_rbf(samples, test)}


def format_table(results: dict) -> str:
    width = max(len(k) for k in results)
    rows = []
    for key, value in results.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        rows.append(f"{key:<{width}}  {text}")
    return "\n".join(rows)
