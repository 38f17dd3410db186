"""SR3 super-resolution (a DDPM given a low-res image) and the two-stage cascade: the
augmentation math, the conditioning, the loss against an independent computation, the
sampler compiled once, PSNR, and the cascade through the CLI."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data as gdata
from genjax.core import diffusion as dm
from genjax.core import metrics
from genjax.core.random import init_key
from genjax.models import build
from tests.conftest import perturbed
from tests.models.test_ddpm import tiny_ddpm_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The tiny SR model: 8x8 -> 16x16 digits16 (its family entry in the shared tests).
TINY_SR3 = dict(low_res_shape=(8, 8, 1), max_aug_level=0.3, sampling_aug_level=0.1)


def tiny_sr3_config(**model):
    return tiny_ddpm_config("digits16", **dict(TINY_SR3, **model))


def _abar_numpy(s, o=0.008):
    return np.cos(0.5 * np.pi * (s + o) / (1 + o)) ** 2 / np.cos(0.5 * np.pi * o / (1 + o)) ** 2


@pytest.fixture(scope="module")
def batch():
    it, _ = gdata.load("digits16", "train", 8, shuffle=False)
    return next(it)


@pytest.fixture(scope="module")
def sr_model(batch):
    model = build(tiny_sr3_config().model)
    params = jax.jit(model.init)(init_key(jax.random.key(0)), batch)
    return model, perturbed(params, jax.random.key(42), 0.05)


# ---------------------------------------------------------------- the math of core
def test_augmentation_at_level_zero_is_the_identity():
    z = jax.random.uniform(jax.random.key(0), (3, 4, 4, 1), minval=-1, maxval=1)
    noise = jax.random.normal(jax.random.key(1), z.shape)
    np.testing.assert_array_equal(dm.augment_condition(z, jnp.zeros(3), noise), z)
    np.testing.assert_array_equal(dm.augment_condition(z, 0.0, noise), z)
    assert float(dm.aug_alpha_bar(1.0)) < 1e-6                     # level 1: pure noise
    s = np.linspace(0, 1, 11)
    np.testing.assert_allclose(dm.aug_alpha_bar(s), _abar_numpy(s), rtol=1e-5, atol=1e-7)


def test_augmented_input_has_the_closed_form_mean_and_variance():
    """z_s | z ~ N(sqrt(abar(s)) z, (1 - abar(s)) I): moments over 40,000 draws per level."""
    z = jnp.array([[-1.0, -0.3, 0.5, 1.0]])
    draws = 40000
    for s in (0.1, 0.4, 0.8):
        noise = jax.random.normal(jax.random.key(int(s * 10)), (draws, 4))
        zs = np.asarray(dm.augment_condition(jnp.broadcast_to(z, (draws, 4)),
                                             jnp.full((draws,), s), noise), np.float64)
        abar = _abar_numpy(s)
        se = np.sqrt((1 - abar) / draws)                           # std error of the mean
        np.testing.assert_allclose(zs.mean(0), np.sqrt(abar) * np.asarray(z[0]), atol=5 * se)
        np.testing.assert_allclose(zs.var(0), 1 - abar, rtol=0.03)


def test_downsample_and_nearest_upsample_against_numpy():
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32)
    expected = np.zeros((2, 3, 3, 3), np.float32)
    for i in range(3):
        for j in range(3):
            expected[:, i, j] = x[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(1, 2))
    np.testing.assert_allclose(dm.downsample_mean(jnp.asarray(x), 2), expected, rtol=1e-6)
    up = dm.upsample_to(jnp.asarray(expected), 6, 6, "nearest")
    np.testing.assert_array_equal(up, expected.repeat(2, axis=1).repeat(2, axis=2))


def test_psnr_per_image_against_the_numpy_formula():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (5, 4, 4, 1)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    mse = ((a.astype(float) - b.astype(float)) ** 2).reshape(5, -1).mean(1)
    np.testing.assert_allclose(metrics.psnr_per_image(a, b, 256),
                               20 * np.log10(255.0) - 10 * np.log10(mse), rtol=1e-12)
    assert np.isinf(metrics.psnr_per_image(a, a, 256)).all()


# ------------------------------------------------------------------- the model
def test_config_checks():
    with pytest.raises(ValueError, match="divide it by one factor"):
        build(tiny_sr3_config(low_res_shape=(6, 6, 1)).model)
    with pytest.raises(ValueError, match="takes no"):
        build(tiny_sr3_config(num_classes=10).model)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        build(tiny_sr3_config(max_aug_level=1.5).model)


def test_loss_is_the_ddpm_loss_with_the_low_res_channels(sr_model, batch):
    """The loss against the same draws put together in numpy: x_0 scaled to [-1, 1], its 2x2
    block means augmented to s by the closed form, repeated 2x2 and stacked onto x_t as a
    second channel, the network called directly, the mean squared error to eps."""
    model, params = sr_model
    key = jax.random.key(3)
    loss, _ = jax.jit(model.loss)(params, batch, key)
    n = len(batch["image"])
    k_t, k_eps, _, _ = jax.random.split(key, 4)
    k_s, k_z = jax.random.split(jax.random.fold_in(key, 7))
    t = np.asarray(jax.random.randint(k_t, (n,), 0, 20))
    eps = np.asarray(jax.random.normal(k_eps, (n, 16, 16, 1)), np.float64)
    s = 0.3 * np.asarray(jax.random.uniform(k_s, (n,)), np.float64)
    noise = np.asarray(jax.random.normal(k_z, (n, 8, 8, 1)), np.float64)

    x0 = batch["image"].astype(np.float64) / 127.5 - 1.0
    abar_t = np.asarray(model.schedule.alphas_cumprod, np.float64)[t][:, None, None, None]
    x_t = np.sqrt(abar_t) * x0 + np.sqrt(1 - abar_t) * eps
    z = x0.reshape(n, 8, 2, 8, 2, 1).mean(axis=(2, 4))
    a = _abar_numpy(s)[:, None, None, None]
    z_s = np.sqrt(a) * z + np.sqrt(1 - a) * noise
    net_in = np.concatenate([x_t, z_s.repeat(2, axis=1).repeat(2, axis=2)], axis=-1)
    apply = jax.jit(model.net.apply)
    out = apply(params["net"], jnp.asarray(net_in, jnp.float32), jnp.asarray(t), None,
                aug=jnp.asarray(s, jnp.float32))
    expected = np.mean((np.asarray(out, np.float64) - eps) ** 2)
    np.testing.assert_allclose(float(loss), expected, rtol=2e-4)


def test_outputs_change_with_the_low_res_input_and_its_level(sr_model, batch):
    model, params = sr_model
    low = model.downsample(batch["image"][:4])
    other = model.downsample(batch["image"][4:8])
    fn = jax.jit(model.sample, static_argnums=2)
    a = fn(params, jax.random.key(0), 4, low, num_steps=3)
    b = fn(params, jax.random.key(0), 4, other, num_steps=3)
    c = fn(params, jax.random.key(0), 4, low, num_steps=3, aug_level=0.9)
    assert a.shape == (4, 16, 16, 1) and a.dtype == jnp.uint8
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # uint8 levels and the same images as floats in [-1, 1] are the same condition
    levels = np.asarray(batch["image"][:4, ::2, ::2])
    np.testing.assert_array_equal(
        fn(params, jax.random.key(0), 4, levels, num_steps=3),
        fn(params, jax.random.key(0), 4, levels.astype(np.float32) / 127.5 - 1, num_steps=3))


def test_sampler_compiles_once_for_any_steps_and_augmentation_level(sr_model, batch):
    model, params = sr_model
    traces = {"n": 0}
    real_apply = model._apply

    def counting(*args, **kwargs):
        traces["n"] += 1
        return real_apply(*args, **kwargs)

    low = model.downsample(batch["image"][:4])
    model._apply = counting
    try:
        fn = jax.jit(model.sample, static_argnums=2)
        a = fn(params, jax.random.key(0), 4, low, num_steps=3, aug_level=0.0)
        b = fn(params, jax.random.key(0), 4, low, num_steps=6, aug_level=0.5)
        c = fn(params, jax.random.key(0), 4, low, num_steps=3, aug_level=0.0)
    finally:
        model._apply = real_apply
    assert traces["n"] == 1
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


def test_sampling_without_low_res_images_is_a_clear_error(sr_model):
    model, params = sr_model
    with pytest.raises(ValueError, match="needs cond = low-res images"):
        model.sample(params, jax.random.key(0), 2)
    with pytest.raises(ValueError, match="low-res images of shape"):
        model.sample(params, jax.random.key(0), 2, np.zeros((2, 16, 16, 1), np.uint8))
    with pytest.raises(ValueError, match="takes no"):
        build(tiny_sr3_config(autoencoder_workdir="x").model)


def test_sr_metrics_of_the_bicubic_baseline_equal_its_own(sr_model, batch):
    """A model that answers with the bicubic upsampling scores the bicubic PSNR, and a
    perfect one infinity; PSNR is measured against the high-res images."""
    from genjax.eval.super_resolution import bicubic_upsample, super_resolution_metrics

    model, params = sr_model

    class Bicubic:
        config = model.config
        downsample = staticmethod(model.downsample)

        @staticmethod
        def super_resolve(params, rng, low):
            return bicubic_upsample(low, (16, 16, 1), 256)

    out = super_resolution_metrics(Bicubic, params, [batch], jax.random.key(0), num_levels=256)
    assert out["sr_examples"] == 8 and out["psnr_sr"] == out["psnr_bicubic"]
    up = bicubic_upsample(model.downsample(batch["image"]), (16, 16, 1), 256)
    np.testing.assert_allclose(
        out["psnr_bicubic"], np.mean(metrics.psnr_per_image(batch["image"], up, 256)))
    real = super_resolution_metrics(model, params, [batch], jax.random.key(0), num_levels=256,
                                    max_examples=4, num_steps=2)
    assert real["sr_examples"] == 4 and np.isfinite(real["psnr_sr"])


# ----------------------------------------------------------- the cascade, end to end
def _genjax(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "genjax.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


TINY_FLAGS = ["--config.model.base_channels=8", "--config.model.channel_mults=(1,)",
              "--config.model.attention_resolutions=()", "--config.model.num_heads=1",
              "--config.model.num_timesteps=10", "--config.model.sample_steps=2",
              "--config.training.batch_size=8", "--config.training.num_steps=2",
              "--config.training.log_every=2", "--config.training.checkpoint_every=2",
              "--config.training.progress=False", "--config.eval.num_examples=8",
              "--config.eval.batch_size=8", "--config.eval.num_samples=0"]


@pytest.mark.slow
def test_cascade_through_the_cli(tmp_path):
    """A class-conditional base at 8x8 and an SR model on top of it, trained two steps each
    through `genjax train`; `genjax sample` draws base samples and super-resolves them
    (every class in turn, or --cond); without a base the SR run's `sample` is a one-line
    error, and `genjax eval` reports PSNR against bicubic."""
    from PIL import Image

    config = os.path.join(ROOT, "configs", "sr3_digits.py")
    base, sr, cascade = (str(tmp_path / d) for d in ("base", "sr", "cascade"))
    _genjax("train", f"--config={config}:base", f"--workdir={base}", *TINY_FLAGS,
            "--config.model.num_classes=10", "--config.training.num_sample_images=0")
    _genjax("train", f"--config={config}", f"--workdir={sr}", *TINY_FLAGS)
    proc = _genjax("sample", f"--workdir={sr}", "--num=4", check=False)
    assert proc.returncode == 1 and "needs cond = low-res images" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

    _genjax("train", f"--config={config}", f"--workdir={cascade}", *TINY_FLAGS,
            f"--config.model.base_workdir={base}", "--config.training.num_sample_images=4")
    assert os.listdir(os.path.join(cascade, "samples"))          # the trainer's grid
    for extra in ([], ["--cond=3", "--aug_level=0.5", "--guidance=1.0"]):
        out = str(tmp_path / f"grid{len(extra)}.png")
        proc = _genjax("sample", f"--workdir={cascade}", "--num=4", f"--out={out}", *extra)
        assert "wrote 4 samples" in proc.stdout
        grid = np.asarray(Image.open(out))
        assert grid.ndim == 2 and grid.shape[0] > 2 * 16       # 16x16 images, not 8x8
    _genjax("eval", f"--workdir={sr}")
    import json

    with open(os.path.join(sr, "eval.json")) as f:
        results = json.load(f)
    assert results["sr_examples"] == 8
    assert np.isfinite(results["psnr_bicubic"]) and np.isfinite(results["psnr_sr"])
    assert results["fid_digits_sr"] > 0 and results["fid_digits_bicubic"] > 0


def test_sr3_digits_base_stage_makes_the_low_res_images_of_the_sr_stage():
    from genjax.configs import load_sibling

    path = os.path.join(ROOT, "configs", "sr3_digits.py")
    sr, base = load_sibling(path, "sr3_digits"), load_sibling(path, "sr3_digits", "base")
    assert tuple(base.model.image_shape) == tuple(sr.model.low_res_shape) == (8, 8, 1)
    assert base.data.name == "digits" and sr.data.name == "digits16"
    assert not base.model.low_res_shape
    with pytest.raises(ValueError, match="stage"):
        load_sibling(path, "sr3_digits", "third")
