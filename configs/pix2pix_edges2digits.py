"""Pix2Pix on edges2digits: a U-Net G(x) from Sobel edge maps x to 16x16 digits y, a PatchGAN
D(x, y) (11x11 patches, an 8x8 grid of logits), non-saturating GAN loss + 100 |y - G(x)|_1.

    genjax train --config configs/pix2pix_edges2digits.py --workdir runs/pix2pix
    genjax eval --workdir runs/pix2pix           # translation L1 (levels) and PSNR on test
    # the L1-only U-Net baseline (no discriminator phase):
    genjax train --config configs/pix2pix_edges2digits.py --workdir runs/unet_l1 \
        --config.model.adversarial_weight=0.0

Sample grids show G(x) of the first test edge maps.
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "pix2pix",
        "edges2digits",
        model_kwargs=dict(
            image_shape=(16, 16, 1),
            num_levels=256,
            channels=(32, 64, 128, 128),   # 16 -> 8 -> 4 -> 2 -> 1
            norm="instance",
            dropout=0.0,
            disc_channels=(64,),
            disc_kernel=3,
            l1_weight=100.0,
            adversarial_weight=1.0,
        ),
        training=dict(batch_size=32, num_steps=2000, log_every=100, checkpoint_every=1000,
                      num_sample_images=64, ema_decay=0.999),
        # The reference's Adam: lr 2e-4, b1 = 0.5, for both networks.
        optimizer=dict(learning_rate=2e-4, b1=0.5),
        eval=dict(num_samples=0),
    )
