"""VQ-VAE family: protocol shapes, loss terms, state through the trainer, exact resume."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data as gdata
from genjax.configs import make_config
from genjax.models import build
from genjax.models.vqvae import psnr
from genjax.train.state import split_state
from genjax.train.trainer import build_run, load_run, train_and_evaluate


def tiny_vqvae_config(quantizer="ema", **training):
    """digits 8x8 -> a 4x4 grid of codes, K = 8, codes dead after 2 unused steps."""
    train = dict(batch_size=16, num_steps=8, steps_per_call=2, log_every=2, checkpoint_every=4,
                 snapshot_every=4, sample_every=0, num_sample_images=4, ema_decay=0.9,
                 progress=False)
    train.update(training)
    return make_config(
        "vqvae", "digits",
        model_kwargs=dict(image_shape=(8, 8, 1), num_levels=17, channels=(8,), num_codes=8,
                          code_dim=4, quantizer=quantizer, dead_window=2),
        training=train,
        optimizer=dict(learning_rate=3e-3, warmup_steps=2, grad_clip=1.0),
        eval=dict(num_samples=0),
    )


@pytest.fixture(scope="module")
def batch():
    it, _ = gdata.load("digits", "train", 16, shuffle=False)
    return next(it)


@pytest.fixture(scope="module")
def model_and_params(batch):
    model = build(tiny_vqvae_config().model)
    return model, jax.jit(model.init)(jax.random.key(0), batch)


def test_protocol_shapes_and_loss_terms(model_and_params, batch):
    model, params = model_and_params
    assert model.capabilities.likelihood == "none" and model.capabilities.state
    idx = model.encode(params, batch["image"])
    assert idx.shape == (16, 4, 4) and idx.dtype == jnp.int32
    assert int(idx.min()) >= 0 and int(idx.max()) < 8
    rec = model.decode(params, idx)
    assert rec.shape == (16, 8, 8, 1) and rec.dtype == jnp.uint8 and int(rec.max()) <= 16
    samples = model.sample(params, jax.random.key(1), 5)
    assert samples.shape == (5, 8, 8, 1) and samples.dtype == jnp.uint8
    loss, m = jax.jit(model.loss)(params, batch, jax.random.key(2))
    np.testing.assert_allclose(loss, m["mse"] + m["codebook_loss"] + m["commitment_loss"],
                               rtol=1e-6)
    assert float(m["codebook_loss"]) == 0.0 and float(m["commitment_loss"]) > 0  # EMA mode
    np.testing.assert_allclose(m["psnr"], 10 * np.log10(4 / m["mse"]), rtol=1e-5)
    assert 1.0 <= float(m["perplexity"]) <= 8.0
    # The rounded reconstruction's PSNR is measured on the levels.
    expected = 10 * np.log10(16.0 ** 2 / np.mean((np.float64(batch["image"]) - rec) ** 2))
    np.testing.assert_allclose(psnr(batch["image"], rec, 17), expected, rtol=1e-5)
    # ... and pooled over batches by reconstruction_metrics, with the code usage.
    halves = [{"image": batch["image"][:8]}, {"image": batch["image"][8:]}]
    pooled = model.reconstruction_metrics(params, halves)
    np.testing.assert_allclose(pooled["psnr"], expected, rtol=1e-5)
    assert pooled["usage"] == len(np.unique(np.asarray(idx))) / 8
    assert pooled["num_examples"] == 16


def test_codebook_is_trainable_in_loss_mode_and_state_in_ema_mode(batch):
    for quantizer, trainable_codebook in (("loss", True), ("ema", False)):
        model = build(tiny_vqvae_config(quantizer).model)
        params = jax.eval_shape(model.init, jax.random.key(0), batch)
        trainable, state = split_state(model, params)
        assert ("vq" in trainable) == trainable_codebook
        assert ("codebook" in state) != trainable_codebook
        assert model.codebook(params).shape == (8, 4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    config = tiny_vqvae_config()
    workdir = str(tmp_path_factory.mktemp("vqvae"))
    return config, workdir, train_and_evaluate(config, workdir)


def test_trainer_updates_state_and_copies_it_into_the_ema(trained, batch):
    config, workdir, state = trained
    assert int(state.step) == 8
    params, ema = state.params, state.ema_params
    # The optimizer state covers the trainable part only (the one group "model").
    model, optimizer, *_ = build_run(config)
    trainable, frozen = split_state(model, params)
    assert jax.tree.structure(state.opt_state) == jax.tree.structure(
        {"model": optimizer["model"].init(trainable)})
    # Statistics moved away from their initial values (EMA codebook, counters).
    assert not np.allclose(frozen["cluster_size"], 1.0)
    # State is copied into the EMA params, trainable weights are averaged.
    for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(ema["state"])):
        np.testing.assert_array_equal(a, b)
    w, e = jax.tree.leaves(trainable)[0], jax.tree.leaves(split_state(model, ema)[0])[0]
    assert not np.array_equal(np.asarray(w), np.asarray(e))


def test_restart_keeps_codes_alive_through_training(trained):
    from genjax.train.logging import read_metrics

    _, workdir, state = trained
    metrics = read_metrics(workdir)
    assert [m["step"] for m in metrics] == [2, 4, 6, 8]
    assert {"perplexity", "usage", "dead_codes", "psnr", "mse"} <= set(metrics[0])
    # With a window of 2 steps, no code stays unused for longer than 2 steps.
    assert int(np.max(state.params["state"]["steps_unused"])) < 2


def test_resume_is_bit_exact(trained, tmp_path):
    """A run restarted from the step-4 snapshot of the trained run ends where it ended."""
    config, done, reference = trained
    workdir = tmp_path / "run"
    shutil.copytree(os.path.join(done, "checkpoints", "snapshots", "4"),
                    workdir / "checkpoints" / "latest" / "4")
    resumed = train_and_evaluate(config, str(workdir))
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    _, model, loaded, _ = load_run(str(workdir))
    assert int(loaded.step) == 8
    np.testing.assert_array_equal(loaded.params["state"]["steps_unused"],
                                  reference.params["state"]["steps_unused"])
