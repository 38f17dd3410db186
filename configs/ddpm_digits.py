"""DDPM on 16x16 digits (256 levels): small U-Net, cosine schedule, eps prediction.

    genjax train  --config configs/ddpm_digits.py --workdir runs/ddpm_digits
    genjax sample --workdir runs/ddpm_digits --num 64 --out ddpm.png
    genjax eval   --workdir runs/ddpm_digits          # variational bound in bits/dim
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "ddpm",
        "digits16",
        model_kwargs=dict(
            image_shape=(16, 16, 1),
            num_levels=256,
            num_timesteps=1000,
            schedule="cosine",
            target="eps",
            base_channels=32,
            channel_mults=(1, 2),
            num_res_blocks=1,
            attention_resolutions=(8,),
            sampler="ddim",
            sample_steps=100,
            eta=0.0,
        ),
        training=dict(batch_size=64, num_steps=4000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, ema_decay=0.999),
        optimizer=dict(learning_rate=2e-4, warmup_steps=200, grad_clip=1.0),
        eval=dict(batch_size=128),
    )
