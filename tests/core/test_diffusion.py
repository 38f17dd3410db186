"""Diffusion math: schedules against their closed forms, the forward posterior against
Bayes' rule, conversion round trips, and DDPM / DDIM samplers that, given the exact
noise predictor of Gaussian data, land on that Gaussian."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from genjax.core import conditioning as cnd
from genjax.core import diffusion as dm
from genjax.core.random import data_parallel_axis

T = 1000
LINEAR = dm.linear_beta_schedule(T)
COSINE = dm.cosine_beta_schedule(T)
SCHEDULES = [dm.linear_beta_schedule, dm.cosine_beta_schedule, dm.sigmoid_beta_schedule]

# Gaussian data x_0 ~ N(MU, S2) per dimension, for the exact-predictor tests.
MU = np.array([0.5, -0.3, 0.0])
S2 = np.array([0.1, 1.0, 0.4])
N = 20_000  # samples per Monte Carlo check


def _normal(seed, shape):
    """Test inputs from NumPy (eager jax.random compiles per shape, which is slow)."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _uniform(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, size=shape), jnp.float32)


def _ab64(betas):
    """alpha_bar_t in float64 from the betas."""
    return np.cumprod(1.0 - np.asarray(betas, np.float64))


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", SCHEDULES)
@pytest.mark.parametrize("num_steps", [50, 1000])
def test_schedules_monotone_in_unit_interval_and_consistent(make, num_steps):
    s = make(num_steps)
    assert s.num_steps == num_steps
    betas, ab = np.asarray(s.betas, np.float64), np.asarray(s.alphas_cumprod, np.float64)
    assert np.all((betas > 0) & (betas < 1))
    assert np.all((ab > 0) & (ab < 1))
    assert np.all(np.diff(betas) >= 0)  # noise added per step only grows
    assert np.all(np.diff(ab) < 0)
    for name in ("alphas_cumprod", "posterior_variance", "snr", "posterior_mean_coef1"):
        arr = getattr(s, name)
        assert arr.dtype == jnp.float32 and arr.shape == (num_steps,)
    ab_ref = _ab64(s.betas)
    np.testing.assert_allclose(s.alphas, 1.0 - betas, rtol=1e-6, atol=1e-7)
    # (2e-5: ab_ref comes from the float32 betas, 1 - 0.999 keeps only 4 digits)
    np.testing.assert_allclose(s.alphas_cumprod, ab_ref, rtol=2e-5)
    np.testing.assert_allclose(s.alphas_cumprod_prev, np.append(1.0, ab_ref[:-1]), rtol=2e-5)
    np.testing.assert_allclose(s.snr, ab_ref / (1.0 - ab_ref), rtol=2e-5)
    np.testing.assert_allclose(s.sqrt_recipm1_alphas_cumprod ** 2 * s.alphas_cumprod,
                               s.sqrt_one_minus_alphas_cumprod ** 2, rtol=1e-5)
    np.testing.assert_allclose(np.exp(s.log_one_minus_alphas_cumprod), 1.0 - ab_ref, rtol=1e-5)


def test_linear_schedule_endpoints_scale_with_length():
    np.testing.assert_allclose(LINEAR.betas[np.array([0, -1])], [1e-4, 0.02], rtol=1e-6)
    np.testing.assert_allclose(np.diff(np.asarray(LINEAR.betas, np.float64)),
                               (0.02 - 1e-4) / (T - 1), rtol=1e-3)
    short = dm.linear_beta_schedule(250)  # scaled by 1000 / 250
    np.testing.assert_allclose(short.betas[np.array([0, -1])], [4e-4, 0.08], rtol=1e-6)
    # The scaling keeps the total noise: alpha_bar_T stays near 0 for short schedules.
    assert short.alphas_cumprod[-1] < 1e-4 and LINEAR.alphas_cumprod[-1] < 1e-4


def test_cosine_alpha_bar_matches_closed_form_where_clipping_does_not_bind():
    s, eps = COSINE, 0.008
    f = lambda u: np.cos((u + eps) / (1 + eps) * np.pi / 2) ** 2
    paper_t = np.arange(1, T + 1)  # index t is the paper's t + 1
    expected = f(paper_t / T) / f(0.0)
    free = np.asarray(s.betas) < 0.999
    first_clip = np.argmin(free) if not free.all() else T
    assert first_clip == T - 1  # only the last step (alpha_bar = 0 there) is clipped
    np.testing.assert_allclose(s.alphas_cumprod[:first_clip], expected[:first_clip],
                               rtol=1e-5, atol=1e-9)
    assert s.betas[-1] == pytest.approx(0.999)


def test_make_schedule_rejects_invalid_betas():
    for bad in ([0.1, 1.0], [0.0, 0.1], [0.1], [[0.1, 0.2]]):
        with pytest.raises(ValueError):
            dm.make_schedule(bad)


def test_schedule_is_a_pytree_passed_into_jit_without_retracing():
    assert len(jax.tree.leaves(LINEAR)) == 14
    traces = []

    @jax.jit
    def f(schedule, x0, t, noise):
        traces.append(None)
        return dm.q_sample(schedule, x0, t, noise)

    x0, noise, t = jnp.ones((2, 3)), jnp.full((2, 3), 0.5), jnp.array([3, 700])
    for s in (LINEAR, COSINE):
        np.testing.assert_allclose(f(s, x0, t, noise), dm.q_sample(s, x0, t, noise),
                                   rtol=1e-6)
    assert len(traces) == 1  # a schedule of the same T is new data, not a new program


