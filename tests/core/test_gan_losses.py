"""GAN objectives against closed forms: the optimal discriminator and the Jensen-Shannon
divergence, the gradients of the saturating and non-saturating losses, the gradient penalty of
linear critics, R1 against finite differences, and WGAN's weight clipping."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.spatial.distance import jensenshannon

from genjax.core import gan_losses as gl

# Two laws on five points, in twentieths, so that a batch listing each point 20 p(x) times
# has the exact expectation as its mean.
P_D = np.array([6, 5, 4, 3, 2]) / 20
P_G = np.array([1, 2, 3, 4, 10]) / 20


def _batch(probs):
    return np.repeat(np.arange(len(probs)), np.round(20 * probs).astype(int))


def test_optimal_discriminator_gives_minus_log4_plus_twice_js():
    """V(G, D*) = -log 4 + 2 JS(p_d || p_g) with D* = p_d / (p_d + p_g), logit log p_d/p_g;
    and any other discriminator does worse."""
    logits = np.log(P_D / P_G)
    real, fake = logits[_batch(P_D)], logits[_batch(P_G)]
    value = -float(gl.minimax_discriminator_loss(jnp.asarray(real), jnp.asarray(fake)))
    js = jensenshannon(P_D, P_G) ** 2                    # scipy: the distance, natural log
    np.testing.assert_allclose(value, -np.log(4) + 2 * js, rtol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(5):
        other = logits + rng.normal(0, 0.5, logits.shape)
        worse = -float(gl.minimax_discriminator_loss(jnp.asarray(other[_batch(P_D)]),
                                                     jnp.asarray(other[_batch(P_G)])))
        assert worse < value
    # p_g = p_d: D* = 1/2 everywhere and V = -log 4
    half = jnp.zeros(20)
    np.testing.assert_allclose(-gl.minimax_discriminator_loss(half, half), -np.log(4), rtol=1e-6)


def test_non_saturating_gradient_is_larger_where_d_rejects_the_fakes():
    """d/df E log(1 - sigmoid f) = -sigmoid(f) -> 0 as D(G(z)) -> 0, while
    d/df -E log sigmoid(f) = -sigmoid(-f) -> -1: same direction, no vanishing."""
    f = jnp.array([-12.0, -8.0, -4.0, 0.0])
    saturating = jax.grad(gl.minimax_generator_loss)(f)
    nonsaturating = jax.grad(gl.nonsaturating_generator_loss)(f)
    n = len(f)
    np.testing.assert_allclose(saturating, -jax.nn.sigmoid(f) / n, rtol=1e-5)
    np.testing.assert_allclose(nonsaturating, -jax.nn.sigmoid(-f) / n, rtol=1e-5)
    assert np.all(np.sign(saturating) == np.sign(nonsaturating))
    assert np.all(np.abs(nonsaturating[:3]) > 50 * np.abs(saturating[:3]))
    np.testing.assert_allclose(saturating[3], nonsaturating[3])          # equal at D = 1/2
    # the two generator losses share their fixed point with the discriminator's game
    np.testing.assert_allclose(gl.minimax_generator_loss(jnp.zeros(3)), -np.log(2), rtol=1e-6)
    np.testing.assert_allclose(gl.nonsaturating_generator_loss(jnp.zeros(3)), np.log(2),
                               rtol=1e-6)


@pytest.mark.parametrize("norm", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("shape", [(3,), (4, 4, 1)])
def test_gradient_penalty_of_a_linear_critic_is_its_norm_minus_one_squared(norm, shape):
    """f(x) = w.x + b has gradient w everywhere: the penalty is (|w| - 1)^2 exactly, zero for a
    unit-norm w and positive otherwise."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=shape)
    w = jnp.asarray(norm * w / np.linalg.norm(w), jnp.float32)

    def critic(x):
        return jnp.sum((x * w).reshape(x.shape[0], -1), axis=1) + 0.3

    real = jnp.asarray(rng.normal(size=(8,) + shape), jnp.float32)
    fake = jnp.asarray(rng.normal(size=(8,) + shape), jnp.float32)
    penalty = gl.gradient_penalty(critic, real, fake, jax.random.key(0))
    np.testing.assert_allclose(penalty, (norm - 1.0) ** 2, atol=1e-6)
    x_hat = gl.interpolates(jax.random.key(0), real, fake)           # on the segments
    eps = (x_hat - fake) / (real - fake)
    np.testing.assert_allclose(eps, np.broadcast_to(eps[:, :1] if eps.ndim == 2 else
                                                    eps[:, :1, :1, :1], eps.shape), rtol=1e-4)
    assert np.all((eps >= 0) & (eps <= 1))


