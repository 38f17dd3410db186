"""An energy-based model on 16x16 digits (256 levels): a small conv energy net trained by
contrastive divergence with short-run Langevin chains from a replay buffer (IGEBM / JEM).

    genjax train --config configs/ebm_digits.py --workdir runs/ebm_digits
    genjax eval  --workdir runs/ebm_digits      # FID / KID of the samples (no likelihood)

JEM's sampler settings (step 1, noise 0.01, 20 steps in training: tempered chains),
IGEBM's energy regulariser and data noise; samples start from noise and run 100 steps
(``--config.model.sample_init=buffer`` starts them from the persistent chains).
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "ebm",
        "digits16",
        model_kwargs=dict(
            image_shape=(16, 16, 1), num_levels=256, data_key="image", channels=(32, 64),
            hidden=128, langevin_steps=20, step_size=1.0, noise_scale=0.01, sample_steps=100,
            buffer_size=5000, reinit_prob=0.05, init_scale=1.0, energy_reg=0.1,
            data_noise=0.01),
        training=dict(batch_size=64, num_steps=4000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, ema_decay=0.999),
        optimizer=dict(learning_rate=1e-4, b1=0.0, b2=0.999, grad_clip=1.0),
        eval=dict(num_samples=500),
    )
