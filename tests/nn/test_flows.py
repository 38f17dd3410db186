"""Flow layers (genjax/nn/flows.py): data-dependent actnorm, invertibility and log-dets of
every layer at a random (non-identity) parameter point, conditioning."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.core.random import init_key
from genjax.nn import flows
from tests.core.test_bijectors import jacobian_logdet

SHAPE = (4, 4, 2)


def _x(seed=0, shape=SHAPE, batch=3):
    return jax.random.normal(jax.random.key(seed), (batch,) + shape) * 1.5 + 0.3


def _perturb(variables, seed, scale=0.2):
    """Every parameter plus numpy noise (no PRNG compiles), so zero-initialised
    conditioners are not zero."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: p + scale * rng.normal(size=p.shape).astype(np.float32),
                        variables)


# Inits use an RBG key: compiling threefry for every parameter costs more than the layer.
INIT_KEY = init_key(jax.random.key(0))


def check_layer(module, x, *args, seed=1, volume_preserving=False):
    """init on x, perturb, then round trip and per-example log-det == slogdet(J).
    Returns (variables, jitted forward (variables, x, *args) -> (y, log_det), y)."""
    variables = _perturb(jax.jit(module.init)(INIT_KEY, x, *args), seed)

    @jax.jit
    def run(variables, x, *args):
        y, log_det = module.apply(variables, x, *args)
        x_back, inv_log_det = module.apply(variables, y, *args, reverse=True)
        one = [a[:1] for a in args]       # example 0 and its condition
        _, jac = jacobian_logdet(lambda v: module.apply(variables, v, *one), x[0])
        return y, log_det, x_back, inv_log_det, jac

    y, log_det, x_back, inv_log_det, jac = run(variables, x, *args)
    np.testing.assert_allclose(x_back, x, atol=1e-4)
    np.testing.assert_allclose(inv_log_det, -log_det, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(log_det[0], jac, atol=1e-3)
    assert np.allclose(log_det, 0.0) == volume_preserving
    return variables, run, y


def test_actnorm_data_dependent_init_standardises_the_init_batch():
    x = _x(1, batch=32) * jnp.array([0.5, 4.0]) + jnp.array([-2.0, 7.0])
    layer = flows.ActNorm()
    variables = layer.init(INIT_KEY, x)
    y, log_det = layer.apply(variables, x)
    flat = np.asarray(y).reshape(-1, 2)
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(log_det, -16 * np.log(np.asarray(x).reshape(-1, 2).std(0)).sum(),
                               rtol=1e-4)
    check_layer(flows.ActNorm(), x)


@pytest.mark.parametrize("lu", [True, False])
def test_conv1x1(lu):
    check_layer(flows.Conv1x1(lu=lu, seed=3), _x(2, shape=(4, 4, 4)))


def test_lu_conv1x1_starts_as_a_permutation():
    layer = flows.Conv1x1(lu=True, seed=5)
    x = _x(3, shape=(2, 2, 6))
    y, log_det = layer.apply(layer.init(INIT_KEY, x), x)
    np.testing.assert_allclose(np.sort(np.asarray(y), -1), np.sort(np.asarray(x), -1))
    np.testing.assert_array_equal(log_det, 0.0)


SLOW = pytest.mark.slow


@pytest.mark.parametrize("kind,mask", [pytest.param("affine", "checkerboard", marks=SLOW),
                                       ("affine", "channel"),
                                       pytest.param("additive", "channel", marks=SLOW)])
def test_coupling(kind, mask):
    check_layer(flows.Coupling(hidden=8, num_blocks=1, kind=kind, mask=mask), _x(4),
                volume_preserving=kind == "additive")


def test_mlp_coupling_on_flat_data():
    check_layer(flows.Coupling(hidden=8, kind="affine", mask="channel", parity=1),
                _x(5, shape=(2,)))


@pytest.mark.parametrize("cond_shape", [(3, 5), pytest.param((3, 4, 4, 3), marks=SLOW)],
                         ids=["embedding", "feature_map"])
def test_conditional_coupling_and_injector_depend_on_the_condition(cond_shape):
    x = _x(6)
    cond = jax.random.normal(jax.random.key(7), cond_shape)
    for layer in (flows.Coupling(hidden=8, mask="checkerboard"), flows.AffineInjector(hidden=8)):
        variables, run, y = check_layer(layer, x, cond)
        y_other = run(variables, x, cond[::-1])[0]
        assert not np.allclose(y[0], y_other[0], atol=1e-3)
        np.testing.assert_allclose(y[1], y_other[1], atol=1e-6)   # the middle row: same cond


def test_flow_step_is_actnorm_conv_coupling():
    step = flows.FlowStep(hidden=8, mask="channel", conv1x1="lu")
    x = _x(8, shape=(4, 4, 4))
    variables, _, _ = check_layer(step, x)
    assert set(variables["params"]) == {"norm", "mix", "couple"}


def test_multiscale_flow_latent_layout_and_round_trip():
    layers = (("squeeze",), ("step", "channel", 0), ("split",), ("squeeze",),
              ("step", "channel", 1))
    shapes = flows.latent_shapes(SHAPE, layers)
    assert shapes == [(2, 2, 4), (1, 1, 16)]
    assert sum(math.prod(s) for s in shapes) == math.prod(SHAPE)
    flow = flows.MultiScaleFlow(layers, hidden=8, num_classes=3)
    x, y = _x(9), jnp.array([0, 1, 2])

    variables = _perturb(jax.jit(functools.partial(flow.init, method=flow.forward))(
        INIT_KEY, x, y), 10)

    @jax.jit
    def run(x, y):
        z, log_det = flow.apply(variables, x, y, method=flow.forward)
        x_back, inv = flow.apply(variables, z, y, method=flow.inverse, input_shape=SHAPE)
        return z, log_det, x_back, inv

    z, log_det, x_back, inv = run(x, y)
    assert z.shape == (3, math.prod(SHAPE))
    np.testing.assert_allclose(x_back, x, atol=1e-4)
    np.testing.assert_allclose(inv, -log_det, rtol=1e-5)
    with pytest.raises(ValueError, match="class-conditional"):
        jax.eval_shape(lambda: flow.init(INIT_KEY, x, None, method=flow.forward))