def test_r1_matches_finite_differences():
    """R1 = E |grad f(x)|^2 for f(x) = sum tanh(A x + c), by central differences in float64."""
    rng = np.random.default_rng(2)
    a, c = rng.normal(size=(5, 3)), rng.normal(size=5)
    x = rng.normal(size=(6, 3))

    def critic(v):
        return jnp.sum(jnp.tanh(v @ jnp.asarray(a.T, jnp.float32) + jnp.asarray(c, jnp.float32)),
                       axis=1)

    def critic_np(v):
        return np.tanh(v @ a.T + c).sum(-1)

    h = 1e-5
    grads = np.stack([(critic_np(x + h * e) - critic_np(x - h * e)) / (2 * h)
                      for e in np.eye(3)], axis=1)
    expected = np.mean(np.sum(grads ** 2, axis=1))
    np.testing.assert_allclose(gl.r1_penalty(critic, jnp.asarray(x, jnp.float32)), expected,
                               rtol=1e-5)


def test_least_squares_hinge_and_wasserstein_losses():
    """Formulas by hand; the least-squares discriminator is minimised by f = p_d / (p_d + p_g)
    (Mao et al., a = 0, b = 1), and a linear critic on a shifted copy of the data reads the
    Wasserstein-1 distance |delta|."""
    real, fake = jnp.array([2.0, 0.5, -1.0]), jnp.array([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(gl.least_squares_discriminator_loss(real, fake),
                               0.5 * np.mean((np.array(real) - 1) ** 2)
                               + 0.5 * np.mean(np.array(fake) ** 2), rtol=1e-6)
    np.testing.assert_allclose(gl.least_squares_generator_loss(fake),
                               0.5 * np.mean((np.array(fake) - 1) ** 2), rtol=1e-6)
    np.testing.assert_allclose(gl.hinge_discriminator_loss(real, fake),
                               np.mean([0, 0.5, 2.0]) + np.mean([0, 1.0, 2.5]), rtol=1e-6)
    np.testing.assert_allclose(gl.hinge_generator_loss(fake), -np.mean(fake), rtol=1e-6)

    best = jnp.asarray(P_D / (P_D + P_G), jnp.float32)

    def ls(values):
        return gl.least_squares_discriminator_loss(values[_batch(P_D)], values[_batch(P_G)])

    np.testing.assert_allclose(jax.grad(ls)(best), 0.0, atol=1e-6)

    points = jnp.asarray(np.random.default_rng(3).normal(size=64), jnp.float32)
    for delta in (0.7, -1.3):
        w1 = -gl.wasserstein_critic_loss(jnp.sign(delta) * (points + delta),
                                         jnp.sign(delta) * points)
        np.testing.assert_allclose(w1, abs(delta), rtol=1e-5)
    np.testing.assert_allclose(gl.wasserstein_generator_loss(fake), -np.mean(fake), rtol=1e-6)


def test_losses_by_name_and_discriminator_accuracy():
    d_loss, g_loss = gl.losses("nonsaturating")
    assert d_loss is gl.minimax_discriminator_loss
    assert g_loss is gl.nonsaturating_generator_loss
    with pytest.raises(ValueError, match="unknown GAN loss 'wgan'.*wasserstein"):
        gl.losses("wgan")
    acc = gl.discriminator_accuracy(jnp.array([1.0, -1.0, 2.0]), jnp.array([-3.0, 0.5, -0.1]))
    np.testing.assert_allclose(acc, 4 / 6)


def test_weight_clipping_keeps_every_weight_in_the_box():
    params = {"w": jnp.array([0.005, -0.2, 0.0]), "b": jnp.array([0.3])}
    grads = {"w": jnp.array([1.0, -1.0, 0.001]), "b": jnp.array([-5.0])}
    opt = optax.chain(optax.sgd(0.1), gl.clip_weights(0.01))
    state = opt.init(params)
    updates, _ = opt.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["w"], [-0.01, -0.01, -0.0001], atol=1e-7)
    np.testing.assert_allclose(new["b"], [0.01], atol=1e-7)    # w + (clip - w): one rounding
    with pytest.raises(ValueError, match="needs params"):
        opt.update(grads, state)
    with pytest.raises(ValueError, match="positive"):
        gl.clip_weights(0.0)
