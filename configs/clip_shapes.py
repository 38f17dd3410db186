"""CLIP on the procedural shapes: an image encoder and a caption transformer trained by the
symmetric InfoNCE on ("a large square in the top left", image) pairs (genjax/models/clip.py).

    genjax train --config configs/clip_shapes.py --workdir runs/clip_shapes
    genjax eval  --workdir runs/clip_shapes --checkpoint best   # zero-shot shape, size,
                                                                 # quadrant; recall@1, @5

A trained run scores generated images against their prompts (``CLIP.clip_score``) and
embeds captions and images for text-conditioned diffusion and CLIP guidance. Sized to train
in a few minutes on 2 CPU cores.
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "clip",
        "shapes",
        model_kwargs=dict(
            image_shape=(32, 32, 1),
            num_levels=256,
            captions="shapes",
            text_len=8,
            embed_dim=64,
            image_channels=(16, 32, 64),
            image_hidden=128,
            text_dim=64,
            text_layers=2,
            text_heads=4,
            text_pool="last",
        ),
        training=dict(batch_size=128, num_steps=1500, log_every=100, checkpoint_every=500,
                      num_sample_images=0, ema_decay=0.99),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100, schedule="cosine", grad_clip=1.0),
        eval=dict(num_samples=0, validation_every=250),
    )
