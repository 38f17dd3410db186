"""PixelCNN: a 7x7 mask-A convolution, then residual blocks of 3x3 mask-B convolutions.

    genjax train --config configs/pixelcnn.py \
        --workdir runs/pixelcnn   # binarized_digits
    genjax train --config configs/pixelcnn.py:digits16 \
        --workdir runs/pixelcnn_digits16

The argument after ``:`` picks the dataset: binarized_digits (Bernoulli), digits
(17-way softmax), digits16 (256-way softmax).
"""

from genjax.configs import autoregressive_config


def get_config(dataset: str = "binarized_digits"):
    return autoregressive_config(
        "pixelcnn",
        dataset,
        model_kwargs=dict(features=64, num_layers=5, first_kernel=7, kernel=3),
        training=dict(batch_size=64, num_steps=3000),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100),
    )
