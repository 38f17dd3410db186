"""Text-to-image diffusion on the procedural shapes: a pixel-space DDPM whose U-Net
cross-attends to a small transformer's encoding of the caption ("a large square in the
top left", genjax/data/captions.py), both trained together; the caption is dropped to
the empty one 10% of the time for classifier-free guidance.

    genjax train  --config configs/text2img_diffusion_shapes.py --workdir runs/t2i_diffusion
    genjax sample --workdir runs/t2i_diffusion --prompt "a large square in the top left" \\
        --guidance 3
    genjax eval   --workdir runs/t2i_diffusion    # shape reader over the 24 captions, per w

Sized to train in about 25 minutes on 2 CPU cores.
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "ddpm",
        "shapes",
        model_kwargs=dict(
            image_shape=(32, 32, 1),
            num_levels=256,
            num_timesteps=1000,
            schedule="cosine",
            target="eps",
            base_channels=16,
            channel_mults=(1, 2, 4),
            num_res_blocks=1,
            attention_resolutions=(8,),
            num_heads=4,
            captions="shapes",
            text_len=8,
            text_dim=64,
            text_layers=2,
            text_heads=4,
            label_dropout=0.1,
            sampler="ddim",
            sample_steps=50,
            eta=0.0,
            guidance_scale=3.0,
        ),
        training=dict(batch_size=32, num_steps=3000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, num_sample_images=48, ema_decay=0.999),
        optimizer=dict(learning_rate=1e-3, warmup_steps=200, schedule="cosine", grad_clip=1.0),
        eval=dict(num_samples=0, num_examples=64, conditioning_per_condition=10,
                  conditioning_guidance=(0.0, 1.0, 3.0)),
    )
