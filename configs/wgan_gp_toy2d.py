"""WGAN-GP on 2-D points (Gulrajani et al., 2017): a critic with the gradient penalty
lambda = 10, 5 critic updates per generator update, Adam(1e-4, b1 = 0.5, b2 = 0.9).

    genjax train --config configs/wgan_gp_toy2d.py:ring8 --workdir runs/wgan_gp_ring8
    genjax train --config configs/wgan_gp_toy2d.py:grid25 --workdir runs/wgan_gp_grid25

The argument picks the toy2d density (ring8 by default); ``genjax eval`` counts the modes
covered by 2500 samples on ring8 and grid25.
"""

from genjax.configs import make_config
from genjax.data import toy2d


def get_config(dataset: str = "ring8"):
    return make_config(
        "toy_gan",
        toy2d.dataset_name(dataset),
        model_kwargs=dict(image_shape=(2,), latent_dim=2, hidden=128, num_layers=3, n_critic=5,
                          loss="wasserstein", gradient_penalty=10.0),
        training=dict(batch_size=320, num_steps=3000, log_every=100, checkpoint_every=1000,
                      num_sample_images=1000, ema_decay=0.99),
        optimizer=dict(learning_rate=1e-4, b1=0.5, b2=0.9),
        eval=dict(num_samples=2500 if dataset in toy2d.MODES else 0, sample_batch_size=2500),
    )