def test_extract_shapes_and_out_of_range():
    a = jnp.arange(5.0)
    out = dm.extract(a, jnp.array([4, 0]), (2, 8, 8, 3))
    assert out.shape == (2, 1, 1, 1)
    np.testing.assert_array_equal(out.ravel(), [4.0, 0.0])
    assert dm.extract(a, 2, (2, 3)).shape == ()
    assert np.isnan(dm.extract(a, jnp.array([-1, 5]), (2, 3))).all()
    with pytest.raises(ValueError):
        dm.extract(a, jnp.array([1, 2, 3]), (2, 3))


# --------------------------------------------------------------------------------------
# Forward process
# --------------------------------------------------------------------------------------


def test_q_sample_monte_carlo_moments():
    ts = jnp.array([0, 300, 999])
    x0 = jnp.broadcast_to(jnp.array([1.0, -0.5]), (3, N, 2))
    noise = _normal(0, x0.shape)
    x_t = np.asarray(dm.q_sample(LINEAR, x0, ts, noise), np.float64)
    ab = _ab64(LINEAR.betas)[np.asarray(ts)][:, None]
    mean, var = x_t.mean(1), x_t.var(1)
    se_mean, se_var = np.sqrt((1 - ab) / N), (1 - ab) * np.sqrt(2 / N)
    assert np.all(np.abs(mean - np.sqrt(ab) * [1.0, -0.5]) < 5 * se_mean)
    assert np.all(np.abs(var - (1 - ab)) < 5 * se_var)


def test_q_posterior_is_the_bayes_product_of_the_two_gaussians():
    ts = np.array([0, 1, 10, 500, 999])
    rng = np.random.default_rng(0)
    x0, x_t = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    betas = np.asarray(LINEAR.betas, np.float64)
    ab = _ab64(betas)
    mean, var, log_var = (np.asarray(a, np.float64) for a in
                          dm.q_posterior(LINEAR, jnp.asarray(x0, jnp.float32),
                                         jnp.asarray(x_t, jnp.float32), jnp.asarray(ts)))
    assert mean.shape == var.shape == log_var.shape == (5, 4)
    for i, t in enumerate(ts):
        if t == 0:  # q(x_{-1} | x_0) is the point mass at x_0: so is the posterior
            np.testing.assert_allclose(mean[i], x0[i], rtol=1e-5, atol=1e-6)
            assert np.all(var[i] == 0)
            continue
        # x_t | x_{t-1} ~ N(sqrt(alpha_t) x_{t-1}, beta_t),
        # x_{t-1} | x_0 ~ N(sqrt(ab') x_0, 1 - ab'), ab' = alpha_bar_{t-1}
        a_t, b_t, ab_prev = 1 - betas[t], betas[t], ab[t - 1]
        precision = a_t / b_t + 1 / (1 - ab_prev)
        post_var = 1 / precision
        post_mean = post_var * (np.sqrt(a_t) * x_t[i] / b_t
                                + np.sqrt(ab_prev) * x0[i] / (1 - ab_prev))
        np.testing.assert_allclose(mean[i], post_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var[i], post_var, rtol=1e-5)
        np.testing.assert_allclose(log_var[i], np.log(post_var), rtol=1e-5)
    np.testing.assert_allclose(log_var[0], np.log(var[1]), rtol=1e-5)  # clipped at t = 0


@given(
    t=st.integers(0, T - 1),
    x0=hnp.arrays(np.float32, (2, 3), elements=st.floats(-3, 3, width=32)),
    eps=hnp.arrays(np.float32, (2, 3), elements=st.floats(-3, 3, width=32)),
    cosine=st.booleans(),
)
def test_eps_x0_v_conversions_round_trip(t, x0, eps, cosine):
    s = COSINE if cosine else LINEAR
    tb = jnp.full((2,), t)
    x_t = dm.q_sample(s, x0, tb, eps)
    v = dm.predict_v(s, x0, tb, eps)
    ab = float(s.alphas_cumprod[t])
    # float32 rounding of x_t (|x_t| <= 6) amplified by 1 / sqrt(ab) (for x0) or by
    # 1 / sqrt(1 - ab) (for eps); the v conversions are rotations, well conditioned.
    atol_x0 = 2e-6 * 6 * (1 + 1 / math.sqrt(ab))
    atol_eps = 2e-6 * 6 * (1 + 1 / math.sqrt(1 - ab))
    np.testing.assert_allclose(dm.predict_x0_from_eps(s, x_t, tb, eps), x0, atol=atol_x0)
    np.testing.assert_allclose(dm.predict_eps_from_x0(s, x_t, tb, x0), eps, atol=atol_eps)
    np.testing.assert_allclose(dm.predict_x0_from_v(s, x_t, tb, v), x0, atol=1e-5)
    np.testing.assert_allclose(dm.predict_eps_from_v(s, x_t, tb, v), eps, atol=1e-5)
    for target, out, atol in (("eps", eps, (atol_x0, 0)), ("x0", x0, (0, atol_eps)),
                              ("v", v, (1e-5, 1e-5))):
        x0_hat, eps_hat = dm.model_output_to_x0_eps(s, x_t, tb, out, target)
        np.testing.assert_allclose(x0_hat, x0, atol=atol[0])
        np.testing.assert_allclose(eps_hat, eps, atol=atol[1])


def test_model_output_rejects_unknown_target():
    with pytest.raises(ValueError):
        dm.model_output_to_x0_eps(LINEAR, jnp.ones((1, 2)), jnp.zeros(1, int), jnp.ones((1, 2)),
                                  "score")


# --------------------------------------------------------------------------------------
# Reverse steps
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variance", ["small", "large"])
def test_ddpm_step_noise_scale_per_example(variance):
    # With x_t = x0_hat = 0 the step returns sigma_t z exactly, z the key's draw.
    ts = jnp.arange(T)
    key = jax.random.key(1)
    zeros = jnp.zeros((T, 2))
    out = dm.ddpm_step(LINEAR, zeros, ts, zeros, key, variance=variance)
    z = jax.random.normal(key, (T, 2))
    sigma2 = np.asarray((out / z) ** 2)
    expected = LINEAR.posterior_variance if variance == "small" else LINEAR.betas
    assert np.all(out[0] == 0)  # no noise on the final step
    np.testing.assert_allclose(sigma2[1:], np.broadcast_to(expected[1:, None], (T - 1, 2)),
                               rtol=1e-4)


