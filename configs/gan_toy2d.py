"""A GAN on the two moons: non-saturating loss, 2 discriminator updates per generator update.

    genjax train --config configs/gan_toy2d.py --workdir runs/gan_toy2d
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "toy_gan",
        "toy2d/moons",
        model_kwargs=dict(image_shape=(2,), latent_dim=2, hidden=64, num_layers=2, n_critic=2),
        training=dict(batch_size=256, num_steps=3000, log_every=100, checkpoint_every=1000,
                      num_sample_images=1000, ema_decay=0.99),
        # Adam with b1 = 0.5, as GANs are usually trained; each group may differ.
        optimizer=dict(learning_rate=1e-3, b1=0.5,
                       groups=dict(discriminator=dict(learning_rate=2e-3))),
        eval=dict(num_samples=0),
    )
