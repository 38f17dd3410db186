"""PixelRNN, Diagonal BiLSTM: a 7x7 mask-A convolution, then residual Diagonal BiLSTM layers
(LSTMs along the image's diagonals in both directions, the right-to-left one shifted down a
row; no blind spot).

    genjax train --config configs/diagonal_bilstm.py \
        --workdir runs/diagonal_bilstm   # binarized_digits
    genjax train --config configs/diagonal_bilstm.py:digits16 \
        --workdir runs/diagonal_bilstm_digits16

The argument after ``:`` picks the dataset: binarized_digits (Bernoulli), digits
(17-way softmax), digits16 (256-way softmax).
"""

from genjax.configs import autoregressive_config


def get_config(dataset: str = "binarized_digits"):
    return autoregressive_config(
        "diagonal_bilstm",
        dataset,
        model_kwargs=dict(features=32, num_layers=2, first_kernel=7),
        training=dict(batch_size=64, num_steps=3000),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100),
    )
