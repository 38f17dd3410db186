"""RealNVP on the 8x8 scikit-learn digits (17 levels): two scales of checkerboard and
channel affine couplings with ResNet conditioners, logit pre-processing.

    genjax train --config configs/realnvp_digits.py --workdir runs/realnvp_digits
    genjax eval --workdir runs/realnvp_digits
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "realnvp",
        "digits",
        model_kwargs=dict(
            image_shape=(8, 8, 1),
            num_levels=17,
            num_scales=2,
            steps_per_scale=3,
            hidden=64,
            num_blocks=2,
            scale="tanh",
            preprocess="logit",
        ),
        training=dict(batch_size=64, num_steps=3000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, ema_decay=0.999),
        optimizer=dict(learning_rate=1e-3, warmup_steps=200, schedule="cosine", grad_clip=10.0),
        eval=dict(num_samples=1000),
    )
