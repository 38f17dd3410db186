"""Gated PixelCNN with the PixelCNN++ output: a mixture of 5 discretized logistics per pixel,
colour channels coupled linearly (R -> G -> B), on 8-bit data.

    genjax train --config configs/pixelcnnpp.py --workdir runs/pixelcnnpp        # digits16
    genjax train --config configs/pixelcnnpp.py:cifar10 --workdir runs/pixelcnnpp_cifar10

``cifar10`` is read through tfds (prepare it first: ``tfds build cifar10``).
"""

from genjax.configs import autoregressive_config


def get_config(dataset: str = "digits16"):
    return autoregressive_config(
        "gated_pixelcnn",
        dataset,
        model_kwargs=dict(features=64, num_layers=5, first_kernel=7, kernel=3,
                          output="mixture", num_mixtures=5),
        training=dict(batch_size=64, num_steps=3000),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100),
    )
