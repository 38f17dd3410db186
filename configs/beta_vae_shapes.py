"""beta-VAE (beta = 4) on the procedural shapes (32x32, factors: shape, scale,
rotation, x, y) with a discretized logistic decoder over 256 levels.

    genjax train --config configs/beta_vae_shapes.py --workdir runs/beta_vae_shapes
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "vae",
        "shapes",
        model_kwargs=dict(
            image_shape=(32, 32, 1),
            num_levels=256,
            latent_dim=10,
            channels=(16, 32, 64),
            hidden_dim=256,
            decoder="logistic",
            beta=4.0,
        ),
        training=dict(batch_size=64, num_steps=3000, log_every=100, checkpoint_every=1000,
                      sample_every=1000),
        optimizer=dict(learning_rate=1e-3, warmup_steps=200, grad_clip=1.0),
    )
