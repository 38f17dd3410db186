"""DDPM with the CIFAR-10 U-Net of Ho et al. (2020) on the embedded 32x32x3 ``shapes_color``.

The network of the paper's CIFAR-10 model: base width 128, channel multipliers
(1, 2, 2, 2) (levels 32, 16, 8, 4), 2 ResBlocks per level, single-head self-attention at
16x16 (and in the middle), dropout 0.1; linear beta schedule over T = 1000, eps
prediction, Adam 2e-4 with 5000 warm-up steps, gradient clipping at 1, EMA 0.9999, batch
128. genjax's ResBlocks condition by AdaGN (a scale and a shift per channel from the time
embedding, where DDPM adds a shift only: 2,555,904 more weights), so the network has
38,307,203 parameters, the paper's 35.7M plus those scales (``tests/test_configs.py``
counts them). No CIFAR-10 is on this machine: the data are
the procedural 32x32x3 ``shapes_color`` images, so this config measures speed and memory
at the paper's size (``benchmarks/gpu.sh``) rather than reproducing its FID.

The config argument is the computation dtype (parameters and optimizer state stay
float32; see genjax/nn/precision.py):

    genjax train --config configs/ddpm_cifar_bench.py --workdir runs/ddpm_cifar_bench
    genjax train --config configs/ddpm_cifar_bench.py:bfloat16 --workdir runs/ddpm_cifar_bf16
    python benchmarks/train_speed.py --config configs/ddpm_cifar_bench.py:bfloat16 --steps 50
    [--config.model.remat=True]       # recompute block activations: less memory, more time
"""

from genjax.configs import make_config
from genjax.nn.precision import COMPUTE_DTYPES


def get_config(compute_dtype: str = "float32"):
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"ddpm_cifar_bench takes a compute dtype, one of {COMPUTE_DTYPES}; "
                         f"got {compute_dtype!r}")
    return make_config(
        "ddpm",
        "shapes_color",
        model_kwargs=dict(
            image_shape=(32, 32, 3),
            num_levels=256,
            num_timesteps=1000,
            schedule="linear",
            target="eps",
            base_channels=128,
            channel_mults=(1, 2, 2, 2),
            num_res_blocks=2,
            attention_resolutions=(16,),
            num_heads=1,
            dropout=0.1,
            sampler="ddim",
            sample_steps=100,
            eta=0.0,
            compute_dtype=compute_dtype,
        ),
        training=dict(batch_size=128, num_steps=800_000, log_every=100, checkpoint_every=5000,
                      sample_every=10_000, ema_decay=0.9999),
        optimizer=dict(learning_rate=2e-4, warmup_steps=5000, grad_clip=1.0),
        eval=dict(batch_size=128),
    )
