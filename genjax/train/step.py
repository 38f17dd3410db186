"""The jitted train step, its K-steps-per-call form, and data parallelism.

``make_train_step(model, optimizers, ema_decay, parallel, steps_per_call)``
returns ``step(state, batch) -> (state, metrics)`` where ``batch`` leaves have
shape [K, B, ...] (K = steps_per_call) and every metric has shape [K].

One step runs the phases of the model's :class:`~genjax.models.protocol.UpdateRule`
in order, with the step key  k_s = fold_in(rng, s).  Phase i (group g, loss L_i)
draws its key from k_i = k_s (i = 0) or fold_in(k_s, i), and, when it repeats
n > 1 times, repeat r from fold_in(k_i, r):

    (loss, metrics), grad = value_and_grad(L_i wrt params[g])(params, batch_r, k)
    params[g], opt_state[g] <- optax update of group g alone

``batch_r`` is the whole batch, or with ``split_batch`` its r-th of n strided
slices (examples r, r + n, ...; the same examples on one device and under pmap
when n divides the per-device batch). A model that declares no update rule has
one phase, ``model.loss`` over every trainable parameter: the single-loss step.
Then, for the groups with an EMA (default: every trainable one),

    ema <- d_s * ema + (1 - d_s) * params,   d_s = min(d, (1 + s) / (10 + s))

and every other group (a GAN's discriminator, frozen sub-models) is copied into
``ema_params``. Metrics: the phase's own, plus ``grad_norm`` (the norm of the
phase's gradient). With several phases each metric is named ``<phase>_<metric>``
and repeated phases report the mean over their repeats.

Data parallelism (``parallel``):

* ``none``: ``jax.jit`` on the default device.
* ``mesh``: the same function under ``jax.jit`` with ``NamedSharding`` over a
  1-D ``Mesh(jax.devices(), ("data",))``: batch sharded on B, state
  replicated; XLA inserts the gradient all-reduce.
* ``fsdp``: as ``mesh``, but the state (parameters, optimizer moments, EMA) is
  sharded over the ``data`` axis too: each leaf of at least ``FSDP_MIN_SIZE``
  elements along its largest dimension divisible by the number of devices, the
  rest replicated (:func:`fsdp_shardings`). The step is jitted with these
  shardings in and out; XLA inserts the all-gathers of the parameters and the
  reduce-scatters of the gradients.
* ``pmap``: ``jax.pmap`` over the local devices; gradients and metrics are
  ``pmean``-ed over the ``data`` axis. Per-example noise is drawn through
  :func:`genjax.core.random.batch_draw`, so all four give the same numbers.

Several processes (``jax.distributed``, :mod:`genjax.train.distributed`): the mesh
holds every process's devices (``jax.devices()``); ``mesh`` and ``fsdp`` work
unchanged. Each process passes only its rows of every global batch
(:func:`process_rows`) to :func:`put_batch`, which assembles the global array with
``jax.make_array_from_process_local_data``; :func:`put_state` builds global arrays
from the (identical) host state of every process.

Non-trainable state (running statistics, e.g. the EMA codebook of a VQ-VAE). A
model declares ``capabilities.state``, keeps it in ``params["state"]`` and defines

    loss_and_stats(params, batch, rng) -> (loss, (metrics, stats))
    update_state(params, stats) -> (params, state_metrics)

``stats`` is a pytree of sums over the batch (counts, sums of vectors, and
anything else written as a sum, such as a one-hot pick of a batch row). Its phase
(``with_stats``) differentiates only the trainable part (no optimizer, weight decay
or clipping touches the state), applies the optimizer update, then ``update_state``
on the batch ``stats`` (which may rewrite state and trainable entries, e.g.
re-seed a codebook row), and adds ``state_metrics`` to the step's metrics. The
EMA copies the state (counts are not averaged). Under ``pmap`` the stats are
``psum``-ed over the ``data`` axis before ``update_state``, so every replica
applies the same update from whole-batch statistics; under ``mesh`` XLA computes
them over the sharded batch directly.
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
from genjax.models.protocol import Phase, update_rule
from genjax.train.state import TrainState, group_optimizers, subtree

AXIS = "data"


def _ema(ema_decay: float, step: jax.Array, ema, params):
    # EMA with warm-up: d_s = min(d, (1 + s) / (10 + s)), so early averages are not
    # dominated by the initial weights (a zero-output network for the U-Net).
    step = step.astype(jnp.float32)
    decay = jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def _strided_slices(batch: dict, n: int) -> dict:
    """Leaves [B, ...] -> [n, B/n, ...]; slice r holds examples r, r + n, r + 2n, ..."""
    def split(x):
        if x.shape[0] % n:
            raise ValueError(f"a batch of {x.shape[0]} examples cannot be split into {n} "
                             "equal slices; make the (per-device) batch a multiple of it")
        return jnp.moveaxis(x.reshape((x.shape[0] // n, n) + x.shape[1:]), 1, 0)

    return jax.tree.map(split, batch)


def _phase_update(model, phase: Phase, keys: tuple[str, ...], tx, axis_name: str | None):
    """``update(params, opt_state_g, batch, key) -> (params, opt_state_g, metrics)``: one
    gradient step of ``phase.loss`` on the group's parameters ``keys``."""

    def loss_fn(group, params, batch, key):
        return phase.loss(dict(params, **group), batch, key)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def update(params, opt_state, batch, key):
        group = subtree(params, keys)
        (_, aux), grads = grad_fn(group, params, batch, key)
        metrics, stats = aux if phase.with_stats else (aux, None)
        if axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name)
            metrics = jax.lax.pmean(metrics, axis_name)
            if stats is not None:
                stats = jax.lax.psum(stats, axis_name)
        updates, opt_state = tx.update(grads, opt_state, group)
        params = dict(params, **optax.apply_updates(group, updates))
        if stats is not None:
            params, state_metrics = model.update_state(params, stats)
            metrics = dict(metrics, **state_metrics)
        metrics = dict(metrics, grad_norm=optax.tree_utils.tree_norm(grads))
        return params, opt_state, metrics

    return update


