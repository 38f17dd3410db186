"""IWAE bound: exact on a linear Gaussian model with the true posterior; ordered in K."""

import jax
import jax.numpy as jnp
import numpy as np
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
