"""FVSBN: a logistic regression per pixel on the pixels before it (Bernoulli,
or a softmax over the levels).

    genjax train --config configs/fvsbn.py \
        --workdir runs/fvsbn   # binarized_digits
    genjax train --config configs/fvsbn.py:digits \
        --workdir runs/fvsbn_digits

The argument after ``:`` picks the dataset: binarized_digits (Bernoulli), digits
(17-way softmax), digits16 (256-way softmax).
"""

from genjax.configs import autoregressive_config


def get_config(dataset: str = "binarized_digits"):
    return autoregressive_config(
        "fvsbn",
        dataset,
        model_kwargs=dict(),
        training=dict(batch_size=64, num_steps=3000),
        optimizer=dict(learning_rate=3e-3, warmup_steps=100),
    )