def _one_step(model, optimizers, ema_decay: float, axis_name: str | None):
    rule = update_rule(model)
    optimizers = group_optimizers(rule, optimizers)

    def step(state: TrainState, batch: dict):
        k_s = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        params, opt_state = state.params, dict(state.opt_state)
        keys = rule.keys(params)
        metrics = {}
        for i, phase in enumerate(rule.phases):   # a fixed, short list: unrolled on purpose
            g = phase.group
            update = _phase_update(model, phase, keys[g], optimizers[g], axis_name)
            k_i = k_s if i == 0 else jax.random.fold_in(k_s, i)
            if phase.repeat == 1:
                params, opt_state[g], m = update(params, opt_state[g], batch, k_i)
            else:
                n = phase.repeat
                slices = _strided_slices(batch, n) if phase.split_batch else None

                def body(carry, xs, update=update, k_i=k_i):
                    (p, s), (r, b) = carry, xs          # b: this repeat's slice, or None
                    p, s, m = update(p, s, batch if b is None else b, jax.random.fold_in(k_i, r))
                    return (p, s), m

                (params, opt_state[g]), m = jax.lax.scan(body, (params, opt_state[g]),
                                                         (jnp.arange(n), slices))
                m = jax.tree.map(lambda v: v.mean(0), m)
            if len(rule.phases) == 1:
                metrics = m
            else:
                metrics.update({f"{phase.label}_{k}": v for k, v in m.items()})
        averaged = [k for g in rule.averaged_groups for k in keys[g]]
        ema = dict(params)   # copies of the groups without an EMA, and the state
        ema.update(_ema(ema_decay, state.step, subtree(state.ema_params, averaged),
                        subtree(params, averaged)))
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


# Leaves with fewer elements are replicated under fsdp: sharding them saves little memory
# and costs a collective each.
FSDP_MIN_SIZE = 1024


def _fsdp_spec(shape: tuple[int, ...], n: int) -> P:
    """Shard along the largest dimension divisible by ``n`` (the first of equals), or
    replicate a leaf that is small or has no such dimension."""
    if n == 1 or int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE:
        return P()
    dims = [d for d in range(len(shape)) if shape[d] % n == 0]
    if not dims:
        return P()
    d = max(dims, key=lambda i: (shape[i], -i))
    return P(*([None] * d + [AXIS]))


def fsdp_shardings(tree, mesh: Mesh | None = None):
    """``NamedSharding`` of every leaf of ``tree`` (arrays or shape structs) under fsdp."""
    mesh = make_mesh() if mesh is None else mesh
    n = mesh.shape[AXIS]
    return jax.tree.map(lambda x: NamedSharding(mesh, _fsdp_spec(tuple(x.shape), n)), tree)


