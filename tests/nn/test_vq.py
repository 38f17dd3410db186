"""nn/vq: the quantizer layer's losses, statistics and state updates; encoder/decoder shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.core import quantize as vq
from genjax.core.random import init_key
from genjax.nn.vq import VectorQuantizer, VQDecoder, VQEncoder


def _z(seed=0, shape=(2, 3, 3, 4)):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _picks(z, k, seed=0):
    return vq.one_hot_picks(jax.random.key(seed), z.shape[:-1] + (k,))


def test_loss_mode_codebook_gets_gradient_only_from_codebook_loss():
    layer = VectorQuantizer(5, 4, mode="loss", beta=0.25)
    trainable, state = layer.init(jax.random.key(0))
    z = _z()

    def terms(trainable, z):
        z_st, _, losses, _ = layer(trainable, state, z, _picks(z, 5))
        return jnp.sum(z_st ** 2), losses["codebook"], losses["commitment"]

    for i, (to_codebook, to_z) in enumerate([(False, True), (True, False), (False, True)]):
        g_cb, g_z = jax.grad(lambda t, z: terms(t, z)[i], argnums=(0, 1))(trainable, z)
        assert bool(jnp.any(g_cb["codebook"] != 0)) == to_codebook
        assert bool(jnp.any(g_z != 0)) == to_z


def test_ema_layer_update_is_the_closed_form_and_stats_are_batch_sums():
    layer = VectorQuantizer(6, 4, mode="ema", decay=0.9, epsilon=1e-3, restart=False)
    trainable, state = layer.init(jax.random.key(1))
    assert trainable == {}
    z = _z(1) * 0.01                       # on the scale of the initial codebook
    _, idx, losses, stats = layer(trainable, state, z, _picks(z, 6))
    assert float(losses["codebook"]) == 0.0
    np.testing.assert_array_equal(stats["counts"], vq.code_counts(idx, 6))
    np.testing.assert_allclose(stats["sums"], vq.code_sums(z, idx, 6), rtol=1e-6)
    _, new, metrics = layer.update(trainable, state, stats)
    counts = np.asarray(stats["counts"])
    size = 0.9 * 1.0 + 0.1 * counts
    total = 0.9 * np.asarray(state["codebook"]) + 0.1 * np.asarray(stats["sums"])
    smoothed = (size + 1e-3) / (size.sum() + 6e-3) * size.sum()
    np.testing.assert_allclose(new["cluster_size"], size, rtol=1e-6)
    np.testing.assert_allclose(new["codebook"], total / smoothed[:, None], rtol=1e-5)
    np.testing.assert_array_equal(new["steps_unused"], (counts == 0).astype(int))
    np.testing.assert_allclose(metrics["perplexity"], vq.codebook_perplexity(stats["counts"]))


@pytest.mark.parametrize("mode", ["ema", "loss"])
def test_layer_restarts_codes_unused_for_the_window(mode):
    layer = VectorQuantizer(8, 4, mode=mode, dead_window=2)
    trainable, state = layer.init(jax.random.key(2))
    z = 0.01 * _z(2) + 3.0                        # far from every initial code: one code wins
    usage = []
    for step in range(4):
        picks = _picks(z, 8, step)
        _, idx, _, stats = layer(trainable, state, z, picks)
        usage.append(float(vq.codebook_usage(stats["counts"])))
        trainable, state, metrics = layer.update(trainable, state, stats)
        if step == 1:                        # 7 codes unused for 2 steps: restarted
            assert float(metrics["dead_codes"]) == 7.0
            restarted = np.asarray(layer.codebook(trainable, state))
            flat = np.asarray(z).reshape(-1, 4)
            dead = np.asarray(stats["counts"]) == 0
            for row in restarted[dead]:      # re-seeded at encoder outputs
                assert np.any(np.all(np.isclose(flat, row), axis=1))
            np.testing.assert_array_equal(state["steps_unused"][dead], 0)
    assert usage[0] == usage[1] == 1 / 8
    assert usage[2] > 0.5


def test_without_restart_dead_codes_stay_dead():
    layer = VectorQuantizer(8, 4, mode="ema", dead_window=2, restart=False)
    trainable, state = layer.init(jax.random.key(2))
    z = 0.01 * _z(2) + 3.0
    for step in range(4):
        _, _, _, stats = layer(trainable, state, z, _picks(z, 8, step))
        trainable, state, metrics = layer.update(trainable, state, stats)
    assert float(metrics["dead_codes"]) == 7.0
    assert float(metrics["usage"]) == 1 / 8


def test_encoder_decoder_shapes():
    x = jnp.zeros((2, 8, 8, 1))
    enc, dec = VQEncoder((8,), 4), VQDecoder((8,), 1)
    z = enc.apply(enc.init(init_key(jax.random.key(0)), x), x)
    assert z.shape == (2, 4, 4, 4)
    out = dec.apply(dec.init(init_key(jax.random.key(1)), z), z)
    assert out.shape == (2, 8, 8, 1)


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        VectorQuantizer(4, 2, mode="kmeans")
