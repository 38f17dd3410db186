"""Shared fixtures: a tiny VAE config and a session-scoped trained tiny run."""

from __future__ import annotations

import pytest

from genjax.configs import make_config


def tiny_vae_config(**training):
    """A VAE small enough to compile in seconds: digits 8x8, one conv level."""
    train = dict(batch_size=16, num_steps=8, steps_per_call=2, log_every=2, checkpoint_every=4,
                 snapshot_every=4, sample_every=0, num_sample_images=4, ema_decay=0.9,
                 progress=False)
    train.update(training)
    return make_config(
        "vae", "digits",
        model_kwargs=dict(image_shape=(8, 8, 1), num_levels=17, latent_dim=4, channels=(8,),
                          hidden_dim=32, decoder="logistic", iwae_samples=4),
        training=train,
        optimizer=dict(learning_rate=3e-3, warmup_steps=2, schedule="cosine", grad_clip=1.0),
        eval=dict(batch_size=128, num_examples=64, num_samples=64, sample_batch_size=32),
    )


@pytest.fixture
def tiny_config():
    return tiny_vae_config()


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """(config, workdir, final state) of a tiny VAE trained for 8 steps."""
    from genjax.train.trainer import train_and_evaluate

    config = tiny_vae_config()
    workdir = str(tmp_path_factory.mktemp("trained_tiny"))
    state = train_and_evaluate(config, workdir)
    return config, workdir, state
