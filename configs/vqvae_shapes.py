"""VQ-VAE on the procedural shapes (32x32, 256 levels): an 8x8 grid of codes from a
codebook of 128, EMA codebook updates with dead-code restart.

    genjax train --config configs/vqvae_shapes.py --workdir runs/vqvae_shapes
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "vqvae",
        "shapes",
        model_kwargs=dict(
            image_shape=(32, 32, 1),
            num_levels=256,
            channels=(32, 64),
            num_res_blocks=1,
            num_codes=128,
            code_dim=16,
            quantizer="ema",
            beta=0.25,
            codebook_decay=0.99,
            restart_dead_codes=True,
            dead_window=100,
        ),
        training=dict(batch_size=64, num_steps=3000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, ema_decay=0.99),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100, schedule="cosine", grad_clip=1.0),
        eval=dict(num_samples=0),
    )
