"""RealNVP on 2-D points (toy2d/moons; toy2d/checkerboard works the same way): affine
couplings with alternating masks, MLP conditioners and actnorm.

    genjax train --config configs/realnvp_toy2d.py --workdir runs/realnvp_toy2d
    genjax train --config configs/realnvp_toy2d.py --workdir runs/realnvp_checker \\
        --config.data.name=toy2d/checkerboard
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "realnvp",
        "toy2d/moons",
        model_kwargs=dict(
            image_shape=(2,),
            num_levels=0,
            data_key="point",
            steps_per_scale=8,
            hidden=128,
            num_blocks=2,
            scale="tanh",
        ),
        training=dict(batch_size=256, num_steps=3000, log_every=100, checkpoint_every=1000,
                      num_sample_images=2000, ema_decay=0.995),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100, schedule="cosine", grad_clip=10.0),
    )
