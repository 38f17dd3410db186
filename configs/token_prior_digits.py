"""Class-conditional token prior on the 16x16 digits: a causal transformer over the 4x4
grid of codes of the VQ-VAE of configs/vqvae_digits.py (a small DALL-E with a class
instead of a caption), classifier-free guidance by dropping the class 10% of the time.
Dropout 0.3: the 1,500 training digits are 24k codes, and without it this transformer
overfits within 300 steps (held-out nats per code rise from 3.07 to 6.12 by step 3000).

The VQ-VAE is trained first; ``vqvae_workdir`` names its workdir, relative to where
the command runs:

    genjax train --config configs/vqvae_digits.py --workdir runs/vqvae_digits     # first
    genjax train --config configs/token_prior_digits.py --workdir runs/token_prior_digits
    genjax sample --workdir runs/token_prior_digits --cond 3

The config argument ``text`` conditions on captions instead ("a handwritten three",
genjax/data/captions.py: 3 word tokens before the 16 codes):

    genjax train --config configs/token_prior_digits.py:text --workdir runs/token_prior_digits_text
    genjax sample --workdir runs/token_prior_digits_text --prompt "a handwritten three"
"""

from genjax.configs import make_config


def get_config(conditioning: str = "class"):
    if conditioning not in ("class", "text"):
        raise ValueError(f"token_prior_digits takes 'class' or 'text', got {conditioning!r}")
    text = conditioning == "text"
    return make_config(
        "token_prior",
        "digits16",
        model_kwargs=dict(
            image_shape=(16, 16, 1),
            num_levels=256,
            num_classes=0 if text else 10,
            vqvae_workdir="runs/vqvae_digits",
            conditioning=conditioning,
            captions="digits",
            text_len=3,
            dim=128,
            num_layers=4,
            num_heads=4,
            p_uncond=0.1,
            dropout=0.3,
        ),
        training=dict(batch_size=64, num_steps=3000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, num_sample_images=100, ema_decay=0.999),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100, schedule="cosine", grad_clip=1.0),
        eval=dict(num_samples=500),
    )
