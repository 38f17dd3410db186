"""Langevin samplers with exact scores: ULA's stationary law in closed form, MALA's exactness,
and NCSN's two-mode demonstration (annealing recovers the mixture weights, plain Langevin
does not); the replay buffer's bookkeeping."""

import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import langevin as lv

MU = jnp.array([1.0, -2.0])
SIGMA = jnp.array([0.5, 2.0])          # a diagonal Gaussian target N(MU, diag(SIGMA^2))


def gaussian_score(x):
    return -(x - MU) / SIGMA ** 2


def gaussian_log_prob(x):
    return -0.5 * jnp.sum(((x - MU) / SIGMA) ** 2, axis=-1)


def _within_mc_error(samples, mean, var, sigmas=4.0):
    """Mean and variance of independent samples [N, d] against the law's, within a few
    standard errors (var of the sample variance: 2 var^2 / N for a Gaussian)."""
    n = len(samples)
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), sigmas * np.sqrt(var / n))
    np.testing.assert_array_less(np.abs(samples.var(0) - var), sigmas * var * np.sqrt(2 / n))


def test_ula_reaches_its_closed_form_stationary_law():
    """x' = x + eps s(x) + sqrt(2 eps) z on N(mu, sigma^2) is AR(1) with stationary variance
    sigma^2 / (1 - eps / (2 sigma^2)): the mean is exact, the variance has that O(eps) bias."""
    eps = 0.05
    x0 = jnp.zeros((4000, 2))
    x = np.asarray(lv.langevin(gaussian_score, x0, jax.random.key(0), step_size=eps,
                               num_steps=400))
    var = np.asarray(SIGMA ** 2 / (1 - eps / (2 * SIGMA ** 2)))
    _within_mc_error(x, np.asarray(MU), var)
    assert var[0] > 1.04 * SIGMA[0] ** 2                 # the bias the test can see


def test_mala_is_exact_at_a_step_where_ula_is_biased():
    eps = 0.1                                             # ULA: variance 0.25 -> 0.3125
    x0 = jnp.zeros((4000, 2))
    x, rate = lv.mala(gaussian_log_prob, x0, jax.random.key(1), step_size=eps, num_steps=300)
    _within_mc_error(np.asarray(x), np.asarray(MU), np.asarray(SIGMA ** 2))
    assert 0.5 < float(rate) < 1.0
    _, smaller = lv.mala(gaussian_log_prob, x0, jax.random.key(1), step_size=0.01,
                         num_steps=50)
    assert float(smaller) > float(rate)                   # smaller steps are accepted more


# NCSN's toy (Song & Ermon, 2019, fig. 3): 0.8 N((5, 5), I) + 0.2 N((-5, -5), I). The data
# perturbed by N(0, sigma^2 I) is the same mixture with variance 1 + sigma^2, whose score is
# exact here.
WEIGHTS = jnp.array([0.8, 0.2])
CENTRES = jnp.array([[5.0, 5.0], [-5.0, -5.0]])


def mixture_score(x, sigma):
    var = 1.0 + sigma ** 2
    d2 = jnp.sum((x[:, None] - CENTRES[None]) ** 2, axis=-1)          # [B, 2]
    resp = jax.nn.softmax(jnp.log(WEIGHTS) - d2 / (2 * var), axis=-1)
    return jnp.einsum("bk,bkd->bd", resp, CENTRES[None] - x[:, None]) / var


def test_annealed_langevin_recovers_the_mixture_weights_and_plain_langevin_does_not():
    x0 = jax.random.uniform(jax.random.key(2), (1280, 2), minval=-8.0, maxval=8.0)
    sigmas = lv.geometric_sigmas(20.0, 1.0, 10)
    np.testing.assert_allclose(np.asarray(sigmas)[[0, -1]], [20.0, 1.0], rtol=1e-6)
    annealed = lv.annealed_langevin(mixture_score, x0, jax.random.key(3), sigmas,
                                    steps_per_level=100, step_size=0.1)
    plain = lv.langevin(lambda x: mixture_score(x, 1.0), x0, jax.random.key(3),
                        step_size=0.05, num_steps=1000)
    share = [float(jnp.mean(x.sum(1) > 0)) for x in (annealed, plain)]
    assert abs(share[0] - 0.8) < 0.05
    assert abs(share[1] - 0.8) > 0.2                      # stuck with the initial half/half
    # the chains end on the law of the last level, the data perturbed by sigma_L = 1:
    # each mode with variance 1 + sigma_L^2 = 2
    upper = np.asarray(annealed)[np.asarray(annealed).sum(1) > 0]
    np.testing.assert_allclose(upper.mean(0), [5.0, 5.0], atol=0.2)
    np.testing.assert_allclose(upper.std(0), [np.sqrt(2.0)] * 2, atol=0.1)


def test_replay_buffer_reinitialises_a_fraction_and_writes_rows_back():
    buffer = jnp.arange(100.0).reshape(50, 2)

    def noise(key, shape):
        return -1.0 - jax.random.uniform(key, shape)     # negative: told apart from rows

    x0, rows = lv.replay_sample(buffer, jax.random.key(4), 400, 0.25, noise)
    fresh = np.asarray(x0[:, 0] < 0)
    assert abs(fresh.mean() - 0.25) < 0.07
    np.testing.assert_array_equal(x0[~fresh], buffer[rows[~fresh]])
    assert np.all((np.asarray(rows) >= 0) & (np.asarray(rows) < 50))
    none, _ = lv.replay_sample(buffer, jax.random.key(4), 64, 0.0, noise)
    assert np.all(np.asarray(none) >= 0)
    new = lv.replay_update(buffer, jnp.array([3, 7]), jnp.array([[-5.0, -5.0], [-6.0, -6.0]]))
    np.testing.assert_array_equal(new[3], [-5.0, -5.0])
    np.testing.assert_array_equal(new[7], [-6.0, -6.0])
    np.testing.assert_array_equal(np.delete(np.asarray(new), [3, 7], 0),
                                  np.delete(np.asarray(buffer), [3, 7], 0))
