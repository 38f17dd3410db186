"""Bijectors: inverse(forward(x)) == x, and log-dets against slogdet of the Jacobian."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.core import bijectors as bj

SHAPE = (4, 4, 2)   # per-example image shape: a 32 x 32 Jacobian


def jacobian_logdet(fn, x_one):
    """(sign, log |det|) of d fn(x)/dx for one example x_one [*S] (fn maps [1, *S]
    batches to ([1, ...], log_det)); traceable, so callers jit it with the map."""
    shape = x_one.shape

    def flat(v):
        return fn(v.reshape((1,) + shape))[0].reshape(-1)

    return jnp.linalg.slogdet(jax.jacfwd(flat)(x_one.reshape(-1)))


def check_bijector(forward, inverse, x, atol=1e-4):
    """Round trip on the batch, opposite log-dets, and per-example log-det == slogdet(J)
    of both maps (one compile)."""

    @jax.jit
    def run(x):
        y, log_det = forward(x)
        x_back, inv_log_det = inverse(y)
        jac = [jacobian_logdet(forward, x[0]), jacobian_logdet(forward, x[1]),
               jacobian_logdet(inverse, y[0])]
        return y, log_det, x_back, inv_log_det, jnp.array(jac)

    y, log_det, x_back, inv_log_det, jac = run(x)
    assert log_det.shape == (x.shape[0],)
    np.testing.assert_allclose(x_back, x, atol=atol)
    np.testing.assert_allclose(inv_log_det, -log_det, atol=1e-3, rtol=1e-5)
    assert np.all(jac[:, 0] != 0)
    np.testing.assert_allclose(log_det[:2], jac[:2, 1], atol=1e-3)
    np.testing.assert_allclose(inv_log_det[0], jac[2, 1], atol=1e-3)
    return y, log_det


def _x(seed=0, shape=SHAPE, batch=3):
    return jax.random.normal(jax.random.key(seed), (batch,) + shape)


def _conditioner(seed, shape=SHAPE, scale=1.0):
    """A fixed nonlinear map x -> (raw log-scale, shift): tanh of a random linear map."""
    d = math.prod(shape)
    k1, k2 = jax.random.split(jax.random.key(seed))
    w1 = jax.random.normal(k1, (d, d)) * scale / math.sqrt(d)
    w2 = jax.random.normal(k2, (d, d)) * scale / math.sqrt(d)

    def net(x):
        flat = x.reshape(x.shape[0], -1)
        return (jnp.tanh(flat @ w1).reshape(x.shape) * 2.0,
                jnp.sin(flat @ w2).reshape(x.shape))
    return net


def test_masks_split_the_input_in_complementary_halves():
    a, b = bj.checkerboard_mask(4, 4, 2, 0), bj.checkerboard_mask(4, 4, 2, 1)
    np.testing.assert_array_equal(a + b, 1.0)
    assert float(a.sum()) == 16 and a[0, 0, 0] == 0 and a[0, 1, 0] == 1
    np.testing.assert_array_equal(bj.channel_mask(4, 0), [1, 1, 0, 0])
    np.testing.assert_array_equal(bj.channel_mask(4, 1), [0, 0, 1, 1])


@pytest.mark.parametrize("mask_kind", ["checkerboard", "channel"])
@pytest.mark.parametrize("scale", ["sigmoid", "tanh"])
def test_affine_coupling(mask_kind, scale):
    mask = (bj.checkerboard_mask(*SHAPE, parity=1) if mask_kind == "checkerboard"
            else bj.channel_mask(SHAPE[-1], 0))
    net = _conditioner(1)
    x = _x()
    y, _ = check_bijector(lambda v: bj.affine_coupling_forward(v, mask, net, scale),
                          lambda v: bj.affine_coupling_inverse(v, mask, net, scale), x)
    np.testing.assert_array_equal(mask * y, mask * x)       # the kept half passes through


def test_coupling_scale_is_bounded_for_huge_network_outputs():
    """An exploding conditioner (raw = +-1e6) cannot make exp(log s) overflow."""
    sig = bj.bounded_log_scale(jnp.array([-1e6, 0.0, 1e6]), "sigmoid")
    assert np.all(np.asarray(sig) <= 0) and np.isclose(sig[1], math.log(jax.nn.sigmoid(2.0)))
    tanh = bj.bounded_log_scale(jnp.array([-1e6, 1e6]), "tanh")
    np.testing.assert_allclose(tanh, [-1.0, 1.0])
    mask = bj.channel_mask(2)
    for sign in (1.0, -1.0):
        y, log_det = bj.affine_coupling_forward(
            _x(), mask, lambda m: (sign * 1e6 + 0 * m, jnp.zeros_like(m)), "tanh")
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(log_det))
        np.testing.assert_allclose(log_det, sign * 16.0, rtol=1e-6)    # 16 positions x 1


def test_additive_coupling_is_volume_preserving():
    mask = bj.checkerboard_mask(*SHAPE)
    shift = lambda m: _conditioner(2)(m)[1] * 3.0                       # noqa: E731
    y, log_det = check_bijector(lambda v: bj.additive_coupling_forward(v, mask, shift),
                                lambda v: bj.additive_coupling_inverse(v, mask, shift), _x())
    np.testing.assert_array_equal(log_det, 0.0)


def test_actnorm_and_its_data_dependent_init():
    x = 3.0 + 2.5 * _x(3, batch=16) * jnp.arange(1.0, 3.0)
    log_scale, bias = bj.actnorm_init(x)
    y, _ = check_bijector(lambda v: bj.actnorm_forward(v, log_scale, bias),
                          lambda v: bj.actnorm_inverse(v, log_scale, bias), x)
    flat = np.asarray(y).reshape(-1, SHAPE[-1])
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(0), 1.0, atol=1e-4)


def test_actnorm_on_flat_data():
    x = _x(4, shape=(5,))
    log_scale, bias = jnp.linspace(-1, 1, 5), jnp.arange(5.0)
    check_bijector(lambda v: bj.actnorm_forward(v, log_scale, bias),
                   lambda v: bj.actnorm_inverse(v, log_scale, bias), x)


def test_plain_and_lu_conv1x1_agree_for_the_same_matrix():
    c = SHAPE[-1] * 2
    x = _x(5, shape=(4, 4, c))
    w = jax.random.normal(jax.random.key(6), (c, c))
    plain_y, plain_ld = check_bijector(lambda v: bj.conv1x1_forward(v, w),
                                       lambda v: bj.conv1x1_inverse(v, w), x)
    perm, lower, upper, log_s, sign_s = bj.lu_decompose(w)
    np.testing.assert_allclose(bj.lu_weight(perm, lower, upper, log_s, sign_s), w, atol=1e-5)
    lu_y, lu_ld = check_bijector(
        lambda v: bj.lu_conv1x1_forward(v, perm, lower, upper, log_s, sign_s),
        lambda v: bj.lu_conv1x1_inverse(v, perm, lower, upper, log_s, sign_s), x)
    np.testing.assert_allclose(lu_ld, plain_ld, rtol=1e-5)
    np.testing.assert_allclose(lu_ld[0], 16 * np.linalg.slogdet(np.asarray(w, np.float64))[1],
                               rtol=1e-5)
    np.testing.assert_allclose(lu_y, plain_y, atol=1e-4)


def test_squeeze_is_a_permutation_of_2x2_patches():
    x = _x(7)
    y = bj.squeeze(x)
    assert y.shape == (3, 2, 2, 8)
    np.testing.assert_array_equal(y[:, 0, 0], x[:, :2, :2].reshape(3, 8))
    np.testing.assert_array_equal(bj.unsqueeze(y), x)
    wrap = lambda f: lambda v: (f(v), jnp.zeros(v.shape[0]))           # noqa: E731
    check_bijector(wrap(bj.squeeze), wrap(bj.unsqueeze), x)


def test_split_factors_out_half_under_a_learned_gaussian():
    x = _x(8)
    net = _conditioner(9, shape=(4, 4, 1))
    shapes = (3, 4, 4, 2)

    def forward(v):
        (z1, eps), log_det = bj.split_forward(v, net)
        return jnp.concatenate([z1, eps], -1), log_det

    def inverse(v):
        z1, eps = jnp.split(v, 2, axis=-1)
        return bj.split_inverse(z1, eps, net)

    y, log_det = check_bijector(forward, inverse, x)
    # log N(z_2; mean, sigma^2) = log N(eps; 0, 1) + log_det
    z1, z2 = jnp.split(x, 2, -1)
    mean, log_scale = net(z1)
    direct = jax.scipy.stats.norm.logpdf(z2, mean, jnp.exp(log_scale)).reshape(3, -1).sum(1)
    via_eps = jax.scipy.stats.norm.logpdf(y[..., 1:]).reshape(3, -1).sum(1) + log_det
    np.testing.assert_allclose(via_eps, direct, rtol=1e-5)
    assert y.shape == shapes


def test_affine_injector_map():
    u = _x(10, batch=1)[0]                  # a condition shared by the batch: [H, W, C]
    log_scale, shift = jnp.tanh(u), jnp.sin(u)
    check_bijector(lambda v: bj.affine_forward(v, log_scale, shift),
                   lambda v: bj.affine_inverse(v, log_scale, shift), _x(11))


def test_logit_preprocessing():
    y = jax.random.uniform(jax.random.key(12), (3,) + SHAPE)
    check_bijector(lambda v: bj.logit_forward(v, 0.05), lambda v: bj.logit_inverse(v, 0.05), y)


def test_dequantization_stays_in_the_bin_and_has_log_det_minus_d_log_l():
    levels = 17
    k = jax.random.randint(jax.random.key(13), (3,) + SHAPE, 0, levels)
    for u in (jnp.zeros(k.shape), jnp.full(k.shape, 1.0 - 1e-8),
              jax.random.uniform(jax.random.key(14), k.shape)):
        y, log_det = bj.dequantize_forward(k, u, levels)
        np.testing.assert_array_equal(bj.dequantize_inverse(y, levels), k)
        assert np.all(y >= 0) and np.all(y < 1)
    np.testing.assert_allclose(log_det, -32 * math.log(levels), rtol=1e-6)
    # the log-det is that of the map (k + u) -> (k + u) / L in u
    _, ld = jacobian_logdet(lambda v: bj.dequantize_forward(jnp.zeros_like(v), v, levels),
                            jnp.full(SHAPE, 0.3))
    np.testing.assert_allclose(ld, -32 * math.log(levels), rtol=1e-5)
