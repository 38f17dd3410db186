"""MADE with one hidden layer of 1000 units, trained order-agnostically over an ensemble of
8 random orderings (and connectivities) with shared weights; the test density is the
ensemble's mixture (Germain et al. 2015). Set --config.model.num_orderings=1
--config.model.ordering=natural for a single MADE.

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
        model_kwargs=dict(hidden_dims=(1000,), num_orderings=8, ordering="random"),
        training=dict(batch_size=64, num_steps=3000),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100),
    )
