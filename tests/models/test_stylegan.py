"""StyleGAN: modulation/demodulation against explicit per-sample kernels, the unit variance
that demodulation promises, pixel norm, truncation, style mixing, the running w_avg, the
minibatch-std layer, inversion into W and W+, and a tiny run through the trainer that
resumes bit for bit."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import models
from genjax.configs import load_sibling
from genjax.core import likelihoods as lk
from genjax.models import stylegan as sg
from genjax.train.trainer import train_and_evaluate
from tests.train.test_trainer import assert_resumes_bit_exactly, assert_trees_equal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(latent_dim=8, w_dim=8, mapping_layers=2, channels=(8, 8), d_channels=(8, 8),
            mbstd_group=2)
DIMS = ("NHWC", "HWIO", "NHWC")


def _config(dataset="digits", **model):
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), "stylegan_digits", dataset)
    with config.unlocked():
        config.model.update(dict(TINY, **model))
        config.training.update(batch_size=8, num_steps=4, steps_per_call=1, log_every=2,
                               checkpoint_every=2, sample_every=0, num_sample_images=0,
                               ema_decay=0.9, progress=False)
        config.eval.update(num_samples=0)
    return config


@pytest.fixture(scope="module")
def tiny():
    """The tiny 8x8 model at initialisation, with a tanh output and 256 levels (so that
    inversion targets are neither clipped nor coarsely rounded), its params, and its
    mapping and synthesis networks jitted once for every test."""
    model = models.build(_config(num_levels=256, tanh_output=True).model)
    params = jax.jit(model.init)(jax.random.key(0), {"image": np.zeros((2, 8, 8, 1), np.uint8)})
    return SimpleNamespace(model=model, params=params, mapping=jax.jit(model.mapping),
                           synthesize=jax.jit(model.synthesize))


def test_modulated_conv_equals_a_per_sample_convolution_with_the_scaled_kernel():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 6, 4)).astype(np.float32)
    weight = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    styles = rng.normal(size=(3, 4)).astype(np.float32)
    for demodulate in (True, False):
        got = sg.modulated_conv2d(x, weight, styles, demodulate=demodulate)
        for b in range(3):
            kernel = weight * styles[b][None, None, :, None]          # w'_ijk = s_i w_ijk
            if demodulate:                                             # / sqrt(sum_ik w'^2)
                kernel = kernel / np.sqrt(np.sum(kernel ** 2, axis=(0, 1, 2)) + 1e-8)
            want = jax.lax.conv_general_dilated(x[b:b + 1], kernel, (1, 1), "SAME",
                                                dimension_numbers=DIMS)
            np.testing.assert_allclose(got[b:b + 1], want, rtol=1e-4, atol=1e-5)


def test_demodulation_gives_unit_variance_for_unit_variance_iid_input():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 12, 12, 8)).astype(np.float32)
    weight = (0.3 * rng.normal(size=(3, 3, 8, 6))).astype(np.float32)
    styles = (3.0 * np.exp(rng.normal(size=(128, 8)))).astype(np.float32)
    interior = (slice(None), slice(1, -1), slice(1, -1))      # full 3x3 footprints only
    y = np.asarray(sg.modulated_conv2d(x, weight, styles))[interior]
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, atol=0.06)
    plain = np.asarray(sg.modulated_conv2d(x, weight, styles, demodulate=False))[interior]
    assert np.all(np.abs(plain.var(axis=(0, 1, 2)) - 1.0) > 0.5)     # modulation alone: not


def test_mapping_starts_with_pixel_norm(tiny):
    params, mapping = tiny.params, tiny.mapping
    z = np.random.default_rng(2).normal(size=(5, 8)).astype(np.float32)
    want = z / np.linalg.norm(z, axis=1, keepdims=True) * np.sqrt(8)
    np.testing.assert_allclose(sg.pixel_norm(z), want, rtol=1e-5)
    w = mapping(params, z)
    for scale in (0.1, 10.0):                   # w depends on the direction of z only
        np.testing.assert_allclose(mapping(params, scale * z), w, rtol=1e-4, atol=1e-6)
    assert np.abs(np.asarray(w[0] - w[1])).max() > 1e-3


def test_truncation_psi_0_is_w_avg_and_psi_1_is_w(tiny):
    model, params = tiny.model, tiny.params
    w_avg = np.asarray(params["state"]["w_avg"])
    w = tiny.mapping(params, jax.random.normal(jax.random.key(3), (6, 8)))
    np.testing.assert_array_equal(model.truncate(params, w, 0.0), np.tile(w_avg, (6, 1)))
    np.testing.assert_array_equal(model.truncate(params, w, 1.0), w)
    np.testing.assert_allclose(model.truncate(params, w, 0.5), (w + w_avg) / 2, rtol=1e-6)
    sample = jax.jit(model.sample, static_argnums=2)
    # Noise strengths start at 0, so psi = 0 makes every sample the image of w_avg.
    same = np.asarray(sample(params, jax.random.key(4), 4, truncation=0.0))
    assert (same == same[:1]).all()
    images = np.asarray(sample(params, jax.random.key(4), 4, truncation=1.0))
    assert images.dtype == np.uint8 and images.shape == (4, 8, 8, 1)
    assert len({im.tobytes() for im in images}) == 4
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(params, jax.random.key(4), 4, cond=1)


def test_style_mixing_crossover(tiny):
    model, params = tiny.model, tiny.params
    z1, z2 = jax.random.normal(jax.random.key(5), (2, 3, 8))
    key = jax.random.key(6)
    mix = jax.jit(model.mix)
    noise = model.draw_noise(key, 3)

    def alone(z):                               # every layer styled by w(z), same noise
        ws = model.broadcast_ws(tiny.mapping(params, z))
        return lk.from_symmetric(tiny.synthesize(params, ws, noise), 256)

    alone1, alone2 = alone(z1), alone(z2)
    np.testing.assert_array_equal(mix(params, key, z1, z2, model.num_ws), alone1)
    np.testing.assert_array_equal(mix(params, key, z1, z2, 0), alone2)
    middle = np.asarray(mix(params, key, z1, z2, 2))
    assert (middle != alone1).any() and (middle != alone2).any()
    with pytest.raises(ValueError, match="crossover"):
        model.mix(params, key, z1, z2, model.num_ws + 1)


def test_w_avg_is_the_ema_of_batch_means(tiny):
    model, params = tiny.model, tiny.params
    beta = model.config.w_avg_beta
    w0 = np.asarray(params["state"]["w_avg"], np.float64)
    rng = np.random.default_rng(7)
    expected, p = w0, params
    for size in (4, 7, 2):                      # closed form over three updates
        w = rng.normal(size=(size, 8))
        p, _ = model.update_state(p, {"w_sum": jnp.asarray(w.sum(0), jnp.float32),
                                      "count": jnp.float32(size)})
        expected = beta * expected + (1 - beta) * w.mean(0)
    np.testing.assert_allclose(p["state"]["w_avg"], expected, rtol=1e-5, atol=1e-6)
    # The generator phase's stats are sums over its batch: with a constant mapping (zero
    # kernels) every w is c, so w_sum = B c and the update moves w_avg towards c.
    const = jax.tree.map(lambda v: v, params)
    const["mapping"] = jax.tree.map(jnp.zeros_like, params["mapping"])
    lr_mul = model.config.mapping_lr_multiplier      # the stored bias is used times lr_mul
    const["mapping"]["params"]["fc1"]["bias"] = jnp.arange(8.0) / 100.0 / lr_mul
    c = np.asarray(tiny.mapping(const, jnp.ones((1, 8))))[0]
    assert np.abs(c).max() > 0.01
    batch = {"image": np.zeros((6, 8, 8, 1), np.uint8)}
    _, (metrics, stats) = jax.jit(model.generator_loss_and_stats)(const, batch,
                                                                  jax.random.key(8))
    assert float(stats["count"]) == 6
    np.testing.assert_allclose(stats["w_sum"], 6 * c, rtol=1e-5, atol=1e-6)
    updated, _ = model.update_state(const, stats)
    np.testing.assert_allclose(updated["state"]["w_avg"], beta * w0 + (1 - beta) * c,
                               rtol=1e-5, atol=1e-6)


def test_minibatch_std_appends_the_group_std():
    x = np.random.default_rng(9).normal(size=(6, 4, 4, 4)).astype(np.float32)
    y = np.asarray(sg.minibatch_std(x, 2, num_features=2))
    assert y.shape == (6, 4, 4, 6)
    np.testing.assert_array_equal(y[..., :4], x)
    for b in range(6):                          # groups {b, b + 3}
        group = x[[b % 3, b % 3 + 3]]
        for f in range(2):
            want = np.sqrt(group[..., 2 * f:2 * f + 2].var(axis=0) + 1e-8).mean()
            np.testing.assert_allclose(y[b, :, :, 4 + f], want, rtol=1e-5)
    with pytest.raises(ValueError, match="group size"):
        sg.minibatch_std(x[:5], 2)


def test_inversion_reconstructs_the_generators_own_images(tiny):
    model, params, synthesize = tiny.model, tiny.params, tiny.synthesize
    w = tiny.mapping(params, jax.random.normal(jax.random.key(10), (6, 8)))
    # Two images of one known w each (in W), and one of a different w per layer (in W+).
    ws = jnp.concatenate([model.broadcast_ws(w[:2]), w[None, 2:2 + model.num_ws]])
    images = lk.from_symmetric(synthesize(params, ws, model.zero_noise(3)), 256)
    start = synthesize(params, model.broadcast_ws(jnp.tile(params["state"]["w_avg"], (3, 1))),
                       model.zero_noise(3))

    def error(recon):                            # per image, on the [-1, 1] scale
        return np.mean((lk.to_symmetric(recon, 256) - lk.to_symmetric(images, 256)) ** 2,
                       axis=(1, 2, 3))

    before = error(lk.from_symmetric(start, 256))     # the image of w_avg, where both start
    invert = jax.jit(model.invert, static_argnums=3, static_argnames="space")
    errors = {}
    for space in sg.SPACES:
        latents, recon = invert(params, jax.random.key(11), images, 200, space=space,
                                learning_rate=0.1)
        assert recon.dtype == np.uint8 and recon.shape == images.shape
        assert latents.shape == ((3, 8) if space == "w" else (3, model.num_ws, 8))
        errors[space] = error(recon)
    assert np.all(before > 0.02)
    assert np.all(errors["w"][:2] < 0.05 * before[:2])      # W inverts the images of a w
    assert np.all(errors["w+"] < 0.05 * before)              # W+ inverts all three
    assert errors["w+"][2] < 0.5 * errors["w"][2]            # and beats W outside W
    with pytest.raises(ValueError, match="space"):
        model.invert(params, None, images, 1, space="z")


@pytest.mark.slow
def test_tiny_run_trains_and_resumes_bit_exactly(tmp_path, monkeypatch):
    config = _config()
    reference = train_and_evaluate(config, str(tmp_path / "ref"))
    lines = [json.loads(line) for line in open(tmp_path / "ref" / "metrics.jsonl")]
    assert [m["step"] for m in lines] == [2, 4]
    for key in ("discriminator_loss", "discriminator_r1", "generator_loss",
                "generator_w_avg_norm"):
        assert np.isfinite(lines[-1][key])
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(reference.params))
    assert lines[0]["generator_w_avg_norm"] != lines[1]["generator_w_avg_norm"]  # updated
    # The EMA averages the generator and copies the state and the discriminator.
    assert_trees_equal(reference.ema_params["state"], reference.params["state"])
    assert_trees_equal(reference.ema_params["discriminator"], reference.params["discriminator"])
    resumed = assert_resumes_bit_exactly(config, reference, tmp_path, monkeypatch)
    assert int(resumed.step) == 4


def test_configs_and_bad_settings():
    for dataset, shape in (("digits16", (16, 16, 1)), ("shapes", (32, 32, 1)),
                           ("shapes_color", (32, 32, 3))):
        config = load_sibling(os.path.join(ROOT, "configs", "x.py"), "stylegan_digits", dataset)
        assert tuple(config.model.image_shape) == shape and config.data.name == dataset
        model = models.build(config.model)
        assert model.num_ws == 2 * (int(np.log2(shape[0])) - 1)
        caps = model.capabilities
        assert caps.inversion and caps.state and "truncation" in caps.sample_options
    with pytest.raises(ValueError, match="unknown dataset"):
        load_sibling(os.path.join(ROOT, "configs", "x.py"), "stylegan_digits", "cifar")
    bad = [(dict(channels=(8,)), "channels needs 2"),
           (dict(image_shape=(12, 12, 1)), "power of two"),
           (dict(mixing_prob=1.5), "mixing_prob"), (dict(loss="wgan"), "unknown GAN loss"),
           (dict(mbstd_features=3), "mbstd_features"), (dict(w_avg_beta=1.0), "w_avg_beta")]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            models.build(_config(**kwargs).model)
