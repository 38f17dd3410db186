"""core/quantize: nearest code, straight-through gradients, EMA update, restart, usage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genjax.core import quantize as vq


@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 2**31 - 1))
def test_nearest_code_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(3, 4, 5)).astype(np.float32)
    codebook = rng.normal(size=(7, 5)).astype(np.float32)
    z_q, idx = vq.vector_quantize(jnp.asarray(z), jnp.asarray(codebook))
    dist = ((z[..., None, :].astype(np.float64) - codebook.astype(np.float64)) ** 2).sum(-1)
    expected = dist.argmin(-1)
    assert idx.shape == (3, 4) and idx.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(idx), expected)
    np.testing.assert_array_equal(np.asarray(z_q), codebook[expected])
    np.testing.assert_allclose(vq.squared_distances(jnp.asarray(z), jnp.asarray(codebook)),
                               dist, rtol=1e-4, atol=1e-4)


def test_straight_through_has_identity_jacobian_and_codebook_gets_only_codebook_loss():
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    codebook = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)

    def decoder(v):
        return jnp.sum(jnp.tanh(v @ w) ** 2)

    def through_quantizer(z, e):
        return decoder(vq.straight_through(z, vq.vector_quantize(z, e)[0]))

    z_q = vq.vector_quantize(z, codebook)[0]
    g_z, g_e = jax.grad(through_quantizer, argnums=(0, 1))(z, codebook)
    # d/dz of the decoder term equals the decoder's gradient at z_q (identity Jacobian).
    np.testing.assert_allclose(g_z, jax.grad(decoder)(z_q), rtol=1e-6)
    # ... and the decoder term sends no gradient to the codebook.
    np.testing.assert_array_equal(g_e, np.zeros_like(codebook))
    jac = jax.jacobian(lambda z: vq.straight_through(z, vq.vector_quantize(z, codebook)[0]))(z)
    np.testing.assert_array_equal(jac.reshape(18, 18), np.eye(18))

    def vq_losses(z, e):
        z_q = vq.vector_quantize(z, e)[0]
        return vq.codebook_loss(z, z_q), vq.commitment_loss(z, z_q, 0.25)

    cb_z, cb_e = jax.grad(lambda z, e: vq_losses(z, e)[0].sum(), argnums=(0, 1))(z, codebook)
    cm_z, cm_e = jax.grad(lambda z, e: vq_losses(z, e)[1].sum(), argnums=(0, 1))(z, codebook)
    np.testing.assert_array_equal(cb_z, 0.0)            # codebook loss: codebook only
    np.testing.assert_array_equal(cm_e, 0.0)            # commitment loss: encoder only
    np.testing.assert_allclose(cm_z, 0.5 * (z - z_q), rtol=1e-6)
    idx = np.asarray(vq.vector_quantize(z, codebook)[1])
    expected = np.zeros((4, 3), np.float32)
    np.add.at(expected, idx, 2 * (np.asarray(z_q) - np.asarray(z)))
    np.testing.assert_allclose(cb_e, expected, rtol=1e-5)


def test_ema_update_matches_hand_computed_example():
    """K = 2 codes, D = 1, gamma = 0.5, eps = 0.1; batch z = (1, 3, 10) with codes (0, 0, 1)."""
    z = jnp.array([[1.0], [3.0], [10.0]])
    idx = jnp.array([0, 0, 1])
    counts, sums = vq.code_counts(idx, 2), vq.code_sums(z, idx, 2)
    np.testing.assert_array_equal(counts, [2.0, 1.0])
    np.testing.assert_array_equal(sums, [[4.0], [10.0]])
    size, total, e = vq.ema_codebook_update(jnp.array([1.0, 1.0]), jnp.array([[0.0], [2.0]]),
                                            counts, sums, decay=0.5, epsilon=0.1)
    # N = 0.5 (1, 1) + 0.5 (2, 1) = (1.5, 1);  m = 0.5 (0, 2) + 0.5 (4, 10) = (2, 6)
    np.testing.assert_allclose(size, [1.5, 1.0])
    np.testing.assert_allclose(total, [[2.0], [6.0]])
    # n = 2.5; N~ = (N + 0.1) / (2.5 + 0.2) * 2.5 = (1.6, 1.1) * 2.5 / 2.7
    smoothed = np.array([1.6, 1.1]) * 2.5 / 2.7
    np.testing.assert_allclose(e[:, 0], np.array([2.0, 6.0]) / smoothed, rtol=1e-6)


def test_dead_code_restart_revives_unused_codes():
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.normal(size=(2, 8, 3)) + 5.0, jnp.float32)   # data far from code 1..3
    codebook = jnp.concatenate([jnp.full((1, 3), 5.0), -10.0 * jnp.ones((3, 3))])
    idx = vq.vector_quantize(z, codebook)[1]
    counts = vq.code_counts(idx, 4)
    assert float(vq.codebook_usage(counts)) == 0.25
    steps = jnp.zeros((4,), jnp.int32)
    for _ in range(3):
        steps = vq.update_unused_steps(steps, counts)
    np.testing.assert_array_equal(steps, [0, 3, 3, 3])
    dead = steps >= 3
    candidates = vq.random_rows(jax.random.key(0), z, 4)
    flat = np.asarray(z).reshape(-1, 3)
    for row in np.asarray(candidates):           # every candidate is an encoder output
        assert np.any(np.all(flat == row, axis=1))
    new = vq.restart_dead_codes(codebook, dead, candidates)
    np.testing.assert_array_equal(new[0], codebook[0])
    np.testing.assert_array_equal(new[1:], candidates[1:])
    assert float(vq.codebook_usage(vq.code_counts(vq.vector_quantize(z, new)[1], 4))) > 0.25


def test_one_hot_picks_pick_one_position_per_code_uniformly():
    picks = vq.one_hot_picks(jax.random.key(3), (4, 5, 2000))
    np.testing.assert_array_equal(picks.sum((0, 1)), 1.0)
    freq = np.asarray(picks.sum(-1)).ravel() / 2000            # 20 positions, p = 1/20
    assert np.abs(freq - 0.05).max() < 4 * np.sqrt(0.05 * 0.95 / 2000)


@pytest.mark.parametrize("k", [1, 5, 64])
def test_perplexity_is_k_for_uniform_use_and_one_for_a_single_code(k):
    np.testing.assert_allclose(vq.codebook_perplexity(jnp.full((k,), 3.0)), k, rtol=1e-5)
    single = jnp.zeros((k,)).at[k // 2].set(10.0)
    np.testing.assert_allclose(vq.codebook_perplexity(single), 1.0, rtol=1e-6)
    np.testing.assert_allclose(vq.codebook_usage(single), 1.0 / k, rtol=1e-6)
    # Two of four codes used equally: perplexity 2.
    np.testing.assert_allclose(vq.codebook_perplexity(jnp.array([0.0, 4.0, 0.0, 4.0])), 2.0,
                               rtol=1e-6)
