"""VAE on the 8x8 scikit-learn digits (17 levels, 0..16) with a discretized logistic decoder.

    genjax train --config configs/vae_digits.py --workdir runs/vae_digits
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "vae",
        "digits",
        model_kwargs=dict(
            image_shape=(8, 8, 1),
            num_levels=17,
            latent_dim=16,
            channels=(32, 64),
            hidden_dim=256,
            decoder="logistic",
            iwae_samples=256,
        ),
        training=dict(batch_size=64, num_steps=3000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, ema_decay=0.999),
        optimizer=dict(learning_rate=1e-3, warmup_steps=200, schedule="cosine", grad_clip=1.0),
    )
