"""RealNVP on the 8x8 scikit-learn digits (17 levels): two scales of checkerboard and
channel affine couplings with ResNet conditioners, logit pre-processing. The 1,500
training digits are few: wider conditioners (two residual blocks) or longer runs reach
lower training bits/dim but worse test bits/dim.

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
            num_blocks=1,
            scale="tanh",
            preprocess="logit",
        ),
        training=dict(batch_size=64, num_steps=1500, log_every=100, checkpoint_every=1000,
                      sample_every=1000, ema_decay=0.999),
        optimizer=dict(learning_rate=1e-3, warmup_steps=200, schedule="cosine", grad_clip=10.0),
        eval=dict(num_samples=1000),
    )
