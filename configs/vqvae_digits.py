"""VQ-VAE on the 16x16 digits (256 levels): a 4x4 grid of codes from a codebook of 64,
EMA codebook updates with dead-code restart.

    genjax train --config configs/vqvae_digits.py --workdir runs/vqvae_digits
    # without restart: --config.model.restart_dead_codes=False
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "vqvae",
        "digits16",
        model_kwargs=dict(
            image_shape=(16, 16, 1),
            num_levels=256,
            channels=(32, 64),
            num_res_blocks=1,
            num_codes=64,
            code_dim=16,
            quantizer="ema",
            beta=0.25,
            codebook_decay=0.99,
            restart_dead_codes=True,
            dead_window=100,
        ),
        training=dict(batch_size=64, num_steps=1000, log_every=50, checkpoint_every=500,
                      sample_every=500, ema_decay=0.99),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100, schedule="cosine", grad_clip=1.0),
        eval=dict(num_samples=0),
    )
