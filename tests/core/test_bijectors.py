"""Bijectors: inverse(forward(x)) == x, and log-dets against slogdet of the Jacobian."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# --------------------------------------------------------------------------------------
# Properties (hypothesis)
# --------------------------------------------------------------------------------------
#
# Every bijector on random shapes (flat [B, D] and images [B, H, W, C], D <= 32) and
# random parameters, in float64: f^{-1}(f(x)) = x, the two log-dets are opposite, and
# each equals log |det J| of its own map by NumPy's slogdet of jacfwd. Parameters are
# arrays passed into one jitted check per bijector, so a shape compiles once for all
# examples.

SHAPES = [(6,), (2, 4, 4)]           # flat [B, D] and an image [B, H, W, C]


def _net(w1, w2):
    """A fixed nonlinear conditioner v -> (2 tanh(W_1 v), sin(W_2 v)) on flattened v."""
    def net(v):
        flat = v.reshape(v.shape[0], -1)
        return 2.0 * jnp.tanh(flat @ w1).reshape(v.shape), jnp.sin(flat @ w2).reshape(v.shape)
    return net


def _shift_net(p):
    return lambda v: 3.0 * _net(p["w1"], p["w2"])(v)[1]


def _net_params(rng, d):
    return dict(w1=rng.normal(size=(d, d)) / math.sqrt(d), w2=rng.normal(size=(d, d)))


def _coupling_params(rng, shape):
    """A checkerboard (images) or channel mask of random parity, and a conditioner."""
    parity = int(rng.integers(2))
    if len(shape) == 3 and rng.random() < 0.5:
        mask = np.asarray(bj.checkerboard_mask(*shape, parity=parity), np.float64)
    else:
        mask = np.broadcast_to(np.asarray(bj.channel_mask(shape[-1], parity)), shape)
    return dict(mask=np.asarray(mask, np.float64), **_net_params(rng, math.prod(shape)))


def _well_conditioned(rng, c):
    """Q_1 diag(s) Q_2 with Q orthogonal and s in [e^-0.7, e^0.7]: condition number <= 4."""
    q1, _ = np.linalg.qr(rng.normal(size=(c, c)))
    q2, _ = np.linalg.qr(rng.normal(size=(c, c)))
    return q1 @ np.diag(np.exp(rng.uniform(-0.7, 0.7, c))) @ q2


def _lu_params(rng, shape):
    c = shape[-1]
    return dict(perm=np.eye(c)[rng.permutation(c)], lower=0.5 * rng.normal(size=(c, c)),
                upper=0.5 * rng.normal(size=(c, c)), log_s=rng.uniform(-1, 1, c),
                sign_s=rng.choice([-1.0, 1.0], c))


def _split_params(rng, shape):
    return _net_params(rng, math.prod(shape) // 2)


def _lu_args(p):
    return p["perm"], p["lower"], p["upper"], p["log_s"], p["sign_s"]


def _split_forward(x, p):
    (z1, eps), log_det = bj.split_forward(x, _net(p["w1"], p["w2"]))
    return jnp.concatenate([z1, eps], -1), log_det


def _split_inverse(y, p):
    z1, eps = jnp.split(y, 2, axis=-1)
    return bj.split_inverse(z1, eps, _net(p["w1"], p["w2"]))


def _with_zero_log_det(f):
    return lambda v, p: (f(v), jnp.zeros(v.shape[0], v.dtype))


def _elementwise(rng, shape):
    return dict(log_scale=rng.uniform(-1, 1, shape), shift=rng.normal(size=shape))


# name: (forward(x, p), inverse(y, p), params(rng, shape), shapes)
BIJECTORS = {
    "affine_coupling_sigmoid": (
        lambda v, p: bj.affine_coupling_forward(v, p["mask"], _net(p["w1"], p["w2"])),
        lambda v, p: bj.affine_coupling_inverse(v, p["mask"], _net(p["w1"], p["w2"])),
        _coupling_params, SHAPES),
    "affine_coupling_tanh": (
        lambda v, p: bj.affine_coupling_forward(v, p["mask"], _net(p["w1"], p["w2"]), "tanh"),
        lambda v, p: bj.affine_coupling_inverse(v, p["mask"], _net(p["w1"], p["w2"]), "tanh"),
        _coupling_params, SHAPES),
    "additive_coupling": (
        lambda v, p: bj.additive_coupling_forward(v, p["mask"], _shift_net(p)),
        lambda v, p: bj.additive_coupling_inverse(v, p["mask"], _shift_net(p)),
        _coupling_params, SHAPES),
    "affine": (
        lambda v, p: bj.affine_forward(v, p["log_scale"], p["shift"]),
        lambda v, p: bj.affine_inverse(v, p["log_scale"], p["shift"]),
        _elementwise, SHAPES),
    "gaussianize": (
        lambda v, p: bj.gaussianize_forward(v, p["shift"], p["log_scale"]),
        lambda v, p: bj.gaussianize_inverse(v, p["shift"], p["log_scale"]),
        _elementwise, SHAPES),
    "actnorm": (
        lambda v, p: bj.actnorm_forward(v, p["log_scale"], p["bias"]),
        lambda v, p: bj.actnorm_inverse(v, p["log_scale"], p["bias"]),
        lambda rng, shape: dict(log_scale=rng.uniform(-1, 1, shape[-1]),
                                bias=rng.normal(size=shape[-1])),
        SHAPES),
    "conv1x1": (
        lambda v, p: bj.conv1x1_forward(v, p["w"]),
        lambda v, p: bj.conv1x1_inverse(v, p["w"]),
        lambda rng, shape: dict(w=_well_conditioned(rng, shape[-1])), SHAPES),
    "lu_conv1x1": (
        lambda v, p: bj.lu_conv1x1_forward(v, *_lu_args(p)),
        lambda v, p: bj.lu_conv1x1_inverse(v, *_lu_args(p)),
        _lu_params, SHAPES),
    "squeeze": (_with_zero_log_det(bj.squeeze), _with_zero_log_det(bj.unsqueeze),
                lambda rng, shape: {}, [(2, 4, 4), (4, 2, 2)]),
    "split": (_split_forward, _split_inverse, _split_params, SHAPES),
    "logit": (
        lambda v, p: bj.logit_forward(v, 0.05), lambda v, p: bj.logit_inverse(v, 0.05),
        lambda rng, shape: {}, SHAPES),
}


def _jacobian(fn, x_one):
    """d fn(x)/dx [D, D] at one example x_one [*S] (fn maps [1, *S] to ([1, ...], log_det))."""
    def flat(v):
        return fn(v.reshape((1,) + x_one.shape))[0].reshape(-1)
    return jax.jacfwd(flat)(x_one.reshape(-1))


@functools.partial(jax.jit, static_argnums=0)
def _round_trip_and_jacobians(name, x, params):
    """(y, log_det, f^{-1}(y), its log_det, J_f(x_0), J_{f^{-1}}(y_1))."""
    forward, inverse = (functools.partial(lambda f, v: f(v, params), f)
                        for f in BIJECTORS[name][:2])
    y, log_det = forward(x)
    x_back, inv_log_det = inverse(y)
    return y, log_det, x_back, inv_log_det, _jacobian(forward, x[0]), _jacobian(inverse, y[1])


@pytest.mark.parametrize("name", sorted(BIJECTORS))
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_bijector_inverse_and_log_det_properties(name, data, seed):
    """f^{-1}(f(x)) = x, log|det J_{f^{-1}}| = -log|det J_f|, log_det = slogdet(jacfwd f)."""
    _, _, make_params, shapes = BIJECTORS[name]
    shape = data.draw(st.sampled_from(shapes), label="shape")
    rng = np.random.default_rng(seed)
    params = make_params(rng, shape)
    x = (rng.uniform(0.0, 1.0, (2,) + shape) if name == "logit"
         else rng.normal(size=(2,) + shape))
    with jax.enable_x64(True):
        y, log_det, x_back, inv_log_det, jac_fwd, jac_inv = (
            np.asarray(a) for a in _round_trip_and_jacobians(name, x, params))
    assert y.dtype == np.float64 and log_det.shape == inv_log_det.shape == (2,)
    np.testing.assert_allclose(x_back, x, atol=1e-10)
    np.testing.assert_allclose(inv_log_det, -log_det, atol=1e-10)
    (sign_fwd, slogdet_fwd), (sign_inv, slogdet_inv) = map(np.linalg.slogdet, (jac_fwd, jac_inv))
    assert sign_fwd != 0 and sign_inv != 0
    np.testing.assert_allclose(log_det[0], slogdet_fwd, atol=1e-9)
    np.testing.assert_allclose(inv_log_det[1], slogdet_inv, atol=1e-9)


@given(num_levels=st.integers(2, 1024), seed=st.integers(0, 2**32 - 1))
def test_dequantize_keeps_every_level_in_its_bin(num_levels, seed):
    """y = (k + u) / L in [k / L, (k + 1) / L) for all k < L and u ~ U[0, 1): floor(y L) = k,
    y in [0, 1); log-det = -D log L."""
    rng = np.random.default_rng(seed)
    k = rng.permutation(np.arange(1024) % num_levels).reshape(128, 8)
    y, log_det = bj.dequantize_forward(k, np.float32(rng.uniform(size=k.shape)), num_levels)
    y = np.asarray(y)
    assert y.dtype == np.float32 and y.min() >= 0.0 and y.max() < 1.0
    back = np.asarray(bj.dequantize_inverse(y, num_levels))
    assert back.dtype == (np.uint8 if num_levels <= 256 else np.int32)
    np.testing.assert_array_equal(back, k)
    np.testing.assert_allclose(log_det, -8 * math.log(num_levels), rtol=1e-6)


def test_dequantize_keeps_extreme_noise_in_its_bin():
    """floor(y L) = k also for u = 0 and u = the largest float32 below 1 (the clip's edges)."""
    below_one = np.nextafter(np.float32(1), np.float32(0))
    for num_levels, u in ((10, below_one), (255, below_one), (100, 0.0)):
        k = np.tile(np.arange(num_levels), (2, 1))      # e.g. k = 8 of 10 -> 9, 5 of 100 -> 4
        y, _ = bj.dequantize_forward(k, np.full(k.shape, u, np.float32), num_levels)
        np.testing.assert_array_equal(bj.dequantize_inverse(y, num_levels), k)


@jax.jit
def _lu_round_trip(w):
    perm, lower, upper, log_s, sign_s = parts = bj.lu_decompose(w)
    return parts, bj.lu_weight(perm, lower, upper, log_s, sign_s)


@given(c=st.sampled_from([1, 3, 5]), seed=st.integers(0, 2**32 - 1))
def test_lu_decompose_reconstructs_the_matrix(c, seed):
    """W = P L (U + diag(sign_s e^{log_s})) with sum log_s = log |det W|."""
    w = _well_conditioned(np.random.default_rng(seed), c).astype(np.float32)
    (perm, lower, upper, log_s, sign_s), rebuilt = _lu_round_trip(w)
    np.testing.assert_allclose(rebuilt, w, atol=1e-5)
    np.testing.assert_allclose(np.sum(log_s), np.linalg.slogdet(w.astype(np.float64))[1],
                               atol=1e-5)
    np.testing.assert_array_equal(perm @ perm.T, np.eye(c))         # a permutation matrix


@given(shape=st.sampled_from(SHAPES), batch=st.sampled_from([2, 5]),
       seed=st.integers(0, 2**32 - 1))
def test_actnorm_init_standardises_every_channel(shape, batch, seed):
    """After data-dependent init, y = s x + b has mean 0 and std 1 per channel."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(batch,) + shape) * np.exp(rng.uniform(-2, 2, shape[-1]))
         + rng.normal(size=shape[-1]) * 5).astype(np.float32)
    y, _ = bj.actnorm_forward(x, *bj.actnorm_init(x))
    flat = np.asarray(y, np.float64).reshape(-1, shape[-1])
    std = np.float64(x).reshape(-1, shape[-1]).std(0)
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(flat.std(0), std / (std + 1e-6), rtol=1e-4)   # eps = 1e-6
