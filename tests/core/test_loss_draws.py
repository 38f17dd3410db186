"""The DSM and flow matching losses take their draws (t, noise) from the caller: given
explicitly as the docstrings say they are drawn from the key, they give the key's loss; each
one given alone replaces only its own draw."""

import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import flow_matching as fm
from genjax.core import sde as sd

X = jax.random.normal(jax.random.key(0), (8, 3))


def field(x, t):
    """A non-trivial (x, t) -> [B, D] standing in for a network."""
    return jnp.sin(x) * (1.0 + t[:, None]) - 0.3 * x


def test_dsm_loss_with_explicit_draws_equals_the_draws_from_the_key():
    sde, key, eps = sd.SubVPSDE(), jax.random.key(1), 1e-3
    k_t, k_z = jax.random.split(key)
    t = jax.random.uniform(k_t, (X.shape[0],), minval=eps, maxval=1.0)
    z = jax.random.normal(k_z, X.shape, X.dtype)
    from_key = sd.denoising_score_matching_loss(sde, field, X, key, eps=eps)
    given = sd.denoising_score_matching_loss(sde, field, X, None, eps=eps, t=t, noise=z)
    assert from_key.shape == (8,)
    np.testing.assert_array_equal(given, from_key)
    # one draw given: the other still comes from the key
    np.testing.assert_array_equal(
        sd.denoising_score_matching_loss(sde, field, X, key, eps=eps, t=t), from_key)
    np.testing.assert_array_equal(
        sd.denoising_score_matching_loss(sde, field, X, key, eps=eps, noise=z), from_key)
    # and they are used: other draws give another loss
    other = sd.denoising_score_matching_loss(sde, field, X, key, eps=eps, t=1.0 - 0.5 * t)
    assert not np.allclose(other, from_key)


def test_flow_matching_loss_with_explicit_draws_equals_the_draws_from_the_key():
    key = jax.random.key(2)
    k_t, k_0 = jax.random.split(key)
    t = jax.random.uniform(k_t, (X.shape[0],), X.dtype)
    x0 = jax.random.normal(k_0, X.shape, X.dtype)
    from_key = fm.flow_matching_loss(field, X, key, sigma_min=0.1)
    given = fm.flow_matching_loss(field, X, None, sigma_min=0.1, x0=x0, t=t)
    assert from_key.shape == (8,)
    np.testing.assert_array_equal(given, from_key)
    np.testing.assert_array_equal(fm.flow_matching_loss(field, X, key, sigma_min=0.1, t=t),
                                  from_key)
    np.testing.assert_array_equal(fm.flow_matching_loss(field, X, key, sigma_min=0.1, x0=x0),
                                  from_key)
    other = fm.flow_matching_loss(field, X, key, sigma_min=0.1, t=0.5 * t)
    assert not np.allclose(other, from_key)