def test_ddpm_step_mean_clipping_and_per_example_timesteps():
    key = jax.random.key(2)
    x_t = _normal(3, (6, 2))
    x0_hat = 2.0 * _normal(4, (6, 2))
    t = jnp.array([0, 5, 0, 700, 1, 999])
    out = dm.ddpm_step(LINEAR, x_t, t, x0_hat, key, clip_x0=(-1.0, 1.0))
    # t = 0: the posterior mean at t = 0 is x0_hat itself (clipped), no noise.
    rows = np.array([0, 2])  # the t = 0 rows
    np.testing.assert_allclose(out[rows], jnp.clip(x0_hat[rows], -1, 1), atol=1e-6)
    # Each row is what a batch with that row's t everywhere gives (same key, same noise).
    for i in (1, 3, 5):
        same = dm.ddpm_step(LINEAR, x_t, jnp.full((6,), t[i]), x0_hat, key, clip_x0=(-1, 1))
        np.testing.assert_allclose(out[i], same[i], rtol=1e-6)
    assert not np.allclose(out[1], dm.ddpm_step(LINEAR, x_t, t, x0_hat, jax.random.key(9))[1])


def test_ddpm_step_data_parallel_matches_single_device():
    key = jax.random.key(5)
    x_t = _normal(6, (6, 2))
    x0_hat = jnp.zeros((6, 2))
    t = jnp.array([3, 9, 100, 1, 0, 999])
    full = dm.ddpm_step(LINEAR, x_t, t, x0_hat, key)

    def shard(x, tt, x0):
        with data_parallel_axis("data", 3):
            return dm.ddpm_step(LINEAR, x, tt, x0, key)

    sharded = jax.jit(jax.vmap(shard, axis_name="data"))
    rows = sharded(x_t.reshape(3, 2, 2), t.reshape(3, 2), x0_hat.reshape(3, 2, 2))
    np.testing.assert_allclose(rows.reshape(6, 2), full, rtol=1e-6)


def test_ddim_eta_one_has_the_ddpm_posterior_variance():
    # sigma_t^2(eta = 1, t_prev = t - 1) = beta_tilde_t, for every t (0 at t = 0): read
    # sigma_t off the step with x0_hat = eps_hat = 0, which returns sigma_t z.
    ts = jnp.arange(T)
    key = jax.random.key(7)
    zeros = jnp.zeros((T, 2))
    out = dm.ddim_step(LINEAR, zeros, ts, ts - 1, zeros, zeros, key, eta=1.0)
    sigma2 = np.asarray((out / jax.random.normal(key, (T, 2))) ** 2)
    np.testing.assert_allclose(sigma2, np.broadcast_to(LINEAR.posterior_variance[:, None],
                                                       (T, 2)), rtol=1e-4)


def test_ddim_eta_one_single_step_is_the_ddpm_step():
    key = jax.random.key(8)
    t = jnp.array([1, 2, 10, 500, 998, 999])
    x_t = _normal(10, (6, 2))
    x0_hat = 0.5 * _normal(11, (6, 2))
    eps_hat = dm.predict_eps_from_x0(COSINE, x_t, t, x0_hat)
    ddim = dm.ddim_step(COSINE, x_t, t, t - 1, x0_hat, eps_hat, key, eta=1.0)
    ddpm = dm.ddpm_step(COSINE, x_t, t, x0_hat, key, variance="small")
    np.testing.assert_allclose(ddim, ddpm, rtol=1e-4, atol=1e-4)


def test_ddim_eta_zero_is_deterministic_and_final_step_returns_x0_hat():
    x_t = _normal(12, (6, 2))
    x0_hat, eps_hat = jnp.full((6, 2), 0.25), _normal(13, (6, 2))
    t, t_prev = jnp.full((6,), 500), jnp.full((6,), 480)
    a = dm.ddim_step(LINEAR, x_t, t, t_prev, x0_hat, eps_hat, jax.random.key(0))
    b = dm.ddim_step(LINEAR, x_t, t, t_prev, x0_hat, eps_hat, jax.random.key(1))
    c = dm.ddim_step(LINEAR, x_t, t, t_prev, x0_hat, eps_hat, None)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.allclose(a, dm.ddim_step(LINEAR, x_t, t, t_prev, x0_hat, eps_hat,
                                           jax.random.key(1), eta=0.5))
    for eta in (0.0, 1.0):
        last = dm.ddim_step(LINEAR, x_t, t, jnp.full((6,), -1), x0_hat, eps_hat,
                            jax.random.key(2), eta=eta)
        np.testing.assert_allclose(last, x0_hat, rtol=1e-6)
    with pytest.raises(ValueError):
        dm.ddim_step(LINEAR, x_t, t, t_prev, x0_hat, eps_hat, None, eta=1.0)


def test_ddim_timesteps():
    ts, ts_prev = dm.ddim_timesteps(1000, 50)
    np.testing.assert_array_equal(ts, np.arange(999, 0, -20))
    np.testing.assert_array_equal(ts_prev, np.append(np.arange(979, 0, -20), -1))
    ts, ts_prev = dm.ddim_timesteps(10, 10)
    np.testing.assert_array_equal(ts, np.arange(9, -1, -1))
    np.testing.assert_array_equal(ts_prev, np.arange(8, -2, -1))
    ts, _ = dm.ddim_timesteps(1000, 3)
    np.testing.assert_array_equal(ts, [999, 666, 333])
    with pytest.raises(ValueError):
        dm.ddim_timesteps(10, 11)


