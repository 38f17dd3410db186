"""WaveNet over the raster scan: 2 stacks of dilations 1..128 (receptive field 511).

    genjax train --config configs/wavenet.py \
        --workdir runs/wavenet   # binarized_digits
    genjax train --config configs/wavenet.py:digits \
        --workdir runs/wavenet_digits

The argument after ``:`` picks the dataset: binarized_digits (Bernoulli), digits
(17-way softmax), digits16 (256-way softmax).
"""

from genjax.configs import autoregressive_config


def get_config(dataset: str = "binarized_digits"):
    return autoregressive_config(
        "wavenet",
        dataset,
        model_kwargs=dict(features=64, skip_features=128, num_layers=8, num_stacks=2),
        training=dict(batch_size=64, num_steps=3000),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100),
    )
