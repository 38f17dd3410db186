"""Score SDEs with the exact score of Gaussian data: marginals against the moment ODEs, VP
against DDPM's discrete chain, every sampler against the target law, and the probability-flow
ODE likelihood against the analytic log density (exact trace and Hutchinson)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.core import diffusion as dm
from genjax.core import sde as sd

MU = jnp.array([1.0, -0.5])
S = jnp.array([0.5, 2.0])              # data N(MU, diag(S^2))
SDES = {"vp": sd.VPSDE(), "subvp": sd.SubVPSDE(),
        "ve": sd.VESDE(sigma_min=0.01, sigma_max=50.0)}


def perturbed(sde, t, mu=MU):
    """(mean, var) of x_t when x_0 ~ N(mu, diag S^2): a mu, a^2 S^2 + std^2."""
    a, std = sde.marginal_prob(jnp.ones((1, 2)), jnp.full((1,), t))
    return a[0] * mu, a[0] ** 2 * S ** 2 + std[0] ** 2


def exact_score(sde, mu=MU):
    def score(x, t):
        a, std = sde.marginal_prob(jnp.ones_like(x), t)
        return -(x - a * mu) / (a ** 2 * S ** 2 + std ** 2)
    return score


@pytest.mark.parametrize("name", sorted(SDES))
def test_marginals_solve_the_moment_odes(name):
    """For dx = f dt + g dw with f linear in x: d mean/dt = f(mean, t) and
    d var/dt = 2 (df/dx) var + g^2, by central differences of marginal_prob in t."""
    sde = SDES[name]
    for t in (0.1, 0.4, 0.9):
        h = 1e-3
        tt = jnp.array([t - h, t, t + h])
        a, std = sde.marginal_prob(jnp.ones((3, 1)), tt)
        drift, g = sde.sde(jnp.ones((1, 1)), jnp.array([t]))     # f(1, t) = df/dx
        dmean = (a[2, 0] - a[0, 0]) / (2 * h)
        dvar = (std[2, 0] ** 2 - std[0, 0] ** 2) / (2 * h)
        np.testing.assert_allclose(dmean, drift[0, 0] * a[1, 0], rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(dvar, 2 * drift[0, 0] * std[1, 0] ** 2 + g[0, 0] ** 2,
                                   rtol=2e-3, atol=1e-4)
    a0, std0 = sde.marginal_prob(jnp.ones((1, 1)), jnp.zeros(1))
    np.testing.assert_allclose(a0, 1.0)
    assert float(std0[0, 0]) <= 0.01 + 1e-6


def test_vp_is_the_limit_of_the_ddpm_chain():
    """alpha_bar_i of DDPM with beta_i = beta(i / N) / N tends to e^{-B(t)}, error O(1 / N)."""
    sde = sd.VPSDE()
    errors = []
    for n in (100, 1000, 10000):
        t = (jnp.arange(n) + 1) / n
        schedule = dm.make_schedule(np.asarray(sde.beta(t) / n, np.float64))
        a, _ = sde.marginal_prob(jnp.ones((n, 1)), t)
        errors.append(float(jnp.max(jnp.abs(schedule.alphas_cumprod - a[:, 0] ** 2))))
    assert errors[2] < 1e-3 and errors[0] > 5 * errors[1] > 25 * errors[2]


def _check_law(x, mean, var, bias=0.0, sigmas=4.0):
    x = np.asarray(x)
    n = len(x)
    tol_mean = sigmas * np.sqrt(var / n) + bias * np.sqrt(var)
    tol_var = sigmas * var * np.sqrt(2 / n) + bias * var
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), tol_mean)
    np.testing.assert_array_less(np.abs(x.var(0) - var), tol_var)


@pytest.mark.parametrize("name", sorted(SDES))
def test_samplers_land_on_the_data_law(name):
    """Euler-Maruyama, predictor-corrector and the Heun ODE sampler, from the prior, end on
    the law of x_eps = N(a mu, a^2 S^2 + std^2) within Monte Carlo error plus a small
    discretisation bias."""
    sde = SDES[name]
    score = exact_score(sde)
    eps = 1e-3
    mean, var = map(np.asarray, perturbed(sde, eps))
    x1 = sd.prior_sampling(sde, jax.random.key(0), (4000, 2))
    em = sd.euler_maruyama(sde, score, x1, jax.random.key(1), num_steps=500, eps=eps)
    pc = sd.predictor_corrector(sde, score, x1, jax.random.key(2), num_steps=200, eps=eps)
    ode = sd.ode_sample(sde, score, x1, num_steps=100, eps=eps)
    for x in (em, pc, ode):
        _check_law(x, mean, var, bias=0.03)


def test_ode_log_likelihood_equals_the_analytic_log_density():
    """Data N(0, diag S^2) (zero mean, so the VP prior at t = 1 is the marginal to 1e-5):
    log p_eps(x) through the ODE with the exact trace matches log N(x; 0, var_eps) to 1e-3
    nats; so does the mean of the Hutchinson estimate (exact here: the Jacobian is diagonal;
    tests/core/test_ode.py checks its unbiasedness on a full one)."""
    sde = sd.VPSDE()
    zero = jnp.zeros(2)
    score = exact_score(sde, zero)
    eps = 1e-3
    _, var = perturbed(sde, eps, zero)
    x = jnp.array([[0.3, -1.0], [-0.8, 2.5], [0.0, 0.1]])
    analytic = -0.5 * jnp.sum(x ** 2 / var + jnp.log(2 * jnp.pi * var), axis=1)
    exact = sd.ode_log_prob(sde, score, x, trace="exact", num_steps=100, eps=eps)
    np.testing.assert_allclose(exact, analytic, atol=1e-3)
    keys = jax.random.split(jax.random.key(3), 64)
    hutch = jax.vmap(lambda k: sd.ode_log_prob(sde, score, x, k, trace="hutchinson",
                                               num_steps=50, eps=eps))(keys)
    err = np.asarray(hutch.std(0)) / np.sqrt(len(keys))
    np.testing.assert_array_less(np.abs(np.asarray(hutch.mean(0) - exact)), 4 * err + 1e-3)
    with pytest.raises(ValueError, match="needs rng"):
        sd.ode_log_prob(sde, score, x, trace="hutchinson")
    with pytest.raises(ValueError, match="exact' or 'hutchinson"):
        sd.ode_log_prob(sde, score, x, trace="skilling")


def test_denoising_score_matching_is_minimised_by_the_analytic_score():
    """Fit s(x, t) = -(x - c(t)) * w(t) with w = 1 / var_t and c = a mu scaled by parameters
    (p, q): the DSM gradient with respect to them vanishes at p = q = 1 (the exact score),
    within Monte Carlo error, and not at p = q = 1.3."""
    sde = sd.VPSDE()
    x0 = MU + S * jax.random.normal(jax.random.key(4), (200_000, 2))

    def loss(theta, key):
        p, q = theta

        def score(x, t):
            a, std = sde.marginal_prob(jnp.ones_like(x), t)
            return -(x - q * a * MU) * p / (a ** 2 * S ** 2 + std ** 2)

        return jnp.mean(sd.denoising_score_matching_loss(sde, score, x0, key))

    grad = jax.jit(jax.grad(loss))
    at_truth = np.asarray(grad(jnp.array([1.0, 1.0]), jax.random.key(5)))
    off = np.asarray(grad(jnp.array([1.3, 1.3]), jax.random.key(5)))
    assert np.all(np.abs(at_truth) < 0.02) and np.all(np.abs(off) > 10 * np.abs(at_truth))


def test_adaptive_ode_log_likelihood_and_its_evaluations():
    """The probability-flow ODE likelihood of the previous test with the adaptive tsit5
    solver: the analytic log density to 1e-3 nats, with a positive number of evaluations
    that grows when rtol is tightened (tolerances traced: one compilation)."""
    sde = sd.VPSDE()
    zero = jnp.zeros(2)
    eps = 1e-3
    _, var = perturbed(sde, eps, zero)
    x = jnp.array([[0.3, -1.0], [-0.8, 2.5], [0.0, 0.1]])
    analytic = -0.5 * jnp.sum(x ** 2 / var + jnp.log(2 * jnp.pi * var), axis=1)
    solve = jax.jit(lambda rtol, atol: sd.ode_log_prob_with_stats(
        sde, exact_score(sde, zero), x, solver="tsit5", rtol=rtol, atol=atol, eps=eps))
    logp, _ = solve(1e-5, 1e-5)
    np.testing.assert_allclose(logp, analytic, atol=1e-3)
    (_, loose), (_, tight) = solve(1e-3, 1e-9), solve(1e-5, 1e-9)
    assert np.all(np.asarray(loose["nfe"]) > 0)
    assert np.all(np.asarray(tight["nfe"]) > np.asarray(loose["nfe"]))


def test_a_traced_step_count_compiles_once_and_matches_the_static_one():
    """Predictor-corrector and the Heun ODE sampler with num_steps traced inside one jit: one
    trace for two step counts, each equal to the call with the Python int (same keys)."""
    sde = sd.VPSDE()
    score = exact_score(sde)
    x1 = sd.prior_sampling(sde, jax.random.key(0), (8, 2))
    traces = []

    def run(n):
        return (sd.predictor_corrector(sde, score, x1, jax.random.key(1), num_steps=n),
                sd.ode_sample(sde, score, x1, num_steps=n))

    @jax.jit
    def traced(n):
        traces.append(n)
        return run(n)

    for n in (3, 7):
        for got, want in zip(traced(n), run(n)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert len(traces) == 1
