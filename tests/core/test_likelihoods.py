"""Tests of genjax.core.likelihoods: identities, closed forms and float64 references."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from genjax.core import likelihoods as lk

# Means inside and beyond [-1, 1]; scales from tiny (e^-12) to large (e^5).
MEANS = np.array([-3.0, -1.0, -0.3, 0.0, 0.1234, 0.5, 1.0, 2.5], np.float32)
LOG_SCALES = np.array([-12.0, -7.0, -5.0, -3.0, -1.0, 0.0, 2.0, 5.0], np.float32)
# Mixture components as offsets of the grid point (K = 3).
MIX_LOGITS = np.array([0.3, -1.0, 2.0], np.float32)
MIX_MEAN_OFFSETS = np.array([-0.5, 0.0, 0.7], np.float32)
MIX_LOG_SCALE_OFFSETS = np.array([0.0, -1.0, 1.0], np.float32)


def _mixture(x, mean, log_scale, num_levels):
    """The K = 3 test mixture around (mean, log_scale), in the single-component signature."""
    shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(mean), jnp.shape(log_scale))
    means = jnp.asarray(mean)[..., None] + MIX_MEAN_OFFSETS
    log_scales = jnp.asarray(log_scale)[..., None] + MIX_LOG_SCALE_OFFSETS
    logits = jnp.broadcast_to(MIX_LOGITS, shape + (3,))
    return lk.discretized_logistic_mixture_log_prob(x, logits, means, log_scales, num_levels)


DISCRETIZED = {
    "gaussian": lk.discretized_gaussian_log_prob,
    "logistic": lk.discretized_logistic_log_prob,
    "logistic_mixture": _mixture,
}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _grid(name, num_levels):
    """log p and d log p / d(mean, log_scale) over all levels x MEANS x LOG_SCALES."""
    fn = DISCRETIZED[name]
    x = lk.to_symmetric(jnp.arange(num_levels), num_levels)[:, None, None]
    shape = (num_levels, len(MEANS), len(LOG_SCALES))
    # One parameter per element, so the gradient of the sum is the per-element gradient.
    mean = jnp.broadcast_to(MEANS[None, :, None], shape)
    log_scale = jnp.broadcast_to(LOG_SCALES[None, None, :], shape)
    log_p, grads = jax.value_and_grad(
        lambda m, s: jnp.sum(fn(x, m, s, num_levels)), argnums=(0, 1)
    )(mean, log_scale)
    return fn(x, mean, log_scale, num_levels), grads


# ---------------------------------------------------------------- discretized likelihoods


@pytest.mark.parametrize("num_levels", [256, 2])
@pytest.mark.parametrize("name", sorted(DISCRETIZED))
def test_discretized_probabilities_sum_to_one(name, num_levels):
    log_p, (g_mean, g_log_scale) = _grid(name, num_levels)
    log_p = np.asarray(log_p, np.float64)
    assert log_p.shape == (num_levels, len(MEANS), len(LOG_SCALES))
    assert np.all(np.isfinite(log_p))
    assert np.all(log_p <= 1e-6)
    np.testing.assert_allclose(np.exp(log_p).sum(axis=0), 1.0, atol=1e-5)
    # Gradients are finite even in the far tails (no NaN from unselected branches) and,
    # since sum_k p_k = 1 for all parameters, the expected score sum_k p_k grad log p_k = 0.
    for g in (np.asarray(g_mean, np.float64), np.asarray(g_log_scale, np.float64)):
        assert np.all(np.isfinite(g))
        expected_score = np.sum(np.exp(log_p) * g, axis=0)
        scale = np.sum(np.exp(log_p) * np.abs(g), axis=0) + 1.0
        np.testing.assert_allclose(expected_score / scale, 0.0, atol=1e-4)


def _std_edges(num_levels, mean, log_scale):
    """Standardized bin edges of every level, float64: k [L, 1, 1], lo, hi [L, M, S]."""
    k = np.arange(num_levels, dtype=np.float64)[:, None, None]
    inv_scale = np.exp(-np.float64(log_scale))
    lo = ((2 * k - 1) / (num_levels - 1) - 1 - mean) * inv_scale
    hi = ((2 * k + 1) / (num_levels - 1) - 1 - mean) * inv_scale
    return k, lo, hi


def _ref_gaussian(num_levels, mean, log_scale):
    k, lo, hi = _std_edges(num_levels, mean, log_scale)
    flip = lo + hi > 0  # use the lower tail, where log_ndtr is accurate
    a, b = np.where(flip, -hi, lo), np.where(flip, -lo, hi)
    log_a, log_b = scipy.special.log_ndtr(a), scipy.special.log_ndtr(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = log_b + np.log(-np.expm1(log_a - log_b))
    first, last = scipy.special.log_ndtr(hi), scipy.special.log_ndtr(-lo)
    return np.where(k == 0, first, np.where(k == num_levels - 1, last, inner))


def _ref_logistic(num_levels, mean, log_scale):
    k, lo, hi = _std_edges(num_levels, mean, log_scale)
    flip = lo + hi > 0
    a, b = np.where(flip, -hi, lo), np.where(flip, -lo, hi)
    with np.errstate(divide="ignore"):
        inner = np.log(scipy.special.expit(b) - scipy.special.expit(a))
    first, last = scipy.special.log_expit(hi), scipy.special.log_expit(-lo)
    return np.where(k == 0, first, np.where(k == num_levels - 1, last, inner))


def _ref_mixture(num_levels, mean, log_scale):
    mean, log_scale = np.float64(mean), np.float64(log_scale)
    components = np.stack(
        [
            _ref_logistic(num_levels, mean + dm, log_scale + ds)
            for dm, ds in zip(MIX_MEAN_OFFSETS, MIX_LOG_SCALE_OFFSETS)
        ],
        axis=-1,
    )
    log_w = MIX_LOGITS - scipy.special.logsumexp(np.float64(MIX_LOGITS))
    return scipy.special.logsumexp(components + log_w, axis=-1)


REFERENCES = {"gaussian": _ref_gaussian, "logistic": _ref_logistic,
              "logistic_mixture": _ref_mixture}


@pytest.mark.parametrize("name", sorted(DISCRETIZED))
def test_discretized_matches_float64_reference(name):
    """Every level, mean and scale against scipy in float64, far into the tails."""
    log_p = np.asarray(_grid(name, 256)[0], np.float64)
    mean = np.float64(MEANS)[None, :, None]
    log_scale = np.float64(LOG_SCALES)[None, None, :]
    ref = REFERENCES[name](256, mean, log_scale)
    # Skip tiny scales (there float32 rounding of x - mean alone moves log p by ~1e-4
    # relative) and references that underflowed in float64 itself.
    ok = np.isfinite(ref) & (ref > -1e5) & np.broadcast_to(log_scale >= -5.0, ref.shape)
    assert ok.sum() > 5000
    assert ref[ok].min() < -200.0  # bins hundreds of scales from the mean are covered
    with np.errstate(invalid="ignore"):
        err = np.abs(log_p - ref) / np.maximum(1.0, np.abs(ref))
    assert err[ok].max() < 2e-5, (err[ok].max(), np.argwhere(ok & (err == err[ok].max())))


def test_discretized_gaussian_gradients_match_finite_differences():
    log_p, (g_mean, g_log_scale) = _grid("gaussian", 256)
    mean = np.float64(MEANS)[None, :, None]
    log_scale = np.float64(LOG_SCALES)[None, None, :]
    h = 1e-6
    fd_mean = (_ref_gaussian(256, mean + h, log_scale) - _ref_gaussian(256, mean - h, log_scale))
    fd_log_scale = (
        _ref_gaussian(256, mean, log_scale + h) - _ref_gaussian(256, mean, log_scale - h)
    )
    ok = np.broadcast_to((log_scale >= -3.0) & (log_scale <= 2.0), fd_mean.shape)
    ok = ok & (np.asarray(log_p) > -1e3)
    for g, fd in ((g_mean, fd_mean / (2 * h)), (g_log_scale, fd_log_scale / (2 * h))):
        g = np.asarray(g, np.float64)
        np.testing.assert_allclose(g[ok], fd[ok], rtol=2e-3, atol=2e-3)


def test_mixture_of_one_is_the_logistic():
    rng = np.random.default_rng(0)
    x = lk.to_symmetric(rng.integers(0, 256, size=(4, 5)))
    mean = rng.normal(size=(4, 5)).astype(np.float32)
    log_scale = rng.uniform(-5, 1, size=(4, 5)).astype(np.float32)
    single = jax.jit(lk.discretized_logistic_log_prob)(x, mean, log_scale)
    mixture = jax.jit(lk.discretized_logistic_mixture_log_prob)(
        x, np.zeros((4, 5, 1), np.float32), mean[..., None], log_scale[..., None]
    )
    assert mixture.shape == (4, 5)
    np.testing.assert_allclose(mixture, single, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- continuous densities


def test_gaussian_log_prob_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 7)).astype(np.float32) * 3
    mean = rng.normal(size=(7,)).astype(np.float32)
    log_scale = rng.uniform(-3, 2, size=(3, 1)).astype(np.float32)
    got = lk.gaussian_log_prob(x, mean, log_scale)
    assert got.shape == (3, 7)
    ref = scipy.stats.norm.logpdf(x, loc=mean, scale=np.exp(np.float64(log_scale)))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_bernoulli_log_prob():
    logits = np.array([-100.0, -20.0, -3.0, -0.5, 0.0, 0.7, 4.0, 20.0, 100.0], np.float32)
    for x in (0.0, 1.0):
        got = np.asarray(lk.bernoulli_log_prob(np.full_like(logits, x), logits))
        assert np.all(np.isfinite(got))
        p = scipy.special.expit(np.float64(logits))
        with np.errstate(divide="ignore", invalid="ignore"):
            direct = x * np.log(p) + (1 - x) * np.log1p(-p)
        moderate = np.abs(logits) <= 4
        np.testing.assert_allclose(got[moderate], direct[moderate], rtol=1e-6, atol=1e-7)
        # The saturated logits are exact: log sigmoid(-100) = -100 - log1p(e^-100).
        exact = -np.logaddexp(0.0, np.float64(-logits if x else logits))
        np.testing.assert_allclose(got, exact, rtol=1e-6, atol=1e-9)
    # Broadcasting of a batch of images against per-pixel logits.
    assert lk.bernoulli_log_prob(jnp.ones((2, 4, 4, 1), jnp.uint8), jnp.zeros((4, 4, 1))).shape == (
        2, 4, 4, 1)


def test_gaussian_kl_matches_monte_carlo():
    mean_q, log_scale_q = np.float32([0.3, -1.0]), np.float32([math.log(0.7), 0.4])
    mean_p, log_scale_p = np.float32([-0.5, 0.0]), np.float32([math.log(1.4), -0.2])
    n = 200_000
    z = np.asarray(lk.reparameterize(jax.random.key(0), np.broadcast_to(mean_q, (n, 2)),
                                     log_scale_q), np.float64)
    log_ratio = scipy.stats.norm.logpdf(z, mean_q, np.exp(np.float64(log_scale_q))) - (
        scipy.stats.norm.logpdf(z, mean_p, np.exp(np.float64(log_scale_p))))
    mc, se = log_ratio.mean(axis=0), log_ratio.std(axis=0) / math.sqrt(n)
    kl = np.asarray(lk.gaussian_kl(mean_q, log_scale_q, mean_p, log_scale_p), np.float64)
    assert np.all(np.abs(kl - mc) < 5 * se), (kl, mc, se)
    # Default prior N(0, 1) and the closed form of the VAE term.
    vae = 0.5 * (np.exp(2 * np.float64(log_scale_q)) + np.float64(mean_q) ** 2 - 1
                 - 2 * np.float64(log_scale_q))
    np.testing.assert_allclose(lk.gaussian_kl(mean_q, log_scale_q), vae, rtol=1e-5)


def test_gaussian_kl_is_zero_for_equal_distributions():
    mean = np.float32([-2.0, 0.0, 0.3, 5.0])
    log_scale = np.float32([-4.0, 0.0, 1.5, 3.0])
    assert np.all(np.asarray(lk.gaussian_kl(mean, log_scale, mean, log_scale)) == 0.0)
    assert float(lk.gaussian_kl(0.0, 0.0)) == 0.0


_kl_jit = jax.jit(lk.gaussian_kl)
_finite = dict(min_value=-6.0, max_value=6.0, width=32)


@settings(deadline=None, max_examples=60)
@given(hnp.arrays(np.float32, (4, 8), elements=st.floats(**_finite)))
def test_gaussian_kl_is_non_negative(params):
    kl = np.asarray(_kl_jit(params[0], params[1], params[2], params[3]))
    assert np.all(np.isfinite(kl))
    assert np.all(kl >= 0.0)


# ---------------------------------------------------------------- reparameterization


def test_reparameterize_moments():
    n = 200_000
    mean = np.float32([0.5, -1.0])
    log_scale = np.float32([math.log(0.3), math.log(2.0)])
    z = np.asarray(lk.reparameterize(jax.random.key(1), np.broadcast_to(mean, (n, 2)), log_scale))
    assert z.shape == (n, 2)
    scale = np.exp(np.float64(log_scale))
    assert np.all(np.abs(z.mean(axis=0) - mean) < 5 * scale / math.sqrt(n))
    # std of the sample std is ~ sigma / sqrt(2 n)
    assert np.all(np.abs(z.std(axis=0) - scale) < 5 * scale / math.sqrt(2 * n))
    # A different key gives different noise.
    z2 = np.asarray(lk.reparameterize(jax.random.key(2), mean, log_scale))
    assert not np.allclose(z2, z[0])


def test_reparameterization_gradient_of_second_moment():
    """d/dmu E[z^2] = 2 mu and d/dlog sigma E[z^2] = 2 sigma^2 by pathwise gradients."""
    n = 200_000
    mu, log_sigma = 0.7, math.log(1.3)
    key = jax.random.key(3)

    def objective(mean, log_scale):
        z = lk.reparameterize(key, jnp.broadcast_to(mean, (n,)), log_scale)
        return jnp.mean(jnp.square(z)), z

    (g_mu, g_log_sigma), z = jax.grad(objective, argnums=(0, 1), has_aux=True)(
        jnp.float32(mu), jnp.float32(log_sigma))
    z = np.asarray(z, np.float64)
    # Per-sample pathwise gradients: 2 z and 2 z * sigma * eps = 2 z (z - mu).
    per_mu, per_log_sigma = 2 * z, 2 * z * (z - mu)
    np.testing.assert_allclose(g_mu, per_mu.mean(), rtol=1e-4)
    np.testing.assert_allclose(g_log_sigma, per_log_sigma.mean(), rtol=1e-4)
    sigma = math.exp(log_sigma)
    assert abs(float(g_mu) - 2 * mu) < 5 * per_mu.std() / math.sqrt(n)
    assert abs(float(g_log_sigma) - 2 * sigma**2) < 5 * per_log_sigma.std() / math.sqrt(n)


# ---------------------------------------------------------------- units and data scaling


def test_bits_per_dim():
    num_dims = 32 * 32 * 3
    nll = np.array([3.0, 8.0]) * num_dims * math.log(2.0)
    np.testing.assert_allclose(lk.bits_per_dim(nll, num_dims), [3.0, 8.0], rtol=1e-6)
    np.testing.assert_allclose(lk.bits_per_dim(math.log(2.0) * 784, 784), 1.0, rtol=1e-6)


def test_uniform_dequantize_range_and_floor():
    x = np.tile(np.arange(256, dtype=np.uint8), (512, 1))
    y = np.asarray(lk.uniform_dequantize(jax.random.key(4), x))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert y.min() >= 0.0 and y.max() < 1.0
    np.testing.assert_array_equal(np.floor(y * 256).astype(np.uint8), x)
    u = y * 256 - x  # the noise: uniform on [0, 1), mean 1/2, variance 1/12
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < 0.002


@pytest.mark.parametrize("num_levels", [2, 17, 255, 256, 1000])
def test_dequantize_stays_in_bin_for_extreme_noise(num_levels):
    """u = 0 and u = largest float below 1 still give floor(y * L) == x and y < 1."""
    x = jnp.arange(num_levels, dtype=jnp.float32)
    for u in (0.0, float(np.nextafter(np.float32(1), np.float32(0)))):
        y = np.asarray(lk._dequantize_with_noise(x, jnp.full_like(x, u), num_levels))
        assert y.min() >= 0.0 and y.max() < 1.0
        np.testing.assert_array_equal(np.floor(y * np.float32(num_levels)), np.asarray(x))


def test_scaling_round_trips():
    k = np.arange(256, dtype=np.uint8)
    sym = np.asarray(lk.to_symmetric(k))
    unit = np.asarray(lk.to_unit_interval(k))
    assert sym.dtype == np.float32 and unit.dtype == np.float32
    assert sym[0] == -1.0 and sym[-1] == 1.0 and unit[0] == 0.0 and unit[-1] == 1.0
    assert np.all(np.diff(sym) > 0)
    np.testing.assert_allclose(sym, 2 * unit - 1, atol=1e-6)
    back = np.asarray(lk.from_symmetric(sym))
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, k)
    # Off-grid values round to the nearest level and clip.
    np.testing.assert_array_equal(
        lk.from_symmetric(np.float32([-1.5, -1.0, 1.0 / 255, 0.999, 1.2])), [0, 0, 128, 255, 255]
    )
    # Binary data.
    np.testing.assert_array_equal(lk.from_symmetric(lk.to_symmetric([0, 1], 2), 2), [0, 1])


def _random_pixel_mixture(key, c, k=3, batch=()):
    ks = jax.random.split(key, 4)
    return (jax.random.normal(ks[0], batch + (k,)),
            0.6 * jax.random.normal(ks[1], batch + (c, k)),
            jax.random.normal(ks[2], batch + (c, k)) - 1.0,
            jnp.tanh(jax.random.normal(ks[3], batch + (c * (c - 1) // 2, k))))


def test_logistic_mixture_sums_to_one_over_256_levels():
    params = _random_pixel_mixture(jax.random.key(0), 1)
    x = lk.to_symmetric(jnp.arange(256)[:, None], 256)        # every level, one channel
    total = jnp.exp(jax.nn.logsumexp(lk.pixel_mixture_log_prob(x, *params, num_levels=256)))
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    # One channel: the pixel mixture is the per-element mixture.
    elementwise = lk.discretized_logistic_mixture_log_prob(
        x[:, 0], params[0], params[1][0], params[2][0], num_levels=256)
    np.testing.assert_allclose(lk.pixel_mixture_log_prob(x, *params, num_levels=256),
                               elementwise, atol=1e-5)


def test_rgb_pixel_mixture_sums_to_one_and_sampler_matches_it():
    levels = 4
    params = _random_pixel_mixture(jax.random.key(1), 3)
    grid = np.stack(np.meshgrid(*[np.arange(levels)] * 3, indexing="ij"), -1).reshape(-1, 3)
    logp = lk.pixel_mixture_log_prob(lk.to_symmetric(grid, levels), *params, num_levels=levels)
    np.testing.assert_allclose(jnp.exp(jax.nn.logsumexp(logp)), 1.0, atol=1e-5)
    # The coupling matters: with coefficients the channels are not independent.
    no_coupling = params[:3] + (jnp.zeros_like(params[3]),)
    other = lk.pixel_mixture_log_prob(lk.to_symmetric(grid, levels), *no_coupling,
                                      num_levels=levels)
    assert np.max(np.abs(np.asarray(logp - other))) > 1e-2
    # Empirical frequencies of the exact sampler match the probabilities.
    n = 40000
    batch = jax.tree.map(lambda p: jnp.broadcast_to(p, (n,) + p.shape), params)
    x = lk.pixel_mixture_sample(jax.random.key(2), *batch, num_levels=levels)
    k = np.asarray(lk.from_symmetric(x, levels)).astype(int)
    counts = np.bincount((k * [levels ** 2, levels, 1]).sum(-1), minlength=levels ** 3)
    p = np.exp(np.asarray(logp))
    assert np.max(np.abs(counts / n - p)) < 4 * np.sqrt(p.max() / n)
