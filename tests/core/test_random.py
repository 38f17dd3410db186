"""batch_draw: the plain draw outside pmap, the global draw's rows inside it."""

import jax
import numpy as np

from genjax.core.random import batch_draw, data_parallel_axis, device_key


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