def test_guidance_conventions():
    e_c, e_u = jnp.array([0.3, -1.7, 2.0]), jnp.array([1.1, 0.4, -0.9])
    np.testing.assert_array_equal(cnd.guided(e_c, e_u, 0.0), e_c)
    np.testing.assert_array_equal(cnd.guided(e_c, e_u, -1.0), e_u)
    np.testing.assert_allclose(cnd.guided(e_c, e_u, 2.0), e_c + 2.0 * (e_c - e_u),
                               rtol=1e-6)


# --------------------------------------------------------------------------------------
# Samplers on Gaussian data with the exact noise predictor
# --------------------------------------------------------------------------------------
#
# For x_0 ~ N(mu, s^2) and x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps, (eps, x_t) are jointly
# Gaussian with Cov(eps, x_t) = sqrt(1 - ab) and Var(x_t) = ab s^2 + 1 - ab, so the
# optimal (MSE) predictor is
#
#     eps*(x_t, t) = E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mu) / (ab s^2 + 1 - ab).
#
# With it every sampler step is linear-Gaussian, x' = g x + c + sigma z, so the chain's
# output is exactly Gaussian and its moments follow from a scalar recursion in float64
# (_chain_moments). The samples must match those moments to Monte Carlo error; the
# moments differ from (mu, s^2) only by the sampler's discretization error, which the
# recursion computes and which the tests bound.


def _eps_star(schedule, x, t):
    ab = dm.extract(schedule.alphas_cumprod, t, x.shape)
    return (x - jnp.sqrt(ab) * MU) * jnp.sqrt(1 - ab) / (ab * S2 + 1 - ab)


def _chain_moments(steps, ab_top):
    """Exact output mean and variance of a reverse chain started at x ~ N(0, I).

    ``steps``: (ab, ab_prev, sigma2_mean, sigma2_noise) per step, written as the DDIM
    update x' = sqrt(ab') x0* + sqrt(1 - ab' - sigma2_mean) eps* + sqrt(sigma2_noise) z
    (DDPM: sigma2_mean = beta_tilde, its posterior mean; sigma2_noise its variance).
    In y = x - sqrt(ab) mu the exact predictors are x0* - mu = sqrt(ab) s^2 y / nu and
    eps* = sqrt(1 - ab) y / nu, nu = ab s^2 + 1 - ab, so y' = g y + sqrt(sigma2_noise) z.
    """
    m, v = -np.sqrt(ab_top) * MU, np.ones_like(S2)
    for ab, ab_prev, s2_mean, s2_noise in steps:
        nu = ab * S2 + 1 - ab
        g = (np.sqrt(ab_prev * ab) * S2 + np.sqrt(max(1 - ab_prev - s2_mean, 0.0))
             * np.sqrt(1 - ab)) / nu
        m, v = g * m, g * g * v + s2_noise
    return MU + m, v  # the last step ends at ab_prev = 1, where y = x - mu


def _assert_matches_chain(x, mean, var):
    x = np.asarray(x, np.float64)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 5 * np.sqrt(var / N))
    np.testing.assert_array_less(np.abs(x.var(0) - var), 5 * var * np.sqrt(2 / N))


@pytest.mark.slow
def test_ddpm_chain_lands_on_gaussian_data():
    s = LINEAR
    ab = _ab64(s.betas)
    ab_prev = np.append(1.0, ab[:-1])
    betas = np.asarray(s.betas, np.float64)
    beta_tilde = betas * (1 - ab_prev) / (1 - ab)

    @jax.jit
    def chains(key):
        def run(variance):
            def body(x, t):
                tb = jnp.full((N,), t)
                x0 = dm.predict_x0_from_eps(s, x, tb, _eps_star(s, x, tb))
                return dm.ddpm_step(s, x, tb, x0, jax.random.fold_in(key, t),
                                    variance=variance), None
            x_T = jax.random.normal(key, (N, 3))
            return jax.lax.scan(body, x_T, jnp.arange(T - 1, -1, -1))[0]
        return run("small"), run("large")

    small, large = chains(jax.random.key(0))
    for x, noise in ((small, beta_tilde), (large, betas)):
        steps = [(ab[t], ab_prev[t], beta_tilde[t], noise[t] if t > 0 else 0.0)
                 for t in range(T - 1, -1, -1)]
        mean, var = _chain_moments(steps, ab[-1])
        _assert_matches_chain(x, mean, var)
        # Discretization slack: beta_tilde leaves out coef1^2 Var(x_0 | x_t) per step and
        # beta overshoots; over T = 1000 steps both stay within 4% of s^2 (largest for
        # the smallest s^2). The mean is off only through the start, x_T ~ N(0, I) rather
        # than N(sqrt(ab_T) mu, ...), an offset of sqrt(ab_T) |mu| < 4e-3 that the chain
        # then shrinks (to ~1e-5).
        np.testing.assert_allclose(mean, MU, atol=1e-4)
        np.testing.assert_allclose(var, S2, rtol=0.04)


