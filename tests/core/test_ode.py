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


def test_a_traced_step_count_compiles_once_and_matches_the_static_one():
    """Heun, Euler and the RK4 likelihood with num_steps traced inside one jit: one trace for
    two step counts, each equal to the call with the Python int."""
    x = jnp.array([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]])
    traces = []

    def run(n):
        return (ode.heun(linear, x, 0.0, 0.8, n), ode.euler(linear, x, 0.0, 0.8, n),
                ode.log_prob_with_stats(linear, x, 0.8, 0.0, lambda z: -jnp.sum(z, 1),
                                        num_steps=n))

    @jax.jit
    def traced(n):
        traces.append(n)
        return run(n)

    for n in (3, 7):
        for got, want in zip(jax.tree.leaves(traced(n)), jax.tree.leaves(run(n))):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        assert np.all(np.asarray(traced(n)[2][1]["nfe"]) == 4 * n)
    assert len(traces) == 1


def test_adaptive_solver_counts_its_evaluations_and_integrates_the_trace():
    """dopri5 on the linear field (one example): the end point is expm(0.8 A) x and the
    divergence integral 0.8 tr A; the reported nfe is the number of evaluations of the
    augmented field, counted on the host as calls of v (one each: v is the primal of the
    linearization whose tangents give the divergence); a tolerance that 16 steps cannot
    meet gives NaN;
    an unknown solver fails."""
    calls = []

    def counted(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return linear(x, t)

    x = jnp.array([[1.0, -2.0, 0.5]])
    truth = x @ scipy.linalg.expm(np.asarray(A) * 0.8).T
    exact = float(-0.5 * jnp.sum(truth ** 2) + 0.8 * jnp.trace(A))
    solve = jax.jit(lambda tol: ode.log_prob_with_stats(
        counted, x, 0.0, 0.8, lambda z: -0.5 * jnp.sum(z ** 2, 1), solver="dopri5", rtol=tol,
        atol=tol, max_steps=16))
    logp, stats = jax.block_until_ready(solve(1e-6))
    np.testing.assert_allclose(logp, [exact], atol=1e-4)
    assert stats["nfe"].dtype == jnp.int32 and int(stats["nfe"][0]) == len(calls) > 14
    assert np.isnan(np.asarray(solve(1e-12)[0])).all()
    with pytest.raises(ValueError, match="solver must be one of"):
        ode.log_prob(linear, x, 0.0, 0.8, lambda z: z, solver="rk45")


def test_adaptive_solver_without_diffrax_names_the_extra(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "diffrax", None)       # import diffrax -> ImportError
    with pytest.raises(ImportError, match=r"genjax\[ode\]"):
        ode.log_prob(linear, jnp.ones((1, 3)), 0.0, 1.0, lambda z: z, solver="tsit5")
