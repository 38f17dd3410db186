"""Latent diffusion on digits: DDPM on the 16-d posterior means of the VAE of
configs/vae_digits.py, decoded by its decoder.

    genjax train --config configs/vae_digits.py --workdir runs/vae_digits     # first
    genjax train --config configs/ldm_digits.py --workdir runs/ldm_digits
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "ddpm",
        "digits",
        model_kwargs=dict(
            image_shape=(8, 8, 1),
            num_levels=17,
            autoencoder_workdir="runs/vae_digits",
            num_timesteps=500,
            schedule="cosine",
            clip_x0=False,
            mlp_hidden=256,
            mlp_blocks=3,
            sampler="ddim",
            sample_steps=100,
        ),
        training=dict(batch_size=128, num_steps=4000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, ema_decay=0.999),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100, grad_clip=1.0),
    )
