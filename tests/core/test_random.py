"""batch_draw: the plain draw outside pmap, the global draw's rows inside it."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from genjax.core.random import batch_draw, data_parallel_axis, device_key, init_key


def test_plain_draw_outside_data_parallel_axis():
    key = jax.random.key(3)
    np.testing.assert_array_equal(batch_draw(jax.random.normal, key, (4, 3)),
                                  jax.random.normal(key, (4, 3)))


def test_inside_axis_each_shard_gets_its_rows_of_the_global_draw():
    key = jax.random.key(3)
    full = jax.random.normal(key, (6, 2))

    def shard(_):
        with data_parallel_axis("data", 3):
            return batch_draw(jax.random.normal, key, (2, 2))

    # vmap with a named axis traces like pmap over 3 devices.
    rows = jax.vmap(shard, axis_name="data")(np.arange(3))
    np.testing.assert_array_equal(rows.reshape(6, 2), full)


def test_device_key_differs_per_device_inside_the_axis_only():
    key = jax.random.key(3)
    assert device_key(key) is key

    def shard(_):
        with data_parallel_axis("data", 3):
            return jax.random.key_data(device_key(key))

    keys = np.asarray(jax.vmap(shard, axis_name="data")(np.arange(3)))
    assert len({k.tobytes() for k in keys}) == 3
    np.testing.assert_array_equal(keys[1], jax.random.key_data(jax.random.fold_in(key, 1)))


# --------------------------------------------------------------------------------------
# Properties (hypothesis)
# --------------------------------------------------------------------------------------

SAMPLERS = {            # sampler(key, shape, *args, **kwargs)
    "normal": (jax.random.normal, (), {}),
    "uniform": (jax.random.uniform, (jnp.float32,), dict(minval=-2.0, maxval=3.0)),
}


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _sharded_draw(size, sampler, trailing, key):
    """What each of ``size`` devices draws for its [6 / size, ...] rows (vmap with a named
    axis traces like pmap), stacked: [size, 6 / size, ...]."""
    fn, args, kwargs = SAMPLERS[sampler]

    def shard(_):
        with data_parallel_axis("data", size):
            return batch_draw(fn, key, (6 // size,) + trailing, *args, **kwargs)

    return jax.vmap(shard, axis_name="data")(jnp.arange(size))


@given(size=st.sampled_from([1, 2, 3, 6]), sampler=st.sampled_from(sorted(SAMPLERS)),
       seed=st.integers(0, 2**31 - 1))
def test_sharded_draws_are_the_rows_of_the_global_draw(size, sampler, seed):
    """A global batch of 6 split n ways: device i, drawing [6 / n, 2] inside
    data_parallel_axis, gets rows [i B, (i + 1) B) of the draw of [6, 2] (args and kwargs
    passed through)."""
    fn, args, kwargs = SAMPLERS[sampler]
    key = jax.random.key(seed)
    rows = _sharded_draw(size, sampler, (2,), key)
    full = fn(key, (6, 2), *args, **kwargs)
    np.testing.assert_array_equal(rows.reshape(full.shape), full)


@functools.partial(jax.jit, static_argnums=0)
def _device_keys(size, key):
    def shard(_):
        with data_parallel_axis("outer", 1):
            with data_parallel_axis("data", size):
                return jax.random.key_data(device_key(key))

    return jax.vmap(shard, axis_name="data")(jnp.arange(size))


@given(size=st.sampled_from([2, 3, 5]), seed=st.integers(0, 2**31 - 1))
def test_device_keys_are_distinct_and_the_context_nests(size, seed):
    """device_key gives each device its own key fold_in(key, i); the innermost axis wins and
    leaving the context restores the plain key."""
    key = jax.random.key(seed)
    keys = np.asarray(_device_keys(size, key))
    assert len({k.tobytes() for k in keys}) == size
    for i in range(size):
        np.testing.assert_array_equal(keys[i], jax.random.key_data(jax.random.fold_in(key, i)))
    assert device_key(key) is key


@given(seed=st.integers(0, 2**31 - 1), other=st.integers(0, 2**31 - 1))
def test_init_key_is_a_deterministic_rbg_key(seed, other):
    """init_key(k) is an rbg key, the same for the same k and different for different k."""
    a, b = init_key(jax.random.key(seed)), init_key(jax.random.key(seed))
    assert jax.random.key_impl(a) == jax.random.key_impl(jax.random.key(0, impl="rbg"))
    np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))
    if other != seed:
        assert not np.array_equal(jax.random.key_data(a),
                                  jax.random.key_data(init_key(jax.random.key(other))))
