"""core/quantize: nearest code, straight-through gradients, EMA update, restart, usage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from genjax.core import quantize as vq


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


# --------------------------------------------------------------------------------------
# Properties (hypothesis)
# --------------------------------------------------------------------------------------

# (leading shape, D, K): a few, so that the eager ops compile once per configuration
CONFIGS = [((5,), 1, 4), ((4, 4), 3, 16), ((2, 2, 2), 8, 1), ((4, 3), 2, 5)]   # K <= N


@st.composite
def quantizer_inputs(draw):
    """(z [..., D], codebook [K, D]) float32 of random leading shape, D and K."""
    lead, d, k = draw(st.sampled_from(CONFIGS), label="(leading shape, D, K)")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    scale = draw(st.sampled_from([1e-2, 1.0, 1e2]), label="scale")
    return (np.float32(scale * rng.normal(size=lead + (d,))),
            np.float32(scale * rng.normal(size=(k, d))))


@given(quantizer_inputs())
def test_vector_quantize_is_the_nearest_code(inputs):
    """k* = argmin_k ||z - e_k||^2 by brute force (to float32 rounding of near ties), z_q =
    e_{k*} = lookup(codebook, k*)."""
    z, codebook = inputs
    z_q, idx = vq.vector_quantize(z, codebook)
    idx = np.asarray(idx)
    assert idx.shape == z.shape[:-1] and idx.dtype == np.int32
    dist = ((np.float64(z)[..., None, :] - np.float64(codebook)) ** 2).sum(-1)
    chosen = np.take_along_axis(dist, idx[..., None], -1)[..., 0]
    scale = (np.float64(z) ** 2).sum(-1) + (np.float64(codebook) ** 2).sum(-1).max()
    assert np.all(chosen <= dist.min(-1) + 1e-6 * scale)
    np.testing.assert_array_equal(z_q, codebook[idx])
    np.testing.assert_array_equal(z_q, vq.lookup(codebook, idx))


@jax.jit
def _straight_through_vjp(z, z_q, g):
    out, vjp = jax.vjp(vq.straight_through, z, z_q)
    return out, vjp(g)


@given(inputs=quantizer_inputs(), seed=st.integers(0, 2**32 - 1))
def test_straight_through_is_z_q_forward_and_identity_backward(inputs, seed):
    """z + sg[z_q - z] = z_q (to rounding); its VJP is g -> (g, 0) for any cotangent g."""
    z, codebook = inputs
    z_q = vq.vector_quantize(z, codebook)[0]
    g = np.float32(np.random.default_rng(seed).normal(size=z.shape))
    out, (g_z, g_zq) = _straight_through_vjp(z, z_q, g)
    np.testing.assert_allclose(out, z_q, rtol=0,
                               atol=4e-7 * (np.abs(z) + np.abs(np.asarray(z_q))).max())
    np.testing.assert_array_equal(g_z, g)
    np.testing.assert_array_equal(g_zq, 0.0)


@given(quantizer_inputs())
def test_code_counts_and_sums_partition_the_vectors(inputs):
    """sum_k n_k = N, n_k = #{i : k*_i = k}, sum_{i : k*_i = k} z_i by a loop."""
    z, codebook = inputs
    k = len(codebook)
    idx = vq.vector_quantize(z, codebook)[1]
    counts = np.asarray(vq.code_counts(idx, k))
    assert counts.sum() == z[..., 0].size
    np.testing.assert_array_equal(counts, np.bincount(np.asarray(idx).ravel(), minlength=k))
    flat, flat_idx = z.reshape(-1, z.shape[-1]), np.asarray(idx).ravel()
    sums = np.zeros((k, z.shape[-1]))
    for vector, code in zip(np.float64(flat), flat_idx):
        sums[code] += vector
    np.testing.assert_allclose(vq.code_sums(z, idx, k), sums, rtol=1e-5,
                               atol=1e-5 * np.abs(flat).max())


@given(counts=hnp.arrays(np.float32, st.sampled_from([1, 5, 32]),
                         elements=st.sampled_from([0.0, 1.0, 2.0, 7.0, 0.5, 1e3])))
def test_perplexity_and_usage_bounds(counts):
    """1 <= exp H(p) <= #{k : n_k > 0} <= K with p_k = n_k / sum n, and usage = that count
    over K in [0, 1]; exp H from a float64 entropy."""
    used = int((counts > 0).sum())
    usage = float(vq.codebook_usage(counts))
    assert usage == pytest.approx(used / len(counts)) and 0.0 <= usage <= 1.0
    perplexity = float(vq.codebook_perplexity(counts))
    if used == 0:
        assert perplexity == pytest.approx(1.0)
        return
    p = np.float64(counts[counts > 0]) / np.float64(counts).sum()
    np.testing.assert_allclose(perplexity, np.exp(-(p * np.log(p)).sum()), rtol=1e-5)
    assert 1.0 - 1e-5 <= perplexity <= used * (1 + 1e-5)


@given(quantizer_inputs())
def test_ema_update_without_decay_or_smoothing_is_a_k_means_step(inputs):
    """With gamma = 0 and eps = 0, and every code chosen, e_k <- the mean of the z_i
    nearest to e_k (Lloyd's step)."""
    z, codebook = inputs
    flat = z.reshape(-1, z.shape[-1])
    codebook = flat[:len(codebook)]                  # each code is chosen by its own row
    k = len(codebook)
    idx = vq.vector_quantize(z, codebook)[1]
    counts, sums = vq.code_counts(idx, k), vq.code_sums(z, idx, k)
    assume(np.all(np.asarray(counts) > 0))          # not so for float32 near-ties
    size, embed_sum, new = vq.ema_codebook_update(jnp.ones(k), jnp.zeros_like(codebook),
                                                  counts, sums, decay=0.0, epsilon=0.0)
    flat_idx = np.asarray(idx).ravel()
    means = np.stack([np.float64(flat[flat_idx == j]).mean(0) for j in range(k)])
    np.testing.assert_allclose(new, means, rtol=1e-5, atol=1e-5 * np.abs(flat).max())
    np.testing.assert_array_equal(size, counts)
