"""MADE with two hidden layers of 1000 units (natural ordering; set
--config.model.num_orderings=8 --config.model.ordering=random for an ensemble).

    genjax train --config configs/made.py \
        --workdir runs/made   # binarized_digits
    genjax train --config configs/made.py:digits \
        --workdir runs/made_digits

The argument after ``:`` picks the dataset: binarized_digits (Bernoulli), digits
(17-way softmax), digits16 (256-way softmax).
"""

from genjax.configs import autoregressive_config


def get_config(dataset: str = "binarized_digits"):
    return autoregressive_config(
        "made",
        dataset,
        model_kwargs=dict(hidden_dims=(1000, 1000)),
        training=dict(batch_size=64, num_steps=3000),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100),
    )
