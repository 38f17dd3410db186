"""The mixed-precision policy shared by the networks: float32 parameters and optimizer
state, computation in ``compute_dtype`` (``"bfloat16"`` on accelerators), and the
numerically delicate parts (normalisations, softmax, losses, outputs) in float32.

bfloat16 has float32's exponent range, so gradients neither overflow nor underflow
more than in float32: no loss scaling is needed (float16, which would need it, is not
offered).
"""

from __future__ import annotations

import jax.numpy as jnp

COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype(name: str) -> jnp.dtype:
    """The jnp dtype of a config's ``compute_dtype`` string, with a clear error."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"model.compute_dtype must be one of {list(COMPUTE_DTYPES)}, "
                         f"got {name!r}")
    return jnp.dtype(name)
