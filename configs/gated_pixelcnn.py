"""Gated PixelCNN (vertical and horizontal stacks, no blind spot), class-conditional.

    genjax train --config configs/gated_pixelcnn.py \
        --workdir runs/gated_pixelcnn   # binarized_digits
    genjax train --config configs/gated_pixelcnn.py:digits16 \
        --workdir runs/gated_pixelcnn_digits16

The argument after ``:`` picks the dataset: binarized_digits (Bernoulli), digits
(17-way softmax), digits16 (256-way softmax).
"""

from genjax.configs import autoregressive_config


def get_config(dataset: str = "binarized_digits"):
    return autoregressive_config(
        "gated_pixelcnn",
        dataset,
        model_kwargs=dict(features=64, num_layers=5, first_kernel=7, kernel=3, num_classes=10),
        training=dict(batch_size=64, num_steps=3000),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100),
    )
