"""A GAN on 2-D points: non-saturating loss, 2 discriminator updates per generator update.

    genjax train --config configs/gan_toy2d.py --workdir runs/gan_toy2d
    genjax train --config configs/gan_toy2d.py:ring8 --workdir runs/gan_ring8

The argument picks the toy2d density: moons (default), or the mode-coverage mixtures ring8
and grid25, on which ``genjax eval`` counts the modes covered by 2500 samples.
"""

from genjax.configs import make_config
from genjax.data import toy2d


def get_config(dataset: str = "moons"):
    return make_config(
        "toy_gan",
        toy2d.dataset_name(dataset),
        model_kwargs=dict(image_shape=(2,), latent_dim=2, hidden=64, num_layers=2, n_critic=2),
        training=dict(batch_size=256, num_steps=3000, log_every=100, checkpoint_every=1000,
                      num_sample_images=1000, ema_decay=0.99),
        # Adam with b1 = 0.5, as GANs are usually trained; each group may differ.
        optimizer=dict(learning_rate=1e-3, b1=0.5,
                       groups=dict(discriminator=dict(learning_rate=2e-3))),
        eval=dict(num_samples=2500 if dataset in toy2d.MODES else 0, sample_batch_size=2500),
    )