def test_ddim_chain_lands_on_gaussian_data():
    s, K = COSINE, 50
    ts, ts_prev = dm.ddim_timesteps(T, K)
    ab = _ab64(s.betas)

    @jax.jit
    def chain(key, eta):
        def body(x, tt):
            t, t_prev = tt
            tb, tpb = jnp.full((N,), t), jnp.full((N,), t_prev)
            eps = _eps_star(s, x, tb)
            x0 = dm.predict_x0_from_eps(s, x, tb, eps)
            return dm.ddim_step(s, x, tb, tpb, x0, eps, jax.random.fold_in(key, t),
                                eta=eta), None
        return jax.lax.scan(body, jax.random.normal(key, (N, 3)), (ts, ts_prev))[0]

    for eta, slack in ((0.0, 0.12), (1.0, 0.25)):
        steps = []
        for t, tp in zip(np.asarray(ts), np.asarray(ts_prev)):
            a, ap = ab[t], (ab[tp] if tp >= 0 else 1.0)
            sigma2 = eta**2 * (1 - ap) / (1 - a) * (1 - a / ap)
            steps.append((a, ap, sigma2, sigma2))
        mean, var = _chain_moments(steps, ab[ts[0]])
        _assert_matches_chain(chain(jax.random.key(1), eta), mean, var)
        # Discretization slack with 50 steps. eta = 0: each step rotates y by the angle
        # between u = (sqrt(ab) s, sqrt(1 - ab)) and u', scaling it by the cosine, so
        # var = s^2 / nu_top * prod cos^2(dphi) (~ exp(-sum dphi^2), 5-9% low here);
        # eta = 1 misses coef1^2 Var(x_0 | x_t) per (large) step (9-17% low).
        np.testing.assert_allclose(mean, MU, atol=1e-4)  # exact up to the start's offset
        np.testing.assert_allclose(var, S2, rtol=slack)
        assert np.all(var < S2)


def test_ddim_inversion_round_trips():
    s, K = LINEAR, T
    ts, ts_prev = dm.ddim_timesteps(T, K)
    x0 = jnp.asarray(MU + np.sqrt(S2) * np.random.default_rng(0).normal(size=(64, 3)),
                     jnp.float32)
    n = x0.shape[0]

    @jax.jit
    def round_trip(x0):
        def up(x, tt):  # t_prev -> t with eps at (x, t_prev); at t_prev = -1 use t = 0
            t, t_prev = tt
            tpb, tb = jnp.full((n,), t_prev), jnp.full((n,), t)
            eps = _eps_star(s, x, jnp.maximum(tpb, 0))
            return dm.ddim_reverse_step(s, x, tpb, tb, eps), None

        def down(x, tt):
            t, t_prev = tt
            tb, tpb = jnp.full((n,), t), jnp.full((n,), t_prev)
            eps = _eps_star(s, x, tb)
            x0_hat = dm.predict_x0_from_eps(s, x, tb, eps)
            return dm.ddim_step(s, x, tb, tpb, x0_hat, eps, None), None

        x_T = jax.lax.scan(up, x0, (ts[::-1], ts_prev[::-1]))[0]
        return x_T, jax.lax.scan(down, x_T, (ts, ts_prev))[0]

    x_T, back = (np.asarray(a, np.float64) for a in round_trip(x0))
    x0 = np.asarray(x0, np.float64)
    # The encoding x_T is close to the standardized data (the probability-flow ODE maps
    # N(mu, s^2) to N(0, 1) linearly).
    np.testing.assert_allclose(x_T, (x0 - MU) / np.sqrt(S2), rtol=0.05, atol=0.02)
    # Each up-and-down pair evaluates eps at the two ends of its step, so the round trip
    # is the linear map x - mu -> f (x - mu) with 1 - f first order in the step size
    # (~0.04 with 200 steps, < 0.01 with all 1000).
    f = (back - MU) / (x0 - MU)
    np.testing.assert_allclose(f, np.broadcast_to(np.median(f, axis=0), f.shape), atol=1e-3)
    np.testing.assert_array_less(np.abs(back - x0), 0.01 * np.abs(x0 - MU) + 1e-4)


# --------------------------------------------------------------------------------------
# Loss terms
# --------------------------------------------------------------------------------------


