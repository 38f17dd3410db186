"""Text-to-image on the procedural shapes (a small DALL-E): the caption's word tokens
("a large square in the top left", genjax/data/captions.py) followed by the 8x8 grid of
codes of the VQ-VAE of configs/vqvae_shapes.py, one causal transformer over both;
the caption is dropped 10% of the time for classifier-free guidance.

The VQ-VAE is trained first; ``vqvae_workdir`` names its workdir, relative to where
the command runs:

    genjax train --config configs/vqvae_shapes.py --workdir runs/vqvae_shapes     # first
    genjax train --config configs/text2img_shapes.py --workdir runs/text2img_shapes
    genjax sample --workdir runs/text2img_shapes --prompt "a large heart in the top left"
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "token_prior",
        "shapes",
        model_kwargs=dict(
            image_shape=(32, 32, 1),
            num_levels=256,
            vqvae_workdir="runs/vqvae_shapes",
            conditioning="text",
            captions="shapes",
            text_len=8,
            dim=128,
            num_layers=4,
            num_heads=4,
            p_uncond=0.1,
        ),
        training=dict(batch_size=64, num_steps=3000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, num_sample_images=64, ema_decay=0.999),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100, schedule="cosine", grad_clip=1.0),
        eval=dict(num_samples=0),
    )
