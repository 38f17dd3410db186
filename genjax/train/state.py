"""TrainState and the optax optimizer built from the config."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from genjax.core.random import init_key
from genjax.train.config import OptimizerConfig


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; checkpointed whole.

    step: int32 scalar, number of optimizer steps taken.
    rng: uint32 key data of the root key; step keys are ``fold_in(rng, step)``.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any
    rng: jax.Array


# ------------------------------------------------------- non-trainable state
# A model with non-trainable state (running statistics such as a VQ-VAE's EMA codebook)
# keeps it in ``params["state"]`` and defines ``update_state`` (see genjax.train.step).
# The optimizer and the EMA of params only see the trainable part.
STATE_KEY = "state"


def has_state(model) -> bool:
    """Whether ``model`` carries non-trainable state in ``params["state"]``."""
    return hasattr(model, "update_state")


def split_state(model, params) -> tuple[Any, Any]:
    """params -> (trainable, state); state is None for a model without state."""
    if not has_state(model):
        return params, None
    return {k: v for k, v in params.items() if k != STATE_KEY}, params[STATE_KEY]


def merge_state(trainable, state) -> Any:
    """Inverse of :func:`split_state`."""
    return trainable if state is None else dict(trainable, **{STATE_KEY: state})


def learning_rate_schedule(config: OptimizerConfig, num_steps: int) -> optax.Schedule:
    """Linear warm-up to the peak, then constant or cosine decay to 0 at num_steps."""
    peak = config.learning_rate
    if config.schedule == "constant":
        after = optax.constant_schedule(peak)
    else:
        after = optax.cosine_decay_schedule(peak, max(num_steps - config.warmup_steps, 1))
    if config.warmup_steps <= 0:
        return after
    warmup = optax.linear_schedule(0.0, peak, config.warmup_steps)
    return optax.join_schedules([warmup, after], [config.warmup_steps])


def make_optimizer(config: OptimizerConfig, num_steps: int) -> optax.GradientTransformation:
    """[clip by global norm] -> adam | adamw | sgd(momentum = b1) with the schedule."""
    schedule = learning_rate_schedule(config, num_steps)
    if config.name == "adamw":
        opt = optax.adamw(schedule, config.b1, config.b2, weight_decay=config.weight_decay)
    elif config.name == "sgd":
        opt = optax.sgd(schedule, momentum=config.b1 or None)
    else:
        opt = optax.adam(schedule, config.b1, config.b2)
    if config.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(config.grad_clip), opt)
    return opt


def init_state(model, optimizer, rng: jax.Array, batch: dict) -> TrainState:
    """Initialise params from ``batch`` (shapes, and data for data-dependent inits).

    rng: a typed key (``jax.random.key``); its data is stored in the state.
    """
    init_rng, train_rng = jax.random.split(rng)
    params = jax.jit(model.init)(init_key(init_rng), batch)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(split_state(model, params)[0]),
        ema_params=jax.tree.map(jnp.copy, params),
        rng=jax.random.key_data(train_rng),
    )
