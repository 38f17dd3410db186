"""A causal transformer over the raster scan of sub-pixels (ImageGPT-like).

    genjax train --config configs/pixel_transformer.py \
        --workdir runs/pixel_transformer   # binarized_digits
    genjax train --config configs/pixel_transformer.py:digits \
        --workdir runs/pixel_transformer_digits

The argument after ``:`` picks the dataset: binarized_digits (Bernoulli), digits
(17-way softmax), digits16 (256-way softmax).
"""

from genjax.configs import autoregressive_config


def get_config(dataset: str = "binarized_digits"):
    return autoregressive_config(
        "pixel_transformer",
        dataset,
        model_kwargs=dict(dim=64, num_layers=3, num_heads=4),
        training=dict(batch_size=64, num_steps=3000),
        optimizer=dict(learning_rate=1e-3, warmup_steps=200),
    )
