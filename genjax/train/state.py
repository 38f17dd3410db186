"""TrainState and the optax optimizer built from the config."""

from __future__ import annotations

from typing import Any, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import optax

from genjax.core import gan_losses
from genjax.core.random import init_key
from genjax.models.protocol import FROZEN, STATE_KEY, UpdateRule, update_rule
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


# ------------------------------------------------------------ parameter groups
def subtree(params: Mapping[str, Any], keys) -> dict:
    """The top-level entries ``keys`` of ``params``."""
    return {k: params[k] for k in keys}


def split_state(model, params) -> tuple[Any, Any]:
    """params -> (trainable, state); state is None for a model without state."""
    if not model.capabilities.state:
        return params, None
    return {k: v for k, v in params.items() if k != STATE_KEY}, params[STATE_KEY]


def group_optimizers(rule: UpdateRule, optimizer) -> dict[str, optax.GradientTransformation]:
    """Group -> optimizer. ``optimizer`` is a mapping from :func:`make_optimizer`, or one
    transformation used for every trainable group. The frozen group gets
    ``optax.set_to_zero()``: no moments, no weight decay, no update."""
    if isinstance(optimizer, optax.GradientTransformation):
        optimizer = {g: optimizer for g in rule.trainable_groups}
    missing = sorted(set(rule.trainable_groups) - set(optimizer))
    if missing:
        raise ValueError(f"no optimizer for parameter group(s) {missing}")
    out = dict(optimizer)
    if FROZEN in rule.groups:
        out[FROZEN] = optax.set_to_zero()
    return out


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


def make_optimizer(config: OptimizerConfig, num_steps: int, model=None):
    """[clip by global norm] -> adam | adamw | sgd(momentum = b1) | rmsprop(decay = b2) with
    the schedule -> [weight clipping].

    Without ``model``: one transformation. With it: group -> transformation for the
    groups of the model's update rule, each built from ``config.for_group(group)`` (the
    top-level settings, overridden by ``config.groups[group]``); the frozen group gets
    ``optax.set_to_zero()``."""
    if model is not None:
        rule = update_rule(model)
        unknown = sorted(set(config.groups) - set(rule.trainable_groups))
        if unknown:
            raise ValueError(
                f"config.optimizer.groups names {unknown}, which are not parameter groups "
                f"that this model trains; its groups are {list(rule.trainable_groups)}")
        return group_optimizers(rule, {g: make_optimizer(config.for_group(g), num_steps)
                                       for g in rule.trainable_groups})
    schedule = learning_rate_schedule(config, num_steps)
    if config.name == "adamw":
        opt = optax.adamw(schedule, config.b1, config.b2, weight_decay=config.weight_decay)
    elif config.name == "sgd":
        opt = optax.sgd(schedule, momentum=config.b1 or None)
    elif config.name == "rmsprop":
        opt = optax.rmsprop(schedule, decay=config.b2)
    else:
        opt = optax.adam(schedule, config.b1, config.b2)
    if config.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(config.grad_clip), opt)
    if config.clip_weights > 0:
        opt = optax.chain(opt, gan_losses.clip_weights(config.clip_weights))
    return opt


def init_state(model, optimizer, rng: jax.Array, batch: dict) -> TrainState:
    """Initialise params from ``batch`` (shapes, and data for data-dependent inits).

    rng: a typed key (``jax.random.key``); its data is stored in the state.
    optimizer: as for :func:`group_optimizers`; ``opt_state`` is group -> that group's
    optimizer state over its parameters.
    """
    init_rng, train_rng = jax.random.split(rng)
    params = jax.jit(model.init)(init_key(init_rng), batch)
    rule = update_rule(model)
    keys = rule.keys(params)
    optimizers = group_optimizers(rule, optimizer)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state={g: optimizers[g].init(subtree(params, keys[g])) for g in rule.groups},
        ema_params=jax.tree.map(jnp.copy, params),
        rng=jax.random.key_data(train_rng),
    )
