"""Tests of genjax/nn/unet.py: shapes, zero initialisation, conditioning, mixed precision."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn.unet import (AttentionBlock, CrossAttentionBlock, MLPScoreNet, UNet,
                            sinusoidal_embedding)

# Tiny U-Net on 8x8x2 inputs: levels of side 8 and 4, attention at 4 (the lowest level).
TINY = dict(out_channels=2, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
            attention_resolutions=(4,), num_heads=2, num_classes=3)


# Parameter noise is drawn with numpy and inits use an RBG key: compiling threefry for
# the ~100 leaves of even a tiny U-Net costs several times more than the network.
INIT_KEY = functools.partial(jax.random.key, impl="unsafe_rbg")


def _random_like(params, seed, scale=0.3):
    """A random point: N(0, scale^2 / fan_in) per kernel entry, N(0, scale^2) elsewhere."""
    rng = np.random.default_rng(seed)

    def draw(p):
        fan_in = int(np.prod(p.shape[:-1])) if len(p.shape) >= 2 else 1
        return jnp.asarray(rng.normal(size=p.shape) * scale / np.sqrt(fan_in), jnp.float32)

    return jax.tree.map(draw, params)


def _perturb(params, seed, scale=0.3):
    """params + noise on every leaf (so no zero-initialised branch is zero any more)."""
    return jax.tree.map(jnp.add, params, _random_like(params, seed, scale))


def _assert_float32(params):
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(params)}
    assert dtypes == {jnp.dtype(jnp.float32)}, dtypes


@pytest.fixture(scope="module")
def tiny():
    """(module, params at init, perturbed params, jitted apply, inputs x, t, y)."""
    model = UNet(**TINY)
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 2)).astype(np.float32)
    t = np.array([0, 10, 500, 999], np.int32)
    y = np.array([0, 1, 2, 3], np.int32)
    params = jax.jit(model.init)(INIT_KEY(0), x, t, y)
    return model, params, _perturb(params, seed=1), jax.jit(model.apply), x, t, y


def test_sinusoidal_embedding():
    t = np.array([0, 1, 7, 999])
    emb = jax.jit(sinusoidal_embedding, static_argnums=1)(t, 16)
    assert emb.shape == (4, 16) and emb.dtype == jnp.float32
    emb = np.asarray(emb)
    np.testing.assert_array_equal(emb[0, :8], 0.0)  # sin(0)
    np.testing.assert_array_equal(emb[0, 8:], 1.0)  # cos(0)
    np.testing.assert_allclose(emb[:, 0], np.sin(t), atol=1e-4)  # frequency w_0 = 1
    np.testing.assert_allclose(emb[:, 7], np.sin(t * 10000.0 ** (-7 / 8)), atol=1e-4)
    np.testing.assert_allclose(np.square(emb[:, :8]) + np.square(emb[:, 8:]), 1.0, atol=1e-5)
    dists = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    assert np.all(dists + np.eye(4) > 1e-2)  # distinct rows for distinct t
    # Real-valued t is embedded as given; odd widths are padded with a zero column.
    odd = np.asarray(jax.jit(sinusoidal_embedding, static_argnums=1)(np.array([0.25, 0.5]), 7))
    assert odd.shape == (2, 7)
    np.testing.assert_array_equal(odd[:, -1], 0.0)
    assert np.abs(odd[0] - odd[1]).max() > 1e-2


@pytest.mark.parametrize("side,mults,classes", [(8, (1, 2), 0), (8, (1, 2), 5),
                                                (16, (1, 2, 2), 0), (16, (1, 2, 2), 5)])
def test_output_shape_and_dtype(side, mults, classes):
    model = UNet(out_channels=3, base_channels=8, channel_mults=mults, num_res_blocks=1,
                 attention_resolutions=(8,), num_heads=2, num_classes=classes)
    x = jnp.zeros((2, side, side, 1))
    t = jnp.zeros((2,), jnp.int32)
    y = jnp.array([0, classes]) if classes else None
    params = jax.eval_shape(model.init, jax.random.key(0), x, t, y)
    out = jax.eval_shape(model.apply, params, x, t, y)
    assert out.shape == (2, side, side, 3) and out.dtype == jnp.float32
    _assert_float32(params)


def test_attention_placed_at_feature_map_sides():
    # 16x16 input, levels of side 16, 8, 4: attention at 8 is the second level, down
    # (num_res_blocks blocks) and up (num_res_blocks + 1 blocks), plus the middle block.
    model = UNet(out_channels=1, base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=2,
                 attention_resolutions=(8,), num_heads=2)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 1)),
                            jnp.zeros((1,)))["params"]
    assert sorted(k for k in params if "attn" in k) == [
        "down_1_attn_0", "down_1_attn_1", "mid_attn", "up_1_attn_0", "up_1_attn_1",
        "up_1_attn_2"]


def test_bad_input_size_raises():
    model = UNet(out_channels=1, base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1)
    with pytest.raises(ValueError, match=r"divisible by 2\*\*\(len\(channel_mults\) - 1\) = 4"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 12, 10, 1)), jnp.zeros((1,)))


def test_zero_output_at_init(tiny):
    model, params, _, apply, x, t, y = tiny
    _assert_float32(params)
    out = apply(params, x, t, y)
    assert out.shape == x.shape and out.dtype == jnp.float32
    np.testing.assert_array_equal(out, 0.0)


def test_output_depends_on_x_t_and_y(tiny):
    model, _, params, apply, x, t, y = tiny
    out = np.asarray(apply(params, x, t, y))
    assert np.all(np.isfinite(out))
    diff = lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    # x: a different input (same t, y).
    assert diff(apply(params, x[::-1], t, y)[::-1], out) > 1e-3
    # t: each example with another timestep.
    assert diff(apply(params, x, t[::-1], y), out) > 1e-3
    assert diff(apply(params, x, t + 1, y), out) > 1e-4
    # y: every pair of distinct classes (incl. the null class 3) gives another output.
    xs = np.broadcast_to(x[:1], x.shape)
    ts = np.broadcast_to(t[:1], t.shape)
    per_class = apply(params, xs, ts, y)  # y = 0, 1, 2, null
    for i in range(4):
        for j in range(i):
            assert diff(per_class[i], per_class[j]) > 1e-3
    # y = None is the null class num_classes.
    null = np.full(y.shape, model.num_classes)
    np.testing.assert_allclose(apply(params, x, t, None), apply(params, x, t, null), atol=1e-6)


def test_bfloat16_matches_float32(tiny):
    model, params, perturbed, apply, x, t, y = tiny
    bf16 = UNet(**TINY, dtype=jnp.bfloat16)
    params_bf16 = jax.eval_shape(bf16.init, INIT_KEY(1), x, t, y)
    _assert_float32(params_bf16)
    assert jax.tree.structure(params_bf16) == jax.tree.structure(params)
    out16 = jax.jit(bf16.apply)(perturbed, x, t, y)
    out32 = apply(perturbed, x, t, y)
    assert out16.dtype == jnp.float32 and out16.shape == out32.shape
    out16, out32 = np.asarray(out16), np.asarray(out32)
    err = np.linalg.norm(out16 - out32) / np.linalg.norm(out32)
    assert err < 0.05, err


def test_attention_block_is_permutation_equivariant():
    # Self-attention without positional encodings: permuting the H*W positions of the
    # input permutes the output the same way; with non-zero weights it mixes positions.
    block = AttentionBlock(num_heads=2, norm_groups=4)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
    params = _random_like(jax.eval_shape(block.init, INIT_KEY(0), x), seed=3, scale=1.0)
    perm = rng.permutation(16)
    permute = lambda a: np.asarray(a).reshape(2, 16, 8)[:, perm].reshape(2, 4, 4, 8)
    apply = jax.jit(block.apply)
    out = apply(params, x)
    np.testing.assert_allclose(apply(params, permute(x)), permute(out), atol=1e-5)
    # The output at position (0, 0) depends on the input at the opposite corner.
    grad = jax.jit(jax.grad(lambda xx: apply(params, xx)[0, 0, 0].sum()))(x)
    assert float(np.abs(np.asarray(grad)[0, 3, 3]).sum()) > 1e-4


def test_mlp_score_net():
    net = MLPScoreNet(dim=2, hidden=16, num_blocks=2, num_classes=4)
    x = np.random.default_rng(4).normal(size=(5, 2)).astype(np.float32)
    t = np.arange(5, dtype=np.int32) * 100
    y = np.arange(5, dtype=np.int32)
    params = _random_like(jax.eval_shape(net.init, INIT_KEY(0), x, t, y), seed=5, scale=1.0)
    apply = jax.jit(net.apply)
    out = apply(params, x, t, y)
    assert out.shape == (5, 2) and out.dtype == jnp.float32
    null = np.full((5,), 4, np.int32)
    np.testing.assert_allclose(apply(params, x, t, None), apply(params, x, t, null), atol=1e-6)
    diff = lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    assert diff(apply(params, x, t, null), out) > 1e-4
    assert diff(apply(params, x, t + 1, y), out) > 1e-5
    assert diff(apply(params, x[::-1], t, y), out) > 1e-4
    with pytest.raises(ValueError, match="num_classes = 0"):
        jax.eval_shape(MLPScoreNet(dim=2).init, INIT_KEY(0), x, t, y)


# ----------------------------------------------------------- cross-attention (text)
def _xattn_inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 4, 4, 8)).astype(np.float32)
    context = rng.normal(size=(3, 5, 6)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)  # last: empty
    return x, context, mask


@pytest.fixture(scope="module")
def xattn():
    """(block, params at init, perturbed params) of a CrossAttentionBlock, 2 heads."""
    block = CrossAttentionBlock(num_heads=2)
    x, context, mask = _xattn_inputs()
    params = jax.jit(block.init)(INIT_KEY(0), x, context, mask)
    return block, params, _perturb(params, seed=3)


def test_cross_attention_is_the_identity_at_init(xattn):
    """The zero-initialised output projection: out = x exactly at initialisation."""
    block, params, _ = xattn
    x, context, mask = _xattn_inputs()
    np.testing.assert_array_equal(np.asarray(block.apply(params, x, context, mask)), x)


def test_cross_attention_ignores_the_states_at_padded_positions(xattn):
    """Replacing the text states where mask is False (the padding, and every position of
    the empty caption) leaves the output unchanged; replacing a real token's state does
    not."""
    block, _, params = xattn
    x, context, mask = _xattn_inputs()
    apply = jax.jit(block.apply)
    out = np.asarray(apply(params, x, context, mask))
    other = np.where(mask[..., None], context, 100.0 * _xattn_inputs(seed=1)[1])
    np.testing.assert_allclose(np.asarray(apply(params, x, other, mask)), out, atol=1e-5)
    assert np.all(np.isfinite(out))
    real = context.copy()
    real[0, 1] += 3.0                                  # a real token of the first caption
    changed = np.asarray(apply(params, x, real, mask))
    assert np.abs(changed[0] - out[0]).max() > 1e-3
    np.testing.assert_allclose(changed[1:], out[1:], atol=1e-6)


def test_cross_attention_changes_with_the_text(xattn):
    """Two different captions (states) give different outputs for the same image."""
    block, _, params = xattn
    x, context, mask = _xattn_inputs()
    full = np.ones_like(mask)
    a = np.asarray(block.apply(params, x, context, full))
    b = np.asarray(block.apply(params, x, _xattn_inputs(seed=2)[1], full))
    assert np.abs(a - b).max() > 1e-2


def test_text_unet_is_zero_at_init_and_needs_its_context():
    """A U-Net with cross-attention outputs exactly zero at init (every branch and the
    output conv zero-initialised) and refuses to run without the text (or with text
    when it has no cross-attention)."""
    model = UNet(**dict(TINY, num_classes=0), cross_attention=True)
    x, context, mask = _xattn_inputs()
    x = x[..., :2].repeat(2, axis=1).repeat(2, axis=2)          # [3, 8, 8, 2]
    ctx = (context[:, 0], context, mask)
    t = np.array([1, 2, 3], np.int32)
    params = jax.jit(model.init)(INIT_KEY(0), x, t, context=ctx)
    assert "mid_xattn" in params["params"] and "up_1_xattn_0" in params["params"]
    np.testing.assert_array_equal(np.asarray(model.apply(params, x, t, context=ctx)), 0.0)
    with pytest.raises(ValueError, match="cross_attention"):
        model.apply(params, x, t)
    with pytest.raises(ValueError, match="cross_attention"):
        UNet(**TINY).init(INIT_KEY(0), x, t, context=ctx)
