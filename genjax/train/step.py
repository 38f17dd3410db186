"""The jitted train step, its K-steps-per-call form, and data parallelism.

``make_train_step(model, optimizer, ema_decay, parallel, steps_per_call)``
returns ``step(state, batch) -> (state, metrics)`` where ``batch`` leaves have
shape [K, B, ...] (K = steps_per_call) and every metric has shape [K].

One step, with the step key  k_s = fold_in(rng, s):

    (loss, metrics), g = value_and_grad(model.loss)(params, batch, k_s)
    params <- optax update of params with g
    ema    <- d_s * ema + (1 - d_s) * params,   d_s = min(d, (1 + s) / (10 + s))

Data parallelism (``parallel``):

* ``none``: ``jax.jit`` on the default device.
* ``mesh``: the same function under ``jax.jit`` with ``NamedSharding`` over a
  1-D ``Mesh(jax.devices(), ("data",))``: batch sharded on B, state
  replicated; XLA inserts the gradient all-reduce.
* ``pmap``: ``jax.pmap`` over the local devices; gradients and metrics are
  ``pmean``-ed over the ``data`` axis. Per-example noise is drawn through
  :func:`genjax.core.random.batch_draw`, so all three give the same numbers.

Non-trainable state (running statistics, e.g. the EMA codebook of a VQ-VAE). A
model opts in by keeping it in ``params["state"]`` and defining

    loss_and_stats(params, batch, rng) -> (loss, (metrics, stats))
    update_state(params, stats) -> (params, state_metrics)

``stats`` is a pytree of sums over the batch (counts, sums of vectors, and
anything else written as a sum, such as a one-hot pick of a batch row). The step
differentiates only the trainable part (the optimizer state is built for it
alone, so no optimizer, weight decay or clipping touches the state), applies the
optimizer update, then ``update_state`` on the batch ``stats`` (which may rewrite
state and trainable entries, e.g. re-seed a codebook row), and adds
``state_metrics`` to the step's metrics. The EMA of params averages the
trainable part and copies the state (counts are not averaged). Under ``pmap``
the stats are ``psum``-ed over the ``data`` axis before ``update_state``, so every
replica applies the same update from whole-batch statistics; under ``mesh`` XLA
computes them over the sharded batch directly. Models without ``update_state``
take the plain path above, unchanged.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from genjax.core.random import data_parallel_axis
from genjax.train.state import TrainState, has_state, merge_state, split_state

AXIS = "data"


def _ema(ema_decay: float, step: jax.Array, ema, params):
    # EMA with warm-up: d_s = min(d, (1 + s) / (10 + s)), so early averages are not
    # dominated by the initial weights (a zero-output network for the U-Net).
    step = step.astype(jnp.float32)
    decay = jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def _one_stateful_step(model, optimizer, ema_decay: float, axis_name: str | None):
    """The step of a model with non-trainable state (see the module docstring)."""
    def loss_fn(trainable, frozen, batch, key):
        return model.loss_and_stats(merge_state(trainable, frozen), batch, key)

    def step(state: TrainState, batch: dict):
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        trainable, frozen = split_state(model, state.params)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (_, (metrics, stats)), grads = grad_fn(trainable, frozen, batch, key)
        if axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name)
            metrics = jax.lax.pmean(metrics, axis_name)
            stats = jax.lax.psum(stats, axis_name)
        updates, opt_state = optimizer.update(grads, state.opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        params, state_metrics = model.update_state(merge_state(trainable, frozen), stats)
        trainable, frozen = split_state(model, params)
        ema = _ema(ema_decay, state.step, split_state(model, state.ema_params)[0], trainable)
        ema = merge_state(ema, frozen)
        metrics = dict(metrics, **state_metrics, grad_norm=optax.tree_utils.tree_norm(grads))
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema)
        return new, metrics

    return step


def _one_step(model, optimizer, ema_decay: float, axis_name: str | None):
    if has_state(model):
        return _one_stateful_step(model, optimizer, ema_decay, axis_name)

    def step(state: TrainState, batch: dict):
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        grad_fn = jax.value_and_grad(model.loss, has_aux=True)
        (_, metrics), grads = grad_fn(state.params, batch, key)
        if axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name)
            metrics = jax.lax.pmean(metrics, axis_name)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = _ema(ema_decay, state.step, state.ema_params, params)
        metrics = dict(metrics, grad_norm=optax.tree_utils.tree_norm(grads))
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema)
        return new, metrics

    return step


def _scan_steps(step: Callable, num_steps: int):
    """K steps in one call: batch leaves [K, B, ...] -> metrics leaves [K].

    K = 1 calls the step directly. For K > 1 the scan is unrolled on CPU: XLA's
    CPU backend runs convolutions inside a rolled while loop about 30x slower
    than outside one (measured with jax 0.10.2; see benchmarks/README.md).
    """
    if num_steps == 1:
        def single(state, batches):
            state, metrics = step(state, jax.tree.map(lambda x: x[0], batches))
            return state, jax.tree.map(lambda m: m[None], metrics)

        return single
    unroll = jax.default_backend() == "cpu"

    def many(state, batches):
        return jax.lax.scan(step, state, batches, unroll=unroll)

    return many


def make_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), (AXIS,))


def make_train_step(model, optimizer, ema_decay: float, parallel: str = "none",
                    steps_per_call: int = 1):
    """``step(state, batches)``, jitted with the state donated; see the module doc."""
    if parallel == "pmap":
        inner = _scan_steps(_one_step(model, optimizer, ema_decay, AXIS), steps_per_call)
        size = jax.local_device_count()

        def traced(state, batches):
            with data_parallel_axis(AXIS, size):
                return inner(state, batches)

        return jax.pmap(traced, axis_name=AXIS, donate_argnums=0)
    fn = _scan_steps(_one_step(model, optimizer, ema_decay, None), steps_per_call)
    if parallel == "mesh":
        mesh = make_mesh()
        replicated = NamedSharding(mesh, P())
        return jax.jit(fn, in_shardings=(replicated, NamedSharding(mesh, P(None, AXIS))),
                       out_shardings=(replicated, replicated), donate_argnums=0)
    return jax.jit(fn, donate_argnums=0)


# ------------------------------------------------------------------ placement
def num_data_shards(parallel: str) -> int:
    return jax.local_device_count() if parallel == "pmap" else (
        len(jax.devices()) if parallel == "mesh" else 1)


def put_state(state: TrainState, parallel: str) -> TrainState:
    """Host/device state -> the layout the step of ``parallel`` expects."""
    if parallel == "pmap":
        n = jax.local_device_count()
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), state)
    if parallel == "mesh":
        return jax.device_put(state, NamedSharding(make_mesh(), P()))
    return jax.device_put(state)


def get_state(state: TrainState, parallel: str) -> TrainState:
    """The step's state layout -> one copy (for checkpoints, sampling, eval)."""
    if parallel == "pmap":
        return jax.tree.map(lambda x: x[0], state)
    return state


def put_batch(batches: dict, parallel: str) -> dict:
    """Host batches [K, B, ...] -> device layout ([D, K, B/D, ...] for pmap)."""
    if parallel == "pmap":
        n = jax.local_device_count()

        def split(x):
            k, b = x.shape[:2]
            x = x.reshape((k, n, b // n) + x.shape[2:])
            return np.moveaxis(x, 1, 0)

        return jax.tree.map(split, batches)
    if parallel == "mesh":
        return jax.device_put(batches, NamedSharding(make_mesh(), P(None, AXIS)))
    return jax.device_put(batches)
