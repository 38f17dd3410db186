"""IWAE bound: exact on a linear Gaussian model with the true posterior; ordered in K."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from genjax.core.variational import importance_weighted_bound


def _linear_gaussian_log_weights(key, x, s, k, q_mean, q_std):
    """p(z) = N(0, 1), p(x|z) = N(z, s^2); q(z|x) = N(q_mean, q_std^2): log w [K]."""
    z = q_mean + q_std * jax.random.normal(key, (k,))
    return (jax.scipy.stats.norm.logpdf(x, z, s) + jax.scipy.stats.norm.logpdf(z)
            - jax.scipy.stats.norm.logpdf(z, q_mean, q_std))


def test_exact_posterior_gives_exact_log_likelihood_for_any_k():
    x, s = 1.3, 0.5
    post_var = 1.0 / (1.0 + 1.0 / s**2)
    post_mean = post_var * x / s**2
    exact = stats.norm.logpdf(x, 0.0, np.sqrt(1.0 + s**2))
    for k in (1, 5, 50):
        logw = _linear_gaussian_log_weights(jax.random.key(k), x, s, k, post_mean,
                                            np.sqrt(post_var))
        np.testing.assert_allclose(importance_weighted_bound(logw), exact, rtol=1e-5)


def test_bound_tightens_with_k_and_stays_below_log_likelihood():
    x, s = 1.3, 0.5
    exact = stats.norm.logpdf(x, 0.0, np.sqrt(1.0 + s**2))
    keys = jax.random.split(jax.random.key(0), 2000)

    def mean_bound(k):
        logw = jax.vmap(lambda key: _linear_gaussian_log_weights(key, x, s, k, 0.0, 1.0))(keys)
        return float(jnp.mean(importance_weighted_bound(logw, axis=1)))

    l1, l10, l100 = mean_bound(1), mean_bound(10), mean_bound(100)
    assert l1 < l10 < l100 < exact
    assert exact - l100 < 0.2 * (exact - l1)


# --------------------------------------------------------------------------------------
# Properties (hypothesis)
# --------------------------------------------------------------------------------------


def _logmeanexp(a, axis):
    """log (1/K) sum_k e^{a_k} in float64 by shifting with the maximum."""
    a = np.float64(a)
    top = a.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.mean(np.exp(a - top), axis=axis))


_bound = jax.jit(importance_weighted_bound, static_argnames="axis")   # one compile a shape
_log_weights = hnp.arrays(np.float32, st.sampled_from([(5,), (3, 4)]),
                          elements=st.floats(-1e3, 1e3, width=32, allow_subnormal=False))


@given(log_w=_log_weights, data=st.data())
def test_iwae_bound_is_the_log_mean_weight(log_w, data):
    """L_K = log (1/K) sum_k w_k (float64 reference, no overflow for |log w| ~ 1e3), between
    the mean and the max of log w (Jensen); L_K(log w + c) = L_K(log w) + c; L_1 = log w."""
    axis = data.draw(st.integers(0, log_w.ndim - 1), label="axis")
    bound = np.asarray(_bound(log_w, axis=axis), np.float64)
    assert bound.shape == log_w.shape[:axis] + log_w.shape[axis + 1:]
    size = 1e-6 * (1.0 + np.abs(np.float64(log_w)).max())
    np.testing.assert_allclose(bound, _logmeanexp(log_w, axis), rtol=0, atol=size)
    assert np.all(bound >= np.float64(log_w).mean(axis) - size)
    assert np.all(bound <= np.float64(log_w).max(axis) + size)
    shifted = np.asarray(_bound(log_w + np.float32(7.5), axis=axis))
    np.testing.assert_allclose(shifted, bound + 7.5, rtol=0, atol=2 * size)
    single = np.take(log_w, [0], axis=axis)
    np.testing.assert_allclose(_bound(single, axis=axis),
                               np.squeeze(single, axis), rtol=0, atol=size)


@given(log_w=hnp.arrays(np.float32, st.sampled_from([2, 4]),
                        elements=st.floats(-20, 20, width=32, allow_subnormal=False)),
       data=st.data())
def test_iwae_bound_grows_with_k_on_average_over_subsets(log_w, data):
    """For m < K, the mean of L_m over all m-subsets of the K weights is <= L_K (Burda et al.:
    E[L_m] <= E[L_K]), and L_K is unchanged by permuting the weights."""
    k = len(log_w)
    m = data.draw(st.integers(1, k - 1), label="m")
    subsets = np.array(list(itertools.combinations(range(k), m)))
    l_m = np.asarray(_bound(log_w[subsets], axis=1), np.float64)
    l_k = float(_bound(log_w))
    assert l_m.mean() <= l_k + 1e-5
    perm = data.draw(st.permutations(range(k)), label="permutation")
    np.testing.assert_allclose(_bound(log_w[list(perm)]), l_k, atol=1e-5)
