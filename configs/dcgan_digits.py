"""DCGAN on 16x16 digits (or 32x32 shapes): non-saturating loss, Adam(2e-4, b1 = 0.5).

    genjax train  --config configs/dcgan_digits.py --workdir runs/dcgan_digits
    genjax train  --config configs/dcgan_digits.py:shapes --workdir runs/dcgan_shapes
    genjax sample --workdir runs/dcgan_digits --num 64 --out dcgan.png
    genjax sample --workdir runs/dcgan_digits --invert some_pngs/    # GAN inversion
    genjax eval   --workdir runs/dcgan_digits     # FID / KID / IS / precision / recall

The argument picks the dataset: digits16 (default) or shapes.
"""

from genjax.configs import IMAGE_DATASETS, make_config

DATASETS = ("digits16", "shapes")


def get_config(dataset: str = "digits16"):
    if dataset not in DATASETS:
        raise ValueError(f"dcgan_digits: dataset must be one of {DATASETS}, got {dataset!r}")
    image_shape, num_levels = IMAGE_DATASETS[dataset]
    return make_config(
        "gan",
        dataset,
        model_kwargs=dict(image_shape=image_shape, num_levels=num_levels, latent_dim=64,
                          channels=32, loss="nonsaturating", n_critic=1),
        training=dict(batch_size=64, num_steps=6000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, ema_decay=0.999),
        optimizer=dict(learning_rate=2e-4, b1=0.5, b2=0.999),
        eval=dict(num_samples=1000 if dataset == "digits16" else 0),
    )