def test_normal_kl_closed_form():
    rng = np.random.default_rng(1)
    m1, lv1, m2, lv2 = (rng.normal(size=(5, 4)) for _ in range(4))
    expected = 0.5 * (lv2 - lv1 + np.exp(lv1 - lv2) + (m1 - m2) ** 2 * np.exp(-lv2) - 1)
    got = dm.normal_kl(*(jnp.asarray(a, jnp.float32) for a in (m1, lv1, m2, lv2)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(dm.normal_kl(m1, lv1, m1, lv1), 0.0)


def test_vlb_term_zero_at_true_posterior_and_closed_form_otherwise():
    t = jnp.array([1, 50, 999])
    x0 = _uniform(0, (3, 4, 4, 1))
    x_t = dm.q_sample(LINEAR, x0, t, _normal(1, x0.shape))
    mean, _, log_var = dm.q_posterior(LINEAR, x0, x_t, t)
    kl = dm.vlb_term(LINEAR, x0, x_t, t, mean, log_var)
    assert kl.shape == (3,)
    np.testing.assert_array_equal(kl, 0.0)
    # Shifting the model mean by d costs sum d^2 / (2 beta_tilde) nats.
    kl = dm.vlb_term(LINEAR, x0, x_t, t, mean + 0.01, log_var)
    expected = 16 * 0.01**2 / (2 * np.asarray(LINEAR.posterior_variance)[np.asarray(t)])
    np.testing.assert_allclose(kl, expected, rtol=1e-3)


@pytest.mark.parametrize("make", SCHEDULES)
def test_prior_kl_small_and_closed_form(make):
    s = make(T)
    x0 = _uniform(2, (4, 8, 8, 3))
    kl = dm.prior_kl(s, x0)
    assert kl.shape == (4,)
    assert np.all(kl >= 0) and np.all(kl / (8 * 8 * 3) < 1e-4)  # nats per dimension
    coarse = dm.make_schedule(np.full(4, 0.5))  # alpha_bar_T = 1/16
    ab, x = 1 / 16, np.asarray(x0, np.float64)
    expected = 0.5 * (ab * x**2 + (1 - ab) - 1 - np.log(1 - ab)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(dm.prior_kl(coarse, x0), expected, rtol=1e-5)


def test_snr_weights():
    t = jnp.array([0, 100, 300, 600, 999])
    np.testing.assert_array_equal(dm.snr_weight(COSINE, t), 1.0)
    snr = np.asarray(COSINE.snr)[np.asarray(t)]
    w_eps = dm.snr_weight(COSINE, t, "min_snr", 5.0, "eps")
    np.testing.assert_allclose(w_eps, np.minimum(snr, 5.0) / snr, rtol=1e-6)
    assert np.all(np.asarray(w_eps) <= 1.0) and w_eps[-1] == 1.0 and w_eps[0] < 1e-3
    # Min-SNR weights the x_0 error by min(SNR, gamma) whatever the network predicts:
    # the weighted MSEs of the three targets agree for the same x0_hat.
    # (t <= 900: at t = 999, SNR ~ 2e-9 and float32 eps_hat is too coarse to compare.)
    t = jnp.array([0, 100, 300, 600, 900])
    x0 = _uniform(3, (5, 6))
    eps = _normal(4, (5, 6))
    x_t = dm.q_sample(COSINE, x0, t, eps)
    x0_hat = x0 + 0.1 * _normal(5, (5, 6))
    eps_hat = dm.predict_eps_from_x0(COSINE, x_t, t, x0_hat)
    v_hat = dm.predict_v(COSINE, x0_hat, t, eps_hat)
    v = dm.predict_v(COSINE, x0, t, eps)
    losses = {target: dm.snr_weight(COSINE, t, "min_snr", 5.0, target)
              * jnp.sum(jnp.square(a - b), axis=1)
              for target, a, b in (("x0", x0_hat, x0), ("eps", eps_hat, eps), ("v", v_hat, v))}
    np.testing.assert_allclose(losses["eps"], losses["x0"], rtol=2e-3)
    np.testing.assert_allclose(losses["v"], losses["x0"], rtol=2e-3)
    with pytest.raises(ValueError):
        dm.snr_weight(COSINE, t, "p2")


# --------------------------------------------------------------------------------------
# Properties (hypothesis)
# --------------------------------------------------------------------------------------
#
# Random schedules: the three named ones with random parameters and T in 2..50, and
# arbitrary (unsorted) betas. References are float64 NumPy from the stored betas, with
# 1 - alpha_bar_t = -expm1(sum_s log(1 - beta_s)) (no cancellation). Storing beta_t in
# float32 moves log alpha_bar_t by up to 6e-8 beta_s / (1 - beta_s) per step (6e-5 at the
# clip 0.999): _ref_rtol bounds that.


@st.composite
def schedules(draw):
    """A DiffusionSchedule of a random kind, length and parameters."""
    kind = draw(st.sampled_from(["linear", "cosine", "sigmoid", "arbitrary"]), label="kind")
    num_steps = draw(st.sampled_from([2, 3, 5, 17, 50]), label="T")   # one compile per T
    unit = st.floats(0.0, 1.0)
    if kind == "linear":
        return dm.linear_beta_schedule(num_steps, 1e-5 + 1e-3 * draw(unit),
                                       5e-3 + 0.05 * draw(unit))
    if kind == "cosine":
        return dm.cosine_beta_schedule(num_steps, 1e-3 + 0.02 * draw(unit))
    if kind == "sigmoid":
        return dm.sigmoid_beta_schedule(num_steps, -1.0 - 4.0 * draw(unit),
                                        1.0 + 4.0 * draw(unit), 0.3 + 1.5 * draw(unit))
    seed = draw(st.integers(0, 2**32 - 1), label="betas seed")
    return dm.make_schedule(np.random.default_rng(seed).uniform(1e-4, 0.5, num_steps))


def _alpha_bar_ref(schedule):
    """(alpha_bar_t, 1 - alpha_bar_t) for t = 0..T-1, float64 from the stored betas."""
    log_ab = np.cumsum(np.log1p(-np.asarray(schedule.betas, np.float64)))
    return np.exp(log_ab), -np.expm1(log_ab)


def _ref_rtol(schedule):
    betas = np.asarray(schedule.betas, np.float64)
    return 2e-6 + 1.2e-7 * np.sum(betas / (1.0 - betas))


def _prev(a, t, at_minus_one):
    """a[t] with a[-1] := at_minus_one (the data)."""
    return np.where(t >= 0, a[np.maximum(t, 0)], at_minus_one)


@given(s=schedules())
def test_random_schedule_constants(s):
    """0 < beta_t < 1, alpha_bar_t = prod_{s<=t} (1 - beta_s) strictly decreasing in (0, 1),
    SNR = alpha_bar / (1 - alpha_bar), beta_tilde_0 = 0; named schedules: beta_t non-decreasing."""
    betas = np.asarray(s.betas, np.float64)
    ab, om = _alpha_bar_ref(s)
    rtol = _ref_rtol(s)
    stored_ab = np.asarray(s.alphas_cumprod, np.float64)
    assert np.all((betas > 0) & (betas < 1))
    assert np.all((stored_ab > 0) & (stored_ab < 1)) and np.all(np.diff(stored_ab) < 0)
    np.testing.assert_allclose(stored_ab, ab, rtol=rtol)
    np.testing.assert_allclose(s.alphas_cumprod_prev, np.append(1.0, ab[:-1]), rtol=rtol)
    np.testing.assert_allclose(np.square(s.sqrt_one_minus_alphas_cumprod), om, rtol=rtol)
    np.testing.assert_allclose(s.snr, ab / om, rtol=2 * rtol)
    np.testing.assert_allclose(s.sqrt_alphas_cumprod * s.sqrt_recip_alphas_cumprod, 1.0,
                               rtol=1e-6)
    assert s.posterior_variance[0] == 0 and np.all(np.asarray(s.posterior_variance[1:]) > 0)


@given(s=schedules(), seed=st.integers(0, 2**32 - 1))
def test_q_posterior_is_bayes_rule_on_random_schedules(s, seed):
    """q(x_{t-1} | x_t, x_0) ∝ N(x_t; sqrt(alpha_t) x_{t-1}, beta_t)
    N(x_{t-1}; sqrt(alpha_bar_{t-1}) x_0, 1 - alpha_bar_{t-1}); the point mass at x_0 at t = 0."""
    rng = np.random.default_rng(seed)
    t = np.array([0, s.num_steps - 1, *rng.integers(0, s.num_steps, 2)])
    x0, x_t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    mean, var, log_var = (np.asarray(a, np.float64) for a in dm.q_posterior(
        s, jnp.asarray(x0, jnp.float32), jnp.asarray(x_t, jnp.float32), jnp.asarray(t)))
    betas = np.asarray(s.betas, np.float64)[t]
    ab, om = _alpha_bar_ref(s)
    ab_prev, om_prev = _prev(ab, t - 1, 1.0), _prev(om, t - 1, 0.0)
    rtol = _ref_rtol(s)
    with np.errstate(divide="ignore"):
        precision = (1.0 - betas) / betas + 1.0 / om_prev           # inf at t = 0
    post_var = 1.0 / precision
    a = post_var * np.sqrt(ab_prev) / np.where(t > 0, om_prev, 1.0)   # x0's coefficient
    a = np.where(t > 0, a, 1.0)[:, None]
    b = (post_var * np.sqrt(1.0 - betas) / betas)[:, None]           # x_t's coefficient
    scale = np.abs(a * x0) + np.abs(b * x_t) + 1e-7
    np.testing.assert_array_less(np.abs(mean - (a * x0 + b * x_t)), 2 * rtol * scale)
    np.testing.assert_allclose(var, np.broadcast_to(post_var[:, None], var.shape), rtol=2 * rtol)
    clipped = np.where(t[:, None] > 0, var, np.float64(s.posterior_variance[1]))
    np.testing.assert_allclose(log_var, np.log(clipped), rtol=1e-5, atol=1e-6)


@given(s=schedules(), seed=st.integers(0, 2**32 - 1))
def test_forward_process_and_conversions_on_random_schedules(s, seed):
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps; x0, eps and v recovered from
    x_t and any one of them; every (x0_hat, eps_hat) of a network output reproduces x_t."""
    rng = np.random.default_rng(seed)
    t = jnp.asarray(np.array([0, s.num_steps - 1, *rng.integers(0, s.num_steps, 2)]))
    x0, eps, out = (jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(3))
    ab, om = (v[np.asarray(t)][:, None] for v in _alpha_bar_ref(s))
    x_t = dm.q_sample(s, x0, t, eps)
    ref = np.sqrt(ab) * x0 + np.sqrt(om) * eps
    np.testing.assert_array_less(np.abs(x_t - ref),
                                 _ref_rtol(s) * (np.abs(x0) + np.abs(eps)) + 1e-7)
    # float32 rounding (|.| * 1e-6) amplified by 1 / sqrt(ab) for x0, 1 / sqrt(1 - ab) for eps
    size = np.abs(x0) + np.abs(eps) + 1.0
    tol_x0, tol_eps = 1e-6 * size / np.sqrt(ab), 1e-6 * size / np.sqrt(om)
    v = dm.predict_v(s, x0, t, eps)
    for got, want, tol in ((dm.predict_x0_from_eps(s, x_t, t, eps), x0, tol_x0),
                           (dm.predict_eps_from_x0(s, x_t, t, x0), eps, tol_eps),
                           (dm.predict_x0_from_v(s, x_t, t, v), x0, 1e-6 * size),
                           (dm.predict_eps_from_v(s, x_t, t, v), eps, 1e-6 * size)):
        np.testing.assert_array_less(np.abs(got - want), tol)
    c1, c2 = (np.asarray(a, np.float64)[np.asarray(t)][:, None]
              for a in (s.sqrt_alphas_cumprod, s.sqrt_one_minus_alphas_cumprod))
    for target in dm.TARGETS:
        x0_hat, eps_hat = dm.model_output_to_x0_eps(s, x_t, t, out, target)
        rebuilt = c1 * x0_hat + c2 * eps_hat        # with the schedule's own coefficients
        size = np.abs(x_t) + np.abs(out) + 1.0
        np.testing.assert_array_less(np.abs(rebuilt - x_t), 1e-5 * size)


@st.composite
def _step_pairs(draw, s):
    """Per-example (t, t_prev) with -1 <= t_prev < t <= T - 1."""
    t = np.asarray(draw(st.lists(st.integers(0, s.num_steps - 1), min_size=4, max_size=4)))
    frac = np.asarray(draw(st.lists(st.floats(0, 1, exclude_max=True), min_size=4,
                                    max_size=4)))
    return t, np.floor(frac * (t + 1)).astype(int) - 1


@given(s=schedules(), data=st.data(), eta=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_ddim_steps_follow_the_forward_marginals(s, data, eta, seed):
    """With the exact (x_0, eps): x_{t_prev} = sqrt(ab') x_0 + sqrt(1 - ab' - sigma^2) eps
    + sigma z, sigma^2 = eta^2 (1 - ab') / (1 - ab) (1 - ab / ab'), ab' = 1 at t_prev = -1;
    DDIM inversion (eta = 0) maps x_{t_prev} back to x_t."""
    t, t_prev = data.draw(_step_pairs(s), label="(t, t_prev)")
    rng = np.random.default_rng(seed)
    x0, eps = (jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(2))
    ab_all, om_all = _alpha_bar_ref(s)
    ab, om = ab_all[t][:, None], om_all[t][:, None]
    ab_p, om_p = _prev(ab_all, t_prev, 1.0)[:, None], _prev(om_all, t_prev, 0.0)[:, None]
    x_t = dm.q_sample(s, x0, jnp.asarray(t), eps)
    key = jax.random.key(seed % 1000)
    z = np.asarray(jax.random.normal(key, x0.shape), np.float64)
    tol = 2 * _ref_rtol(s) * (np.abs(x0) + np.abs(eps) + np.abs(z)) + 1e-6
    deterministic = dm.ddim_step(s, x_t, jnp.asarray(t), jnp.asarray(t_prev), x0, eps, None)
    np.testing.assert_array_less(
        np.abs(deterministic - (np.sqrt(ab_p) * x0 + np.sqrt(om_p) * eps)), tol)
    sigma2 = eta**2 * om_p / om * (1.0 - ab / ab_p)
    expected = (np.sqrt(ab_p) * x0 + np.sqrt(np.maximum(om_p - sigma2, 0.0)) * eps
                + np.sqrt(sigma2) * z)
    # float32 log alpha_bar (error ~ 1e-7 |log alpha_bar|) in 1 - ab / ab', and the reference,
    # move sigma^2 by up to this much, and a square root by at most its square root.
    sigma2_err = eta**2 * om_p / om * (5e-7 * (np.abs(np.log(ab)) + 1.0) + 4 * _ref_rtol(s))
    stochastic = dm.ddim_step(s, x_t, jnp.asarray(t), jnp.asarray(t_prev), x0, eps, key,
                              eta=eta)
    np.testing.assert_array_less(np.abs(stochastic - expected),
                                 tol + np.sqrt(sigma2_err) * (np.abs(z) + np.abs(eps)))
    x_prev = dm.q_sample(s, x0, jnp.asarray(np.maximum(t_prev, 0)), eps)
    x_prev = jnp.where(jnp.asarray(t_prev)[:, None] < 0, x0, x_prev)
    up = dm.ddim_reverse_step(s, x_prev, jnp.asarray(t_prev), jnp.asarray(t), eps)
    tol_up = 1e-6 * (np.abs(x0) + np.abs(eps) + 1.0) * np.sqrt(ab / ab_p)
    np.testing.assert_array_less(np.abs(up - x_t), tol_up + tol)


@given(k=st.sampled_from([1, 2, 7, 50]), data=st.data())      # a few shapes [K]
def test_ddim_timesteps_partition_the_chain(k, data):
    """ts strictly decreasing from T - 1; the K gaps of (ts, -1) are floor or ceil of T / K
    and add up to T; ts_prev = (ts[1:], -1); ddim_timestep(i >= K) = -1."""
    num_train = data.draw(st.integers(k, 1000), label="T")
    ts, ts_prev = (np.asarray(a) for a in dm.ddim_timesteps(num_train, k))
    assert ts.shape == ts_prev.shape == (k,) and ts.dtype == ts_prev.dtype == np.int32
    assert ts[0] == num_train - 1 and ts[-1] >= 0
    gaps = -np.diff(np.append(ts, -1))
    assert gaps.sum() == num_train
    assert set(gaps.tolist()) <= {num_train // k, -(-num_train // k)}
    np.testing.assert_array_equal(ts_prev, np.append(ts[1:], -1))
    if k == num_train:
        np.testing.assert_array_equal(ts, np.arange(num_train - 1, -1, -1))
    beyond = data.draw(st.integers(k, k + 5), label="i >= K")
    assert int(dm.ddim_timestep(beyond, num_train, k)) == -1


_gaussians = hnp.arrays(np.float32, (4, 6),
                        elements=st.floats(-5, 5, width=32, allow_subnormal=False))


@given(params=_gaussians, same=st.booleans())
def test_normal_kl_closed_form_and_zero_iff_equal(params, same):
    """KL(N(m1, e^{v1}) || N(m2, e^{v2})) = 1/2 (v2 - v1 + e^{v1 - v2} + (m1 - m2)^2 e^{-v2} - 1)
    >= 0, with equality iff (m1, v1) = (m2, v2)."""
    m1, v1, m2, v2 = params
    if same:
        m2, v2 = m1, v1
    kl = np.asarray(dm.normal_kl(m1, v1, m2, v2), np.float64)
    m1, v1, m2, v2 = (np.float64(a) for a in (m1, v1, m2, v2))
    ref = 0.5 * (v2 - v1 + np.exp(v1 - v2) + (m1 - m2) ** 2 * np.exp(-v2) - 1.0)
    np.testing.assert_array_less(np.abs(kl - ref), 1e-4 * ref + 1e-6 * (1.0 + np.exp(v1 - v2)))
    assert np.all(kl >= 0.0)
    equal = (m1 == m2) & (v1 == v2)
    assert np.all(kl[equal] == 0.0)
    assert np.all(kl[(np.abs(m1 - m2) * np.exp(-v2 / 2) > 1e-2) | (np.abs(v1 - v2) > 1e-2)] > 0)


@given(s=schedules(), seed=st.integers(0, 2**32 - 1))
def test_prior_kl_closed_form_on_random_schedules(s, seed):
    """L_T = sum_i 1/2 (ab_T x_i^2 + (1 - ab_T) - 1 - log(1 - ab_T)) >= 0, ab = alpha_bar."""
    x0 = np.random.default_rng(seed).uniform(-1, 1, size=(3, 2, 2, 1))
    ab, om = (v[-1] for v in _alpha_bar_ref(s))
    kl = np.asarray(dm.prior_kl(s, jnp.asarray(x0, jnp.float32)), np.float64)
    expected = 0.5 * (ab * x0**2 - ab - np.log(om)).sum(axis=(1, 2, 3))
    assert kl.shape == (3,) and np.all(kl >= 0)
    np.testing.assert_allclose(kl, expected, rtol=1e-3 + 10 * _ref_rtol(s), atol=1e-6)