def state_shardings(state, parallel: str):
    """The shardings the step of ``parallel`` keeps the state in (mesh and fsdp), or None."""
    if parallel == "mesh":
        return jax.tree.map(lambda _: NamedSharding(make_mesh(), P()), state)
    if parallel == "fsdp":
        return fsdp_shardings(state)
    return None


def _fsdp_jit(fn):
    """``fn`` jitted with the fsdp shardings of the first state it is called with."""
    mesh = make_mesh()
    compiled = {}

    def call(state, batches):
        if "fn" not in compiled:
            shardings = fsdp_shardings(state, mesh)
            replicated = NamedSharding(mesh, P())
            compiled["fn"] = jax.jit(
                fn, in_shardings=(shardings, NamedSharding(mesh, P(None, AXIS))),
                out_shardings=(shardings, replicated), donate_argnums=0)
        return compiled["fn"](state, batches)

    return call


def make_train_step(model, optimizer, ema_decay: float, parallel: str = "none",
                    steps_per_call: int = 1):
    """``step(state, batches)``, jitted with the state donated; see the module doc.

    optimizer: one optax transformation for every trainable group, or a mapping
    group -> transformation (:func:`genjax.train.state.make_optimizer`)."""
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
    if parallel == "fsdp":
        return _fsdp_jit(fn)
    return jax.jit(fn, donate_argnums=0)


# ------------------------------------------------------------------ placement
def num_data_shards(parallel: str) -> int:
    return jax.local_device_count() if parallel == "pmap" else (
        len(jax.devices()) if parallel in ("mesh", "fsdp") else 1)


def process_rows(batch_size: int, parallel: str) -> tuple[int, int]:
    """``(start, stop)``: the rows of every global batch of ``batch_size`` that this
    process's devices hold under ``parallel`` (all of them with one process). The rows of
    all processes, in process order, make up the global batch."""
    if jax.process_count() == 1 or parallel not in ("mesh", "fsdp"):
        return 0, batch_size
    sharding = NamedSharding(make_mesh(), P(AXIS))
    slices = sorted({(s[0].start or 0, batch_size if s[0].stop is None else s[0].stop)
                     for s in sharding.addressable_devices_indices_map((batch_size,)).values()})
    start, stop = slices[0][0], slices[-1][1]
    if sum(b - a for a, b in slices) != stop - start:
        raise ValueError(f"the devices of process {jax.process_index()} do not hold one "
                         f"contiguous block of the batch: {slices}")
    return start, stop


def _global(tree, shardings):
    """Global arrays of ``shardings`` from a host pytree that every process holds whole."""
    host = jax.device_get(tree)
    return jax.tree.map(lambda x, s: jax.make_array_from_callback(
        np.shape(x), s, lambda index, x=x: np.asarray(x)[index]), host, shardings)


def put_state(state: TrainState, parallel: str) -> TrainState:
    """Host/device state -> the layout the step of ``parallel`` expects."""
    if parallel == "pmap":
        n = jax.local_device_count()
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), state)
    if parallel in ("mesh", "fsdp"):
        shardings = state_shardings(state, parallel)
        if jax.process_count() > 1:
            return _global(state, shardings)
        return jax.device_put(state, shardings)
    return jax.device_put(state)


def get_state(state: TrainState, parallel: str) -> TrainState:
    """The step's state layout -> one copy (for checkpoints, sampling, eval)."""
    if parallel == "pmap":
        return jax.tree.map(lambda x: x[0], state)
    return state


def put_batch(batches: dict, parallel: str) -> dict:
    """Host batches [K, B, ...] -> device layout ([D, K, B/D, ...] for pmap).

    With several processes (mesh, fsdp) each passes its rows [K, B_p, ...] of the global
    batch (:func:`process_rows`) and gets the global array [K, B, ...]."""
    if parallel == "pmap":
        n = jax.local_device_count()

        def split(x):
            k, b = x.shape[:2]
            x = x.reshape((k, n, b // n) + x.shape[2:])
            return np.moveaxis(x, 1, 0)

        return jax.tree.map(split, batches)
    if parallel in ("mesh", "fsdp"):
        sharding = NamedSharding(make_mesh(), P(None, AXIS))
        if jax.process_count() > 1:
            count = jax.process_count()
            return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
                sharding, x, (x.shape[0], x.shape[1] * count) + x.shape[2:]), batches)
        return jax.device_put(batches, sharding)
    return jax.device_put(batches)
