"""An energy-based model on 2-D points: an MLP energy trained by contrastive divergence with
short-run Langevin chains from a replay buffer.

    genjax train --config configs/ebm_toy2d.py --workdir runs/ebm_toy2d
    genjax train --config configs/ebm_toy2d.py:ring8 --workdir runs/ebm_ring8

The argument picks the toy2d density: moons (default), or another of
genjax.data.toy2d.DENSITIES (ring8, grid25, gmm8, rings, checkerboard); on ring8 and grid25
``genjax eval`` counts the modes covered by 2500 samples. The Langevin moves are untempered
(noise_scale = sqrt(2 step_size)), so the chains sample p_theta itself, and
``EBM.log_prob_grid`` draws the normalised density.
"""

import math

from genjax.configs import make_config
from genjax.data import toy2d

# half-width of the uniform box the chains restart from: a little beyond the data
INIT_SCALE = {"grid25": 5.0, "rings": 4.0}


def get_config(dataset: str = "moons"):
    step_size = 0.005
    return make_config(
        "ebm",
        toy2d.dataset_name(dataset),
        model_kwargs=dict(
            image_shape=(2,), num_levels=0, data_key="point", hidden=128, num_layers=3,
            langevin_steps=40, step_size=step_size, noise_scale=math.sqrt(2 * step_size),
            sample_steps=500, buffer_size=10000, reinit_prob=0.05,
            init_scale=INIT_SCALE.get(dataset, 3.0), energy_reg=0.1, data_noise=0.0),
        training=dict(batch_size=256, num_steps=3000, log_every=100, checkpoint_every=1000,
                      num_sample_images=1000, ema_decay=0.99),
        optimizer=dict(learning_rate=1e-3, b1=0.5, grad_clip=1.0),
        eval=dict(num_samples=2500 if dataset in toy2d.MODES else 0, sample_batch_size=2500),
    )
