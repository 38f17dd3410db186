"""A small StyleGAN2-style generator on 16x16 digits (or 32x32 shapes with an argument).

    genjax train --config configs/stylegan_digits.py --workdir runs/stylegan_digits
    genjax train --config configs/stylegan_digits.py:shapes_color --workdir runs/stylegan_shapes

The argument names the dataset: digits16 (default, 16x16x1, 256 levels), digits (8x8x1,
17 levels), shapes (32x32x1) or shapes_color (32x32x3). Adam with b1 = 0, b2 = 0.99 and
lr 2e-3, StyleGAN2's optimizer; R1 on real images every step; style mixing 0.9.
"""

from genjax.configs import IMAGE_DATASETS, make_config

# Synthesis channels at 4x4, 8x8, ..., H (the discriminator uses them reversed). Small, for
# CPU: at 16x16 a step (both phases, R1 every step) takes about 0.1-0.3 s on 2 cores.
CHANNELS = {8: (64, 32), 16: (64, 32, 16), 32: (128, 64, 32, 16)}
DATASETS = ("digits16", "digits", "shapes", "shapes_color")
SHAPES_COLOR = ((32, 32, 3), 256)


def get_config(dataset: str = "digits16"):
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} for stylegan_digits; "
                         f"choose one of {DATASETS}")
    shape, levels = SHAPES_COLOR if dataset == "shapes_color" else IMAGE_DATASETS[dataset]
    channels = CHANNELS[shape[0]]
    return make_config(
        "stylegan", dataset,
        model_kwargs=dict(image_shape=shape, num_levels=levels, latent_dim=64, w_dim=64,
                          mapping_layers=4, channels=channels, d_channels=channels[::-1],
                          mixing_prob=0.9, r1_gamma=0.1, mbstd_group=4),
        training=dict(batch_size=64, num_steps=5000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, num_sample_images=64, ema_decay=0.998),
        # StyleGAN2: Adam(lr 2e-3, b1 = 0, b2 = 0.99) for both players.
        optimizer=dict(learning_rate=2e-3, b1=0.0, b2=0.99),
        eval=dict(num_samples=1000),
    )
