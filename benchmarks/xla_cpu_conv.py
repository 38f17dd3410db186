"""Why conv nets train slower in XLA:CPU than in PyTorch on 2 cores.

    python benchmarks/xla_cpu_conv.py                 # all cores
    taskset -c 0 python benchmarks/xla_cpu_conv.py    # one core

Prints (1) a 3x3 convolution's forward time and a 2048^2 matmul's GFLOP/s:
the matmul scales with cores, the convolution does not; (2) a ResBlock
forward iterated in a Python loop over a jitted call, in ``lax.scan`` and in
``lax.fori_loop``; (3) a VAE train step called directly vs inside a rolled
``lax.scan`` of length 1.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.configs import make_config
from genjax.models import build
from genjax.nn.autoencoder import ResBlock


def timed(fn, *args, repeat=20):
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeat


def main():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((256, 8, 8, 64), np.float32))
    w = jnp.asarray(rng.random((3, 3, 64, 32), np.float32))
    conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    a = jnp.asarray(rng.random((2048, 2048), np.float32))
    matmul = jax.jit(lambda a: a @ a)
    print(f"conv 3x3 [256, 8, 8, 64] -> 32: {timed(conv, x, w) * 1e3:.2f} ms")
    print(f"matmul 2048^2: {2 * 2048**3 / timed(matmul, a, repeat=5) / 1e9:.0f} GFLOP/s")

    block = ResBlock()
    h = jnp.asarray(rng.random((64, 8, 8, 32), np.float32))
    p = block.init(jax.random.key(0), h)
    one = jax.jit(lambda p, h: block.apply(p, h) * 0.5)

    def python_loop(p, h):
        for _ in range(50):
            h = one(p, h)
        return h

    scan = jax.jit(lambda p, h: jax.lax.scan(
        lambda c, _: (block.apply(p, c) * 0.5, None), h, None, length=50)[0])
    fori = jax.jit(lambda p, h: jax.lax.fori_loop(0, 50, lambda i, c: block.apply(p, c) * 0.5, h))
    for name, fn in (("python loop", python_loop), ("lax.scan", scan), ("fori_loop", fori)):
        print(f"ResBlock forward x50, {name}: {timed(fn, p, h, repeat=3) / 50 * 1e3:.2f} ms/iter")

    config = make_config("vae", "digits", model_kwargs=dict(num_levels=17))
    model = build(config.model)
    batch = {"image": jnp.asarray(rng.integers(0, 17, (64, 8, 8, 1)), jnp.uint8)}
    params = model.init(jax.random.key(0), batch)
    opt = optax.adam(1e-3)

    def step(carry, batch):
        params, opt_state = carry
        grads = jax.grad(lambda p: model.loss(p, batch, jax.random.key(0))[0])(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    direct = jax.jit(lambda c, b: step(c, b)[0])
    rolled = jax.jit(lambda c, b: jax.lax.scan(
        step, c, jax.tree.map(lambda x: x[None], b))[0])
    carry = (params, opt.init(params))
    print(f"VAE train step, direct: {timed(direct, carry, batch) * 1e3:.1f} ms")
    rolled_s = timed(rolled, carry, batch, repeat=5)
    print(f"VAE train step, in a rolled lax.scan: {rolled_s * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
