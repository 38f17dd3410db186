"""genjax.core.inversion: the scanned optimizer against gradient descent's closed form on a
quadratic, and the independence of the latents of a batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.core import inversion


def test_gradient_descent_on_a_quadratic_follows_its_closed_form():
    # L(z) = |z - t|^2 per example; SGD with rate a: z_k - t = (1 - 2a)^k (z_0 - t).
    target = jnp.array([[1.0, -2.0], [0.5, 3.0], [0.0, 0.0]])
    z0 = jnp.zeros_like(target)
    a, steps = 0.1, 7

    def loss(z):
        return jnp.sum((z - target) ** 2, axis=-1)

    z, history = inversion.optimize(loss, z0, steps, optax.sgd(a))
    np.testing.assert_allclose(z, target + (1 - 2 * a) ** steps * (z0 - target), rtol=1e-5)
    k = np.arange(steps + 1)[:, None]
    expected = (1 - 2 * a) ** (2 * k) * np.sum(np.asarray(target) ** 2, axis=-1)
    assert history.shape == (steps + 1, 3)
    np.testing.assert_allclose(history, expected, rtol=1e-5, atol=1e-7)


def test_each_latent_of_a_batch_follows_its_own_descent():
    w = jax.random.normal(jax.random.key(0), (4, 6))
    x = jax.random.normal(jax.random.key(1), (3, 6))

    def loss(z):                                   # a non-linear "generator" tanh(z W)
        return inversion.reconstruction_mse(x[:z.shape[0]] if z.shape[0] == 3 else x[1:2],
                                            jnp.tanh(z @ w))

    z0 = jnp.full((3, 4), 0.1)
    together, _ = inversion.optimize(loss, z0, 20, optax.adam(0.05))
    alone, _ = inversion.optimize(loss, z0[1:2], 20, optax.adam(0.05))
    np.testing.assert_allclose(together[1:2], alone, rtol=1e-5, atol=1e-6)


def test_reconstruction_mse_is_the_mean_over_each_example():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    b = np.ones_like(a)
    np.testing.assert_allclose(inversion.reconstruction_mse(a, b),
                               [np.mean((a[i] - 1) ** 2) for i in range(2)], rtol=1e-6)
