"""Glow on 16x16 digits (digits16, 256 levels): L = 3 scales of K steps
(actnorm -> LU 1x1 conv -> affine coupling), squeezing 16x16x1 to 8x8x4, 4x4x8 and
2x2x16 with a split after the first two. The 8x8 ``digits`` would leave only
4x4 and 2x2 after two squeezes (a third would reach 1x1), so its conditioners
would barely see any spatial context; 16x16 gives three real scales.

    genjax train --config configs/glow_digits.py --workdir runs/glow_digits
    genjax eval --workdir runs/glow_digits
    genjax sample --workdir runs/glow_digits --num 64 --out glow_samples.png
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "glow",
        "digits16",
        model_kwargs=dict(
            image_shape=(16, 16, 1),
            num_levels=256,
            num_scales=3,
            steps_per_scale=4,
            hidden=64,
            num_blocks=1,
            scale="sigmoid",
            conv1x1="lu",
            preprocess="shift",
        ),
        training=dict(batch_size=64, num_steps=3000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, ema_decay=0.999),
        optimizer=dict(learning_rate=1e-3, warmup_steps=200, schedule="cosine", grad_clip=10.0),
        eval=dict(num_samples=1000),
    )
