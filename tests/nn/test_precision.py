"""The mixed-precision policy (genjax/nn/precision.py) on every network that has it: the
U-Net (DDPM), the causal transformer (pixel transformer and token prior), the DCGAN and
the StyleGAN networks. With ``compute_dtype="bfloat16"`` on tiny models at a random
point: parameters (and so gradients and optimizer state) stay float32, outputs and
losses are float32, outputs agree with float32 within a relative error of 2e-2 but are
not identical (bfloat16 is really used), and one-step gradients have a cosine
similarity of at least 0.99 with the float32 gradients. The U-Net, DCGAN and StyleGAN
checks compile the most and run in the slow tier."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import models
from genjax.configs import make_config
from genjax.nn import precision
from genjax.nn.transformer import CausalTransformer
from tests.conftest import perturbed

OUTPUT_RTOL = 2e-2          # ||out_bf16 - out_f32|| / ||out_f32||
GRAD_COSINE = 0.99          # <grad_bf16, grad_f32> / (||grad_bf16|| ||grad_f32||)

F32 = jnp.dtype(jnp.float32)


def _leaf_dtypes(tree):
    return {jnp.dtype(leaf.dtype) for leaf in jax.tree.leaves(tree)}


def _flat(tree):
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def _relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _cosine(g1, g2):
    a, b = _flat(g1), _flat(g2)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _check(outputs, loss, params, build):
    """``build(dtype)`` -> model; ``outputs(model, params)`` -> float array;
    ``loss(model, params)`` -> scalar. Checks the policy of the module docstring."""
    assert _leaf_dtypes(params) == {F32}

    def run(model):     # one compile per dtype: outputs ride along as the auxiliary value
        fn = jax.value_and_grad(lambda p: (loss(model, p), outputs(model, p)), has_aux=True)
        (value, out), grads = jax.jit(fn)(params)
        return value, out, grads

    (l32, out32, g32), (l16, out16, g16) = run(build("float32")), run(build("bfloat16"))
    assert out16.dtype == F32 and out16.shape == out32.shape
    err = _relative_error(out16, out32)
    assert 0.0 < err <= OUTPUT_RTOL, err
    assert l16.dtype == F32 and l32.dtype == F32
    assert _leaf_dtypes(g16) == {F32}
    assert jax.tree.structure(g16) == jax.tree.structure(params)
    assert abs(float(l16) - float(l32)) <= OUTPUT_RTOL * abs(float(l32)) + 1e-6
    cos = _cosine(g16, g32)
    assert cos >= GRAD_COSINE, cos
    assert np.isfinite(_flat(g16)).all()
    return err, cos


def test_compute_dtype_names():
    assert precision.compute_dtype("bfloat16") == jnp.bfloat16
    assert precision.compute_dtype("float32") == jnp.float32
    with pytest.raises(ValueError, match="compute_dtype"):
        precision.compute_dtype("float16")       # would need loss scaling: not offered
    with pytest.raises(ValueError, match="compute_dtype"):
        models.build(make_config("gan", "digits16", model_kwargs=dict(compute_dtype="bf16")).model)


@pytest.mark.slow
def test_unet_ddpm():
    def build(dtype):
        return models.build(make_config("ddpm", "digits16", model_kwargs=dict(
            image_shape=(8, 8, 2), base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
            attention_resolutions=(4,), num_heads=2, compute_dtype=dtype)).model)

    model = build("float32")
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (4, 8, 8, 2)).astype(np.uint8)}
    params = perturbed(jax.jit(model.init)(jax.random.key(0), batch), jax.random.key(1), 0.05)
    x = rng.normal(size=(4, 8, 8, 2)).astype(np.float32)
    t = np.array([0, 10, 500, 999], np.int32)
    _check(lambda m, p: m.net.apply(p["net"], x, t),
           lambda m, p: m.loss(p, batch, jax.random.key(2))[0], params, build)


@pytest.mark.slow
def test_pixel_transformer():
    def build(dtype):
        return models.build(make_config("pixel_transformer", "binarized_digits", model_kwargs=dict(
            image_shape=(4, 4, 1), num_levels=4, dim=32, num_layers=2, num_heads=2,
            compute_dtype=dtype)).model)

    model = build("float32")
    batch = {"image": np.random.default_rng(0).integers(0, 4, (4, 4, 4, 1)).astype(np.uint8)}
    params = perturbed(jax.jit(model.init)(jax.random.key(0), batch), jax.random.key(1), 0.05)
    _check(lambda m, p: m._apply(p, m._inputs(jnp.asarray(batch["image"]).reshape(4, 16, 1))),
           lambda m, p: m.loss(p, batch, jax.random.key(2))[0], params, build)


@pytest.mark.slow
def test_token_prior_transformer_and_its_cache():
    """The token prior's network (class-conditional, next-code cross-entropy): the full
    pass and, in bfloat16, the cached decode steps (keys and values cached in bfloat16)."""
    seq = np.random.default_rng(0).integers(0, 16, (4, 12)).astype(np.int32)
    label = np.array([0, 1, 2, 3], np.int32)

    def build(dtype):
        return CausalTransformer(16, 16, 12, dim=32, num_layers=2, num_heads=2, num_classes=4,
                                 dtype=precision.compute_dtype(dtype))

    def nll(m, p):
        log_p = jax.nn.log_softmax(m.apply(p, seq, label), axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, seq[..., None], axis=-1))

    params = perturbed(jax.jit(build("float32").init)(jax.random.key(0), seq, label),
                       jax.random.key(1), 0.05)
    _check(lambda m, p: m.apply(p, seq, label), nll, params, build)

    net = build("bfloat16")
    cache = net.init_cache(4)
    assert _leaf_dtypes(cache) == {jnp.dtype(jnp.bfloat16)}
    full = np.asarray(jax.jit(build("float32").apply)(params, seq, label))
    decode = jax.jit(lambda p, prev, t, c: net.apply(p, prev, t, c, label,
                                                     method=CausalTransformer.decode))
    steps = []
    for t in range(12):
        out, cache = decode(params, seq[:, max(t - 1, 0)], t, cache)
        assert out.dtype == F32
        steps.append(np.asarray(out))
    assert _relative_error(np.stack(steps, axis=1), full) <= OUTPUT_RTOL


@pytest.mark.slow
def test_dcgan():
    def build(dtype):
        return models.build(make_config("gan", "digits16", model_kwargs=dict(
            channels=8, latent_dim=8, compute_dtype=dtype)).model)

    model = build("float32")
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (4, 16, 16, 1)).astype(np.uint8)}
    params = perturbed(jax.jit(model.init)(jax.random.key(0), batch), jax.random.key(1), 0.05)
    z = rng.normal(size=(4, 8)).astype(np.float32)

    def outputs(m, p):
        fake = m.generate(p, z)
        return jnp.concatenate([fake.ravel(), m._logits(p, fake)])

    def loss(m, p):
        key = jax.random.key(2)
        return m.discriminator_loss(p, batch, key)[0] + m.generator_loss(p, batch, key)[0]

    _check(outputs, loss, params, build)


@pytest.mark.slow
def test_stylegan():
    def build(dtype):
        return models.build(make_config("stylegan", "digits16", model_kwargs=dict(
            image_shape=(8, 8, 1), latent_dim=8, w_dim=8, mapping_layers=2, channels=(8, 8),
            d_channels=(8, 8), mbstd_group=2, compute_dtype=dtype)).model)

    model = build("float32")
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (4, 8, 8, 1)).astype(np.uint8)}
    params = perturbed(jax.jit(model.init)(jax.random.key(0), batch), jax.random.key(1), 0.05)
    z = rng.normal(size=(4, 8)).astype(np.float32)

    def outputs(m, p):
        fake = m.synthesize(p, m.broadcast_ws(m.mapping(p, z)), m.zero_noise(4))
        return jnp.concatenate([fake.ravel(), m._logits(p, fake)])

    def loss(m, p):
        key = jax.random.key(2)
        return (m.discriminator_loss(p, batch, key)[0]
                + m.generator_loss_and_stats(p, batch, key)[0])

    _check(outputs, loss, params, build)
