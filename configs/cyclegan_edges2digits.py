"""CycleGAN on edges2digits, trained unpaired: G: edges -> digits and F: digits -> edges
(ResNet generators), PatchGAN discriminators D_Y and D_X, least-squares GAN loss,
cycle consistency lambda_cyc = 10, identity 0.5 lambda_cyc, a history pool of 50 fakes per
direction.

    genjax train --config configs/cyclegan_edges2digits.py --workdir runs/cyclegan
    genjax eval --workdir runs/cyclegan       # cycle and translation L1/PSNR on test

Training pairs each edge map with another example's digit (the model's docstring); the
test split's pairs are used only by ``genjax eval``.
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "cyclegan",
        "edges2digits",
        model_kwargs=dict(
            image_shape=(16, 16, 1),
            num_levels=256,
            generator="resnet",
            channels=(16, 32, 64),         # 7x7 conv, then 16 -> 8 -> 4
            num_res_blocks=2,
            norm="instance",
            disc_channels=(64,),
            disc_kernel=3,
            cycle_weight=10.0,
            identity_weight=0.5,
            pool_size=50,
        ),
        # Each step runs G and F six times over the batch: 16 examples keep a CPU step short.
        training=dict(batch_size=16, num_steps=3000, log_every=100, checkpoint_every=1000,
                      num_sample_images=64, ema_decay=0.999),
        optimizer=dict(learning_rate=2e-4, b1=0.5),
        eval=dict(num_samples=0),
    )
