"""PixelRNN, Row LSTM: a 7x7 mask-A convolution, then residual Row LSTM layers (rows top to
bottom; input-to-state a masked 1x3 convolution of the row, state-to-state a width-3
convolution of the row above).

    genjax train --config configs/row_lstm.py \
        --workdir runs/row_lstm   # binarized_digits
    genjax train --config configs/row_lstm.py:digits16 \
        --workdir runs/row_lstm_digits16

The argument after ``:`` picks the dataset: binarized_digits (Bernoulli), digits
(17-way softmax), digits16 (256-way softmax).
"""

from genjax.configs import autoregressive_config


def get_config(dataset: str = "binarized_digits"):
    return autoregressive_config(
        "row_lstm",
        dataset,
        model_kwargs=dict(features=32, num_layers=2, first_kernel=7, kernel=3),
        training=dict(batch_size=64, num_steps=3000),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100),
    )
