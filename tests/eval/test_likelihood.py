"""Independent-pixel baseline and split-level bits/dim."""

import math

import types

import jax
import jax.numpy as jnp
import numpy as np

from genjax.configs import make_config
from genjax.eval.likelihood import (independent_pixel_bpd, nll_and_stats_on_split,
                                    nll_on_split)
from genjax.eval.report import evaluate_run
from genjax.models.protocol import Capabilities


def test_independent_pixel_bpd_closed_form():
    # One pixel, 2 levels; train: three 0s and one 1 -> p(0) = 4/6, p(1) = 2/6 (add-one).
    train = np.array([0, 0, 0, 1], np.uint8).reshape(4, 1, 1, 1)
    test = np.array([0, 1], np.uint8).reshape(2, 1, 1, 1)
    expected = -(math.log2(4 / 6) + math.log2(2 / 6)) / 2
    np.testing.assert_allclose(independent_pixel_bpd(train, test, 2), expected, rtol=1e-12)


def test_independent_pixel_bpd_uniform_data_is_log2_levels():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 16, (200000, 1, 1, 2), dtype=np.uint8)
    test = rng.integers(0, 16, (1000, 1, 1, 2), dtype=np.uint8)
    np.testing.assert_allclose(independent_pixel_bpd(train, test, 16), 4.0, atol=0.01)


class _Fixed:
    """log p(x) = -(sum of pixel values): a protocol stand-in with a known answer."""

    config = types.SimpleNamespace(image_shape=(1, 1, 1), num_levels=256)

    def log_prob(self, params, batch, rng):
        return -jnp.sum(batch["image"].astype(jnp.float32), axis=(1, 2, 3))


def test_nll_on_split_covers_every_example_once_and_respects_max():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    batches = [{"image": images[i:i + 4]} for i in range(0, 10, 4)]
    nll = nll_on_split(_Fixed(), None, batches, jax.random.key(0))
    np.testing.assert_array_equal(nll, np.arange(10))
    nll = nll_on_split(_Fixed(), None, iter(batches), jax.random.key(0), max_examples=6)
    np.testing.assert_array_equal(nll, np.arange(6))


class _FixedWithStats(_Fixed):
    """_Fixed with ``capabilities.log_prob_stats``: the statistic ``nfe`` of an example is
    its pixel value + 1."""

    capabilities = Capabilities(likelihood="exact", likelihood_kind="test",
                                log_prob_stats=True)

    def log_prob_stats(self, params, batch, rng):
        return self.log_prob(params, batch, rng), {"nfe": batch["image"].reshape(-1) + 1}


def test_nll_and_stats_on_split_keep_each_statistic_with_its_example():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    batches = [{"image": images[i:i + 4]} for i in range(0, 10, 4)]
    nll, stats = nll_and_stats_on_split(_FixedWithStats(), None, iter(batches),
                                        jax.random.key(0), max_examples=6)
    np.testing.assert_array_equal(nll, np.arange(6))
    np.testing.assert_array_equal(stats["nfe"], np.arange(6) + 1)


def test_eval_reports_the_mean_log_prob_statistics():
    """``genjax eval`` of a model declaring ``log_prob_stats``: ``log_prob_nfe`` is the mean
    of the per-example statistic next to the NLL it came with."""

    class Points:
        config = types.SimpleNamespace(data_key="point")
        capabilities = _FixedWithStats.capabilities

        def log_prob_stats(self, params, batch, rng):
            x = batch["point"]
            return -jnp.sum(x ** 2, 1), {"nfe": jnp.arange(x.shape[0]) % 2}

    config = make_config("flow_matching", "toy2d/moons",
                         eval=dict(batch_size=4, num_examples=8, num_samples=0))
    results = evaluate_run(config, Points(), None)
    assert results["num_examples"] == 8 and results["log_prob_nfe"] == 0.5
