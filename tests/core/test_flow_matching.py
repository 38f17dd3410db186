"""Flow matching on Gaussian-to-Gaussian paths, where the marginal velocity is known:
the loss is minimised by it, its ODE carries N(0, I) to the data law, and the likelihood
through the backward ODE is the data density."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.core import flow_matching as fm

MU = jnp.array([2.0, -1.0])
S = jnp.array([0.5, 1.5])              # data N(MU, diag S^2), noise N(0, I), independent


def marginal_velocity(sigma_min=0.0, scale=1.0, shift=1.0):
    """u(x, t) = E[u_t | x_t = x] = E u_t + Cov(u_t, x_t) / Var(x_t) (x - E x_t), per
    dimension: with c = 1 - sigma_min, x_t = (1 - c t) x_0 + t x_1 and u_t = x_1 - c x_0,
    E x_t = t mu, Var x_t = (1 - c t)^2 + t^2 S^2, Cov = t S^2 - c (1 - c t). ``scale`` and
    ``shift`` multiply the gain and the mean (1 at the truth)."""
    c = 1.0 - sigma_min

    def velocity(x, t):
        t = t[:, None]
        var = (1 - c * t) ** 2 + t ** 2 * S ** 2
        cov = t * S ** 2 - c * (1 - c * t)
        return shift * MU + scale * cov / var * (x - t * shift * MU)
    return velocity


def test_conditional_path_ends_on_noise_and_data():
    x0, x1 = jnp.ones((2, 3)), 5 * jnp.ones((2, 3))
    start, u = fm.conditional_path(x0, x1, jnp.zeros(2), sigma_min=0.1)
    end, _ = fm.conditional_path(x0, x1, jnp.ones(2), sigma_min=0.1)
    np.testing.assert_allclose(start, x0)
    np.testing.assert_allclose(end, x1 + 0.1 * x0)           # sigma_min: a little noise left
    np.testing.assert_allclose(u, x1 - 0.9 * x0)
    mid, _ = fm.conditional_path(x0, x1, jnp.full(2, 0.5))
    np.testing.assert_allclose(mid, 3 * jnp.ones((2, 3)))     # the straight line


@pytest.mark.parametrize("sigma_min", [0.0, 0.1])
def test_loss_is_minimised_by_the_marginal_velocity(sigma_min):
    x1 = MU + S * jax.random.normal(jax.random.key(0), (200_000, 2))

    def loss(theta, key):
        v = marginal_velocity(sigma_min, *theta)
        return jnp.mean(fm.flow_matching_loss(v, x1, key, sigma_min=sigma_min))

    grad = jax.jit(jax.grad(loss))
    at_truth = np.asarray(grad(jnp.array([1.0, 1.0]), jax.random.key(1)))
    off = np.asarray(grad(jnp.array([1.2, 1.2]), jax.random.key(1)))
    assert np.all(np.abs(at_truth) < 0.03) and np.all(np.abs(off) > 10 * np.abs(at_truth))


def test_ode_carries_noise_to_the_data_and_back_to_its_density():
    v = marginal_velocity()
    x0 = jax.random.normal(jax.random.key(2), (4000, 2))
    for method, steps in (("heun", 50), ("euler", 200)):
        x1 = np.asarray(fm.sample(v, x0, num_steps=steps, method=method))
        np.testing.assert_array_less(np.abs(x1.mean(0) - MU), 4 * S / np.sqrt(4000) + 0.02)
        np.testing.assert_array_less(np.abs(x1.std(0) - S), 4 * S / np.sqrt(2 * 4000) + 0.02)
    # the flow is linear per dimension: x_1 = mu + S x_0 exactly (up to the integrator)
    pairs = fm.reflow_pairs(v, jax.random.key(3), (5, 2), num_steps=100)
    np.testing.assert_allclose(pairs[1], MU + S * pairs[0], atol=1e-3)
    x = jnp.array([[2.1, -1.0], [1.0, 2.0], [3.0, -3.5]])
    analytic = -0.5 * jnp.sum(((x - MU) / S) ** 2 + jnp.log(2 * jnp.pi * S ** 2), axis=1)
    np.testing.assert_allclose(fm.log_prob(v, x, num_steps=100), analytic, atol=1e-3)
    hutch = jax.vmap(lambda k: fm.log_prob(v, x, k, trace="hutchinson", num_steps=50))(
        jax.random.split(jax.random.key(4), 64))
    err = np.asarray(hutch.std(0)) / 8
    np.testing.assert_array_less(np.abs(np.asarray(hutch.mean(0) - analytic)), 4 * err + 1e-3)
    with pytest.raises(ValueError, match="euler' or 'heun"):
        fm.sample(v, x0, num_steps=2, method="rk45")


def _pair_cost(x0, x1):
    return float(((np.asarray(x0) - np.asarray(x1)) ** 2).sum())


def test_ot_coupling_is_the_optimal_permutation_of_the_noise():
    """x0 [5, 2, 3] (event dims flattened): the coupled noise is a permutation of the rows of
    x0 whose total squared distance to x1 is the minimum over all 120 permutations (so at
    most the identity pairing's)."""
    import itertools

    rng = np.random.default_rng(5)
    x0 = rng.normal(size=(5, 2, 3)).astype(np.float32)
    x1 = (2.0 + rng.normal(size=(5, 2, 3))).astype(np.float32)
    coupled = np.asarray(jax.jit(fm.ot_coupling)(x0, x1))
    rows = x0.reshape(5, -1)
    np.testing.assert_array_equal(np.sort(coupled.reshape(5, -1), axis=0), np.sort(rows, axis=0))
    match = [np.flatnonzero((rows == r).all(1)) for r in coupled.reshape(5, -1)]
    assert sorted(int(m[0]) for m in match) == list(range(5))      # each row used once
    best = min(_pair_cost(x0[list(p)], x1) for p in itertools.permutations(range(5)))
    np.testing.assert_allclose(_pair_cost(coupled, x1), best, rtol=1e-5)
    assert _pair_cost(coupled, x1) <= _pair_cost(x0, x1)


def test_ot_coupling_in_one_dimension_is_the_monotone_matching():
    """On the line the optimal coupling pairs the order statistics: the k-th smallest noise
    goes with the k-th smallest data point."""
    rng = np.random.default_rng(6)
    x0 = rng.normal(size=(16, 1)).astype(np.float32)
    x1 = (3.0 * rng.normal(size=(16, 1)) + 1.0).astype(np.float32)
    coupled = np.asarray(jax.jit(fm.ot_coupling)(x0, x1))[:, 0]
    np.testing.assert_array_equal(coupled[np.argsort(x1[:, 0])], np.sort(x0[:, 0]))


@pytest.mark.slow
def test_adaptive_log_prob_is_the_data_density():
    """The backward ODE likelihood with the adaptive tsit5 solver and the exact marginal
    velocity: log N(x; MU, diag S^2) to 1e-3 nats; nfe > 0 and grows as rtol tightens."""
    v = marginal_velocity()
    x = jnp.array([[2.1, -1.0], [1.0, 2.0], [3.0, -3.5]])
    analytic = -0.5 * jnp.sum(((x - MU) / S) ** 2 + jnp.log(2 * jnp.pi * S ** 2), axis=1)
    solve = jax.jit(lambda rtol, atol: fm.log_prob_with_stats(v, x, solver="tsit5",
                                                              rtol=rtol, atol=atol))
    logp, _ = solve(1e-5, 1e-5)
    np.testing.assert_allclose(logp, analytic, atol=1e-3)
    (_, loose), (_, tight) = solve(1e-3, 1e-9), solve(1e-5, 1e-9)
    assert np.all(np.asarray(loose["nfe"]) > 0)
    assert np.all(np.asarray(tight["nfe"]) > np.asarray(loose["nfe"]))
