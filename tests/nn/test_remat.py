"""Rematerialisation (``remat=True``): the U-Net's ResBlocks and attention blocks and the
causal transformer's blocks wrapped in ``nn.remat`` have the same parameters, loss and
gradients (dropout on, to 1e-6) as without, the transformer's cached decoding still
works, and the compiled U-Net train step needs less temporary memory
(benchmarks/remat_memory.py, numbers in benchmarks/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn.transformer import CausalTransformer
from genjax.nn.unet import UNet
from tests.conftest import FAST_COMPILE, perturbed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _assert_same_loss_and_grads(loss, params):
    """loss(remat, params) -> scalar: equal values and gradients with and without remat."""
    l0, g0 = jax.jit(jax.value_and_grad(lambda p: loss(False, p)))(params)
    l1, g1 = jax.jit(jax.value_and_grad(lambda p: loss(True, p)))(params)
    np.testing.assert_allclose(float(l1), float(l0), rtol=1e-6, atol=1e-6)
    assert jax.tree.structure(g1) == jax.tree.structure(g0)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-6)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g0)) > 1e-3


@pytest.mark.slow
def test_unet_remat_same_loss_and_gradients():
    kwargs = dict(out_channels=2, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                  attention_resolutions=(4,), num_heads=2, dropout=0.1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
    t = np.array([3, 700], np.int32)
    nets = {r: UNet(**kwargs, remat=r) for r in (False, True)}
    params = jax.jit(nets[False].init)(jax.random.key(0), x, t)
    shapes = jax.eval_shape(nets[True].init, jax.random.key(0), x, t)
    assert jax.tree.structure(shapes) == jax.tree.structure(params)
    params = perturbed(params, jax.random.key(1), 0.05)

    def loss(remat, p):
        out = nets[remat].apply(p, x, t, train=True, rngs={"dropout": jax.random.key(2)})
        return jnp.mean(jnp.square(out - x))

    _assert_same_loss_and_grads(loss, params)


@pytest.mark.slow
def test_transformer_remat_same_loss_gradients_and_decoding():
    seq = np.random.default_rng(0).integers(0, 8, (2, 6)).astype(np.int32)
    nets = {r: CausalTransformer(8, 8, 6, dim=16, num_layers=2, num_heads=2, dropout=0.1,
                                 remat=r) for r in (False, True)}
    params = perturbed(jax.jit(nets[False].init)(jax.random.key(0), seq), jax.random.key(1),
                       0.05)

    def loss(remat, p):
        logits = nets[remat].apply(p, seq, None, True, rngs={"dropout": jax.random.key(2)})
        log_p = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, seq[..., None], axis=-1))

    _assert_same_loss_and_grads(loss, params)
    # Decoding (no backward pass) goes through the wrapped blocks unchanged.
    net = nets[True]
    full = net.apply(params, seq)
    cache = net.init_cache(2)
    for t in range(6):
        out, cache = net.apply(params, seq[:, max(t - 1, 0)], t, cache,
                               method=CausalTransformer.decode)
        np.testing.assert_allclose(np.asarray(out), np.asarray(full[:, t]), atol=1e-5)


def _remat_memory(*overrides):
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "remat_memory.py"), *overrides]
    # XLA's default optimisation level (the session compiles at level 0, tests/conftest.py),
    # as benchmarks/README.md measured it.
    flags = os.environ.get("XLA_FLAGS", "").replace(FAST_COMPILE, "").strip()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAX_PLATFORMS="cpu", XLA_FLAGS=flags, GENJAX_TEST_XLA_OPT="default")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_remat_lowers_unet_train_step_memory():
    """The compiled train step of a small U-Net (16x16x3, widths 8/16, 1 ResBlock per level,
    batch 8; the command of benchmarks/README.md, measured 0.345x): XLA's temporary buffers
    shrink with remat."""
    r = _remat_memory("--config.model.image_shape=(16,16,3)", "--config.model.base_channels=8",
                      "--config.model.channel_mults=(1,2)", "--config.model.num_res_blocks=1",
                      "--config.model.attention_resolutions=(8,)",
                      "--config.training.batch_size=8")
    assert r["backend"] == "cpu" and not r["cse_barrier_expander"]
    assert r["temp_bytes_remat"] < 0.8 * r["temp_bytes"], r
