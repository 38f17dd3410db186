"""The ODE integrators and the divergence integral on linear fields, where both are known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from genjax.core import ode

A = jnp.array([[-0.5, 1.0, 0.2], [-0.3, 0.1, 0.7], [0.4, -0.6, -0.2]])


def linear(x, t):
    return x @ A.T


def test_integrators_follow_the_matrix_exponential():
    x = jnp.array([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]])
    truth = x @ scipy.linalg.expm(np.asarray(A) * 0.8).T
    np.testing.assert_allclose(ode.heun(linear, x, 0.0, 0.8, 100), truth, atol=1e-4)
    np.testing.assert_allclose(ode.euler(linear, x, 0.0, 0.8, 4000), truth, atol=2e-3)
    end, integral = ode.integrate_with_divergence(linear, x, 0.0, 0.8, num_steps=50)
    np.testing.assert_allclose(end, truth, atol=1e-5)
    np.testing.assert_allclose(integral, 0.8 * jnp.trace(A), rtol=1e-5)   # div(Ax) = tr A
    back, minus = ode.integrate_with_divergence(linear, end, 0.8, 0.0, num_steps=50)
    np.testing.assert_allclose(back, x, atol=1e-4)
    np.testing.assert_allclose(minus, -integral, rtol=1e-5)


def test_hutchinson_is_an_unbiased_estimate_of_the_trace():
    """e^T A e with Rademacher e: mean tr A, variance sum_{i != j} (A_ij^2 + A_ij A_ji)."""
    x = jnp.ones((4, 3))
    keys = jax.random.split(jax.random.key(0), 512)
    est = jax.vmap(lambda k: ode.integrate_with_divergence(
        linear, x, 0.0, 1.0, trace="hutchinson", rng=k, num_steps=4)[1])(keys)
    est = np.asarray(est).ravel()
    a = np.asarray(A)
    off = ~np.eye(3, dtype=bool)
    var = np.sum((a ** 2 + a * a.T)[off])
    assert abs(est.mean() - np.trace(a)) < 4 * np.sqrt(var / est.size)
    np.testing.assert_allclose(est.var(), var, rtol=0.2)
    with pytest.raises(ValueError, match="needs rng"):
        ode.integrate_with_divergence(linear, x, 0.0, 1.0, trace="hutchinson")
