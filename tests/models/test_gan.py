"""The image GANs: DCGAN, WGAN (clipping), WGAN-GP, R1 and the projection cGAN, and the
inversion of a generator."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import models
from genjax.configs import load_sibling
from genjax.core import gan_losses as gl
from genjax.core.likelihoods import to_symmetric
from genjax.eval.inversion import invert_images

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(channels=4, latent_dim=8)


def _config(name="dcgan_digits", arg=None, **model):
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), name, arg)
    with config.unlocked():
        config.model.update(**TINY, **model)
    return config


def _model(name="dcgan_digits", **model):
    return models.build(_config(name, **model).model)


def _init(model):
    return jax.jit(model.init)(jax.random.key(0), _batch())


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (n, 16, 16, 1)).astype(np.uint8),
            "label": rng.integers(0, 10, n).astype(np.int32)}


@pytest.mark.parametrize("bad, match", [
    (dict(image_shape=(16, 8, 1)), "square with a power-of-2 side"),
    (dict(image_shape=(12, 12, 1)), "square with a power-of-2 side"),
    (dict(critic_norm="batch"), "critic_norm must be layer or none"),
    (dict(loss="wgan"), "unknown GAN loss 'wgan'"),
])
def test_bad_configs_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        _model(**bad)


def test_configs_pick_the_published_settings():
    wgan = _config("wgan_digits")
    assert (wgan.model.loss, wgan.model.n_critic, wgan.optimizer.name) == (
        "wasserstein", 5, "rmsprop")
    assert wgan.optimizer.groups["discriminator"]["clip_weights"] == 0.01
    gp = _config("wgan_gp_digits")
    assert (gp.model.gradient_penalty, gp.optimizer.b1, gp.optimizer.b2) == (10.0, 0.5, 0.9)
    cgan = _config("cgan_digits")
    assert (cgan.model.num_classes, cgan.model.loss) == (10, "hinge")
    shapes = _config("dcgan_digits", "shapes")
    assert (shapes.data.name, tuple(shapes.model.image_shape)) == ("shapes", (32, 32, 1))


def test_projection_discriminator_adds_the_label_embedding_dot_phi():
    """f(x, y) = psi(phi(x)) + E_y . phi(x) with psi linear: d f / d E_y and d f / d W_psi
    are both phi(x), and f(x, y) - f(x, y') = (E_y - E_y') . phi(x)."""
    model = _model("cgan_digits")
    params = _init(model)
    x = to_symmetric(_batch(1)["image"])
    d = params["discriminator"]

    @jax.jit
    def f(d, y):
        return model.discriminator.apply(d, x, jnp.array([y]))[0, 0]

    grads = jax.jit(jax.grad(f))(d, 3)["params"]
    phi = grads["Dense_0"]["kernel"][:, 0]
    np.testing.assert_allclose(grads["Embed_0"]["embedding"][3], phi, rtol=1e-6)
    assert not np.any(grads["Embed_0"]["embedding"][4])      # other rows: no gradient
    table = d["params"]["Embed_0"]["embedding"]
    np.testing.assert_allclose(f(d, 3) - f(d, 7), (table[3] - table[7]) @ phi,
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model_kwargs", [
    dict(), dict(loss="wasserstein", gradient_penalty=10.0, r1_gamma=2.0)])
def test_discriminator_loss_is_the_game_plus_the_penalties(model_kwargs):
    model = _model(**model_kwargs)
    batch = _batch()
    params = _init(model)
    rng = jax.random.key(1)
    real = to_symmetric(batch["image"])

    @jax.jit
    def both(params):
        loss, metrics = model.discriminator_loss(params, batch, rng)
        g_loss, _ = model.generator_loss(params, batch, rng)
        fake = model.generate(params, jax.random.normal(rng, (8, TINY["latent_dim"])))

        def critic(v):
            return model.discriminator.apply(params["discriminator"], v)[:, 0]

        d_loss, gen = gl.losses(model.config.loss)
        expected = d_loss(critic(real), critic(fake))
        gp = gl.gradient_penalty(critic, real, fake, jax.random.fold_in(rng, 1))
        r1 = gl.r1_penalty(critic, real)
        return loss, metrics, g_loss, expected, gp, r1, gen(critic(fake))

    loss, metrics, g_loss, expected, gp, r1, g_expected = both(params)
    if model.config.gradient_penalty:
        expected = expected + 10.0 * gp + 1.0 * r1
        np.testing.assert_allclose(metrics["r1"], r1, rtol=1e-5)
        assert gp > 0 and r1 > 0
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(g_loss, g_expected, rtol=1e-5)


def test_samples_are_levels_and_a_conditional_gan_takes_the_classes_in_turn():
    model = _model("cgan_digits")
    params = _init(model)
    rng = jax.random.key(2)
    sample = jax.jit(model.sample, static_argnums=2)
    images = sample(params, rng, 12, None)
    assert images.shape == (12, 16, 16, 1) and images.dtype == jnp.uint8
    np.testing.assert_array_equal(images, sample(params, rng, 12, np.arange(12) % 10))
    assert not np.array_equal(images, sample(params, rng, 12, np.full(12, 3)))
    with pytest.raises(ValueError, match="unconditional"):
        _model().sample(params, rng, 2, 3)


def test_inversion_recovers_an_image_the_generator_made():
    """Images G(z) of known z: from z_0 ~ N(0, I) the descent reaches G(z) up to rounding for
    most of them (a descent may stop in a local minimum: here 1 image of 4 may)."""
    model = _model()
    params = _init(model)
    z_true = jax.random.normal(jax.random.key(5), (4, TINY["latent_dim"]))
    target = np.asarray(model._output(model.generate(params, z_true))).astype(float)
    z0 = jax.random.normal(jax.random.key(0), z_true.shape)     # the start of seed 0
    start = np.asarray(model._output(model.generate(params, z0)))
    result = invert_images(model, params, target.astype(np.uint8), 400)
    recon = result["reconstructions"].astype(float)
    per_image = np.mean((target - recon) ** 2, axis=(1, 2, 3))
    before = np.mean((target - start) ** 2, axis=(1, 2, 3))
    assert np.sum(per_image < 0.01 * before) >= 3, (per_image, before)
    np.testing.assert_allclose(result["mse"], np.mean((target - recon) ** 2))
    np.testing.assert_allclose(result["psnr"], 10 * np.log10(255 ** 2 / result["mse"]))
    with pytest.raises(ValueError, match=r"the images are \(8, 8, 1\)"):
        invert_images(model, params, target[:, :8, :8], 10)
    with pytest.raises(ValueError, match="has no inversion"):
        toy = load_sibling(os.path.join(ROOT, "configs", "x.py"), "gan_toy2d")
        invert_images(models.build(toy.model), None, target, 10)


def _train(config, workdir, **training):
    from genjax.train.trainer import train_and_evaluate

    with config.unlocked():
        config.training.update(dict(num_steps=2, log_every=1, checkpoint_every=2,
                                    num_sample_images=0, progress=False), **training)
    return train_and_evaluate(config, str(workdir))


@pytest.mark.slow
def test_wgan_keeps_every_critic_weight_clipped_and_leaves_the_generator_alone(tmp_path):
    state = _train(_config("wgan_digits"), tmp_path, batch_size=10)   # 5 critic slices of 2
    critic = jax.tree.leaves(state.params["discriminator"])
    assert max(float(jnp.max(jnp.abs(w))) for w in critic) <= 0.01 * (1 + 1e-6)
    assert max(float(jnp.max(jnp.abs(w))) for w in jax.tree.leaves(state.params["generator"])
               ) > 0.01
    assert np.all(np.isfinite(np.concatenate([np.ravel(w) for w in critic])))


def test_a_gan_stops_cleanly_on_a_non_finite_loss(tmp_path):
    from genjax.train.trainer import NonFiniteLossError

    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), "gan_toy2d")
    with config.unlocked():
        config.model.update(hidden=8, num_layers=1)
        config.optimizer.groups.generator = dict(learning_rate=float("nan"))
    with pytest.raises(NonFiniteLossError, match="No checkpoint was written yet"):
        _train(config, tmp_path, batch_size=16, num_steps=4)


@pytest.mark.slow
def test_a_conditional_gan_trains_and_eval_reports_fid_and_class_accuracy(tmp_path):
    from genjax.eval.report import evaluate_run
    from genjax.train.trainer import load_run

    config = _config("cgan_digits")
    with config.unlocked():
        config.eval.update(num_samples=100, sample_batch_size=50)
    _train(config, tmp_path, batch_size=8)
    config, model, state, _ = load_run(str(tmp_path))
    results = evaluate_run(config, model, state.ema_params)
    assert {"fid_digits", "kid_digits", "is_digits", "class_accuracy"} <= set(results)
    assert 0.0 <= results["class_accuracy"] <= 1.0


@pytest.mark.slow
def test_cli_inverts_a_folder_of_images(tmp_path):
    import json
    import subprocess
    import sys

    from PIL import Image

    from genjax.data import digits

    _train(_config(), tmp_path / "run", batch_size=8)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(digits.digits16("test")["image"][:3]):
        Image.fromarray(image[..., 0]).save(folder / f"{i}.png")
    out = tmp_path / "inv.png"
    proc = subprocess.run(
        [sys.executable, "-m", "genjax.cli", "sample", "--workdir", str(tmp_path / "run"),
         "--invert", str(folder), "--invert_steps", "5", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "inverted 3 images in 5 steps" in proc.stdout
    saved = json.load(open(tmp_path / "inv.json"))
    assert saved["num_images"] == 3 and saved["psnr"] > 0 and out.exists()
