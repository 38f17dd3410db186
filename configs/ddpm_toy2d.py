"""DDPM on 2-D points (toy2d/moons) with a residual MLP noise predictor.

    genjax train --config configs/ddpm_toy2d.py --workdir runs/ddpm_toy2d
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "ddpm",
        "toy2d/moons",
        model_kwargs=dict(
            image_shape=(2,),
            num_levels=0,
            data_key="point",
            num_timesteps=200,
            schedule="linear",
            clip_x0=False,
            mlp_hidden=128,
            mlp_blocks=3,
            sampler="ddpm",
        ),
        training=dict(batch_size=256, num_steps=3000, log_every=100, checkpoint_every=1000,
                      num_sample_images=1000, ema_decay=0.995),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100, grad_clip=1.0),
    )
