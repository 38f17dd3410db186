"""Tests of genjax.core.likelihoods: identities, closed forms and float64 references."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given
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
        y = np.asarray(lk.dequantize_with_noise(x, jnp.full_like(x, u), num_levels))
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


# --------------------------------------------------------------------------------------
# Properties (hypothesis)
# --------------------------------------------------------------------------------------
#
# Arrays keep a few fixed shapes (levels padded to 16 rows, pixels to 125 and mixtures to a
# fixed K with zero-weight components), and L comes from a small set: the likelihoods are
# jitted with L static, one compile per (function, L), which beats compiling their many ops
# eagerly.

_params8 = functools.partial(hnp.arrays, np.float32, (8,))
_discretized_jit = {name: jax.jit(fn, static_argnums=3) for name, fn in DISCRETIZED.items()}
_mixture_jit = jax.jit(lk.discretized_logistic_mixture_log_prob, static_argnums=4)
_pixel_jit = jax.jit(lk.pixel_mixture_log_prob, static_argnums=5)
_small_levels = st.sampled_from([2, 3, 4, 7, 16])          # one compile per L


def _all_levels(num_levels, rows=16):
    """to_symmetric(k) for k = 0..L-1, padded to ``rows`` by repeating L - 1: [rows, 1],
    and the mask of the real rows."""
    k = np.minimum(np.arange(rows), num_levels - 1)
    return lk.to_symmetric(k, num_levels)[:, None], np.arange(rows) < num_levels


@pytest.mark.parametrize("name", sorted(DISCRETIZED))
@given(num_levels=_small_levels,
       mean=_params8(elements=st.floats(-3, 3, width=32, allow_subnormal=False)),
       log_scale=_params8(elements=st.floats(-7, 4, width=32, allow_subnormal=False)))
def test_discretized_levels_sum_to_one(name, num_levels, mean, log_scale):
    """sum_{k=0}^{L-1} p(x_k | mu, s) = 1 for every mu, s and L, each log p(x_k) <= 0."""
    x, real = _all_levels(num_levels)
    log_p = np.asarray(_discretized_jit[name](x, mean, log_scale, num_levels), np.float64)[real]
    assert log_p.shape == (num_levels, 8) and np.all(np.isfinite(log_p))
    assert np.all(log_p <= 1e-6)
    np.testing.assert_allclose(np.exp(log_p).sum(0), 1.0, atol=1e-5)


@given(num_levels=_small_levels, k=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_logistic_mixture_levels_sum_to_one(num_levels, k, seed):
    """sum_k p(x_k) = 1 for a random mixture of K discretized logistics, and p(x) =
    sum_j pi_j p_logistic(x; mu_j, s_j) with pi = softmax(logits)."""
    rng = np.random.default_rng(seed)
    # K components padded to 4 with weight e^-1e4 / Z = 0 in float32: one shape for all K.
    logits = np.concatenate([rng.normal(size=(8, k)) * 2, np.full((8, 4 - k), -1e4)], -1)
    means, log_scales = rng.uniform(-2, 2, (8, 4)), rng.uniform(-6, 2, (8, 4))
    x, real = _all_levels(num_levels)
    log_p = np.asarray(_mixture_jit(x, np.float32(logits), np.float32(means),
                                    np.float32(log_scales), num_levels), np.float64)[real]
    np.testing.assert_allclose(np.exp(log_p).sum(0), 1.0, atol=1e-5)
    components = np.stack([np.exp(np.asarray(_discretized_jit["logistic"](
        x, np.float32(means[:, j]), np.float32(log_scales[:, j]), num_levels), np.float64))
        for j in range(k)], -1)[real]
    weights = scipy.special.softmax(np.float32(logits[:, :k]).astype(np.float64), axis=-1)
    np.testing.assert_allclose(np.exp(log_p), (components * weights).sum(-1), rtol=1e-5,
                               atol=1e-7)


@given(num_levels=st.sampled_from([2, 3, 5]), k=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1))
def test_pixel_mixture_sums_to_one_over_all_pixels(num_levels, k, seed):
    """sum over the L^3 RGB pixels of p(x) = 1 for random mixtures and channel couplings (one
    channel: the elementwise mixture above)."""
    rng, channels = np.random.default_rng(seed), 3
    pixels = np.stack(np.meshgrid(*[np.arange(num_levels)] * channels, indexing="ij"),
                      -1).reshape(-1, channels)
    n = len(pixels)
    pixels = np.concatenate([pixels, np.repeat(pixels[-1:], 125 - n, axis=0)])
    # K components padded to 3 with weight e^-1e4 / Z = 0 in float32: one shape for all K.
    logits = np.concatenate([rng.normal(size=k), np.full(3 - k, -1e4)])
    params = (logits, rng.uniform(-1.5, 1.5, (channels, 3)), rng.uniform(-4, 1, (channels, 3)),
              np.tanh(rng.normal(size=(channels * (channels - 1) // 2, 3))))
    log_p = _pixel_jit(lk.to_symmetric(pixels, num_levels), *(np.float32(p) for p in params),
                       num_levels)
    log_p = np.asarray(log_p, np.float64)[:n]
    assert np.all(log_p <= 1e-6)
    np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, atol=1e-5)


@given(logits=hnp.arrays(st.sampled_from([np.float32, np.float16]), (8,),
                         elements=st.floats(-30, 30, width=16, allow_subnormal=False)),
       x_dtype=st.sampled_from([np.bool_, np.uint8, np.int32, np.float32]))
def test_bernoulli_sums_to_one(logits, x_dtype):
    """p(0) + p(1) = 1, log p <= 0, in the floating dtype the arguments promote to."""
    log_p = [lk.bernoulli_log_prob(np.full(8, v, x_dtype), logits) for v in (0, 1)]
    dtype = jnp.result_type(x_dtype, logits.dtype)
    dtype = dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32
    assert log_p[0].dtype == log_p[1].dtype == dtype
    total = sum(np.exp(np.asarray(lp, np.float64)) for lp in log_p)
    np.testing.assert_allclose(total, 1.0, atol=2e-3 if dtype == jnp.float16 else 1e-6)
    assert all(np.all(np.asarray(lp) <= 0) for lp in log_p)


@given(params=hnp.arrays(np.float32, (4, 8),
                         elements=st.floats(-5, 5, width=32, allow_subnormal=False)),
       standard_prior=st.booleans())
def test_gaussian_kl_closed_form(params, standard_prior):
    """KL(q || p) = log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2, p = N(0, 1)
    by default."""
    m_q, s_q, m_p, s_p = params
    if standard_prior:
        kl = lk.gaussian_kl(m_q, s_q)
        m_p, s_p = np.zeros(8, np.float32), np.zeros(8, np.float32)
    else:
        kl = lk.gaussian_kl(m_q, s_q, m_p, s_p)
    m_q, s_q, m_p, s_p = (np.float64(a) for a in (m_q, s_q, m_p, s_p))
    ref = (s_p - s_q + (np.exp(2 * s_q) + (m_q - m_p) ** 2) / (2 * np.exp(2 * s_p)) - 0.5)
    np.testing.assert_array_less(np.abs(kl - ref),
                                 1e-4 * ref + 1e-6 * (1 + np.exp(2 * (s_q - s_p))))


@given(nll=hnp.arrays(np.float32, (5,),
                      elements=st.floats(0, 1e6, width=32, allow_subnormal=False)),
       num_dims=st.integers(1, 3 * 256 * 256))
def test_bits_per_dim_is_nats_over_d_ln2(nll, num_dims):
    """bpd D ln 2 = nll: a conversion of units, linear in the NLL."""
    bpd = np.asarray(lk.bits_per_dim(nll, num_dims), np.float64)
    np.testing.assert_allclose(bpd * num_dims * math.log(2.0), nll, rtol=1e-6,
                               atol=1e-30)         # XLA flushes subnormal results to 0


@given(num_levels=st.integers(2, 1024), seed=st.integers(0, 2**32 - 1))
def test_symmetric_scaling_round_trips_and_rounds_to_the_nearest_level(num_levels, seed):
    """from_symmetric(to_symmetric(k)) = k on every level (uint8 for L <= 256, int32
    above); any x maps to argmin_k |x - (2 k / (L - 1) - 1)|."""
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if num_levels <= 256 else np.int32
    k = np.append(rng.integers(0, num_levels, 62), [0, num_levels - 1]).astype(dtype)
    sym = np.asarray(lk.to_symmetric(k, num_levels))
    assert sym.dtype == np.float32 and sym.min() >= -1 and sym.max() <= 1
    assert sym[-2] == -1.0 and abs(sym[-1] - 1.0) <= 2.0**-23      # exactly 1: see below
    np.testing.assert_allclose(sym, 2 * np.asarray(lk.to_unit_interval(k, num_levels)) - 1,
                               atol=1e-6)
    back = np.asarray(lk.from_symmetric(sym, num_levels))
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, k)
    x = rng.uniform(-1.2, 1.2, 64).astype(np.float32)
    nearest = np.asarray(lk.from_symmetric(x, num_levels)).astype(np.int64)
    grid = 2.0 * np.arange(num_levels) / (num_levels - 1) - 1.0
    dist = np.abs(np.float64(x)[:, None] - grid[None, :])
    assert np.all(dist[np.arange(64), nearest] <= dist.min(1) + 1e-6)


def test_scaling_maps_the_top_level_to_exactly_one():
    """to_symmetric(L - 1) = to_unit_interval(L - 1) = 1.0 exactly, for every L."""
    for num_levels in (42, 48, 108):
        top = np.full(2, num_levels - 1, np.int32)
        np.testing.assert_array_equal(lk.to_symmetric(top, num_levels), 1.0)
        np.testing.assert_array_equal(lk.to_unit_interval(top, num_levels), 1.0)


@given(num_levels=st.integers(2, 1024), seed=st.integers(0, 2**32 - 1))
def test_uniform_dequantize_stays_in_the_bin(num_levels, seed):
    """y = (k + u) / L in [0, 1) with floor(y L) = k for every level, also for u = 0 and
    the largest float32 u below 1."""
    k = np.random.default_rng(seed).permutation(np.arange(1024) % num_levels)
    k = k.reshape(128, 8).astype(np.float32)
    below_one = float(np.nextafter(np.float32(1), np.float32(0)))
    for y in (lk.uniform_dequantize(jax.random.key(seed % 1000), k, num_levels),
              lk.dequantize_with_noise(k, jnp.zeros_like(k), num_levels),
              lk.dequantize_with_noise(k, jnp.full_like(k, below_one), num_levels)):
        y = np.asarray(y)
        assert y.dtype == np.float32 and y.min() >= 0.0 and y.max() < 1.0
        np.testing.assert_array_equal(np.floor(y * np.float32(num_levels)), k)
