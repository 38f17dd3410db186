"""NADE with 500 ReLU hidden units shared by all conditionals (Uria et al. 2016; set
--config.model.activation=sigmoid for the original NADE).

    genjax train --config configs/nade.py \
        --workdir runs/nade   # binarized_digits
    genjax train --config configs/nade.py:digits \
        --workdir runs/nade_digits

The argument after ``:`` picks the dataset: binarized_digits (Bernoulli), digits
(17-way softmax), digits16 (256-way softmax).
"""

from genjax.configs import autoregressive_config


def get_config(dataset: str = "binarized_digits"):
    return autoregressive_config(
        "nade",
        dataset,
        model_kwargs=dict(hidden_dim=500, activation="relu"),
        training=dict(batch_size=64, num_steps=3000),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100),
    )
