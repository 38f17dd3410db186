"""Pix2Pix and CycleGAN (genjax/models/translation.py), each property against something
computed independently: the PatchGAN's receptive field from the gradient, the U-Net's skips
with the bottleneck cut, the losses in numpy from the networks' raw outputs, the history pool
from known arrays, split metrics in numpy, and short runs through the trainer (a bit-exact
resume for CycleGAN, pool state included)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import models
from genjax.configs import load_sibling
from genjax.core import likelihoods as lk
from genjax.core.random import init_key
from genjax.data import digits
from genjax.models.translation import CycleGAN, PatchDiscriminator, ResNetGenerator
from genjax.train import step as step_lib
from genjax.train.trainer import _next_batches, build_run, initial_state, train_and_evaluate
from tests.train.test_trainer import assert_resumes_bit_exactly, assert_trees_equal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {"pix2pix": dict(channels=(4, 6), disc_channels=(4,)),
        # The default tier's CycleGAN: a one-level U-Net for G and F (the ResNet generator costs
        # 3x the compile time; it has its own test, and the slow tier trains it).
        "cyclegan": dict(generator="unet", channels=(4,), disc_channels=(4,), pool_size=4)}
RESNET = dict(generator="resnet", channels=(4, 6), num_res_blocks=1)


def _config(name: str, **model):
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), f"{name}_edges2digits")
    with config.unlocked():
        config.model.update(**dict(TINY[name], **model))
        config.training.update(batch_size=8, num_steps=4, steps_per_call=1, log_every=2,
                               checkpoint_every=2, num_sample_images=0, ema_decay=0.9,
                               progress=False)
    return config


def _model(name: str, **model):
    return models.build(_config(name, **model).model)


def _batch(n: int = 8, start: int = 0) -> dict:
    """n examples of the edges2digits test split (8: every compiled function sees one shape)."""
    test = digits.edges2digits("test")
    return {k: np.asarray(v[start:start + n]) for k, v in test.items()}


def _sym(levels) -> np.ndarray:
    """Levels 0..255 -> [-1, 1] (float32 for the networks)."""
    return np.asarray(lk.to_symmetric(levels, 256))


def _levels(values) -> np.ndarray:
    return np.clip(np.round((np.asarray(values, np.float64) + 1.0) * 127.5), 0, 255)


def _softplus(v) -> np.ndarray:
    return np.logaddexp(0.0, np.asarray(v, np.float64))


def _init(model, seed: int = 0):
    """Params as the trainer makes them (an rbg key, a batch of 8: one compiled init)."""
    return jax.jit(model.init)(init_key(jax.random.key(seed)), _batch())


@pytest.fixture(scope="module")
def pix2pix():
    model = _model("pix2pix")
    return model, _init(model)


@pytest.fixture(scope="module")
def cyclegan():
    model = _model("cyclegan")
    return model, _init(model)


# ------------------------------------------------------------------------- PatchGAN
def _window(o: int, strides, kernel: int, size: int) -> tuple[int, int]:
    """Input rows that output row o of a stack of k x k convs (padding 1) can see, clipped."""
    lo = hi = o
    for s in reversed(strides):
        lo, hi = s * lo - 1, s * hi - 1 + kernel - 1
    return max(lo, 0), min(hi, size - 1)


@pytest.mark.parametrize("channels,kernel,size", [
    ((4,), 3, 16),                                   # the configs' PatchGAN, at a tiny width
    pytest.param((4,), 4, 32, marks=pytest.mark.slow),
    pytest.param((3, 4), 3, 32, marks=pytest.mark.slow)])
def test_patchgan_logit_sees_only_its_receptive_field(channels, kernel, size):
    net = PatchDiscriminator(channels, kernel)
    x = jax.random.normal(jax.random.key(0), (1, size, size, 2))
    params = jax.jit(net.init)(jax.random.key(1), x)
    strides = [2] * len(channels) + [1, 1]
    grid = size
    for s in strides:
        grid = (grid + 2 - kernel) // s + 1
    assert net.apply(params, x).shape == (1, grid, grid)
    lo, hi = 0, 0                                   # unclipped window of logit 0
    for s in reversed(strides):
        lo, hi = s * lo - 1, s * hi - 1 + kernel - 1
    assert hi - lo + 1 == 1 + (kernel - 1) * (3 * 2 ** len(channels) - 1) < size
    jac = jax.jit(jax.jacrev(lambda v: net.apply(params, v)[0]))(x)  # [g, g, 1, size, size, 2]
    support = np.abs(np.asarray(jac)[:, :, 0]).sum(-1) > 0      # [g, g, size, size]
    for i in range(grid):
        for j in range(grid):
            rows = np.flatnonzero(support[i, j].any(1))
            cols = np.flatnonzero(support[i, j].any(0))
            assert (rows.min(), rows.max()) == _window(i, strides, kernel, size)
            assert (cols.min(), cols.max()) == _window(j, strides, kernel, size)
            # Nothing outside the window, everything inside it (generic random weights).
            r0, r1 = _window(i, strides, kernel, size)
            c0, c1 = _window(j, strides, kernel, size)
            assert support[i, j].sum() == (r1 - r0 + 1) * (c1 - c0 + 1)


# --------------------------------------------------------------------------- Pix2Pix
def test_unet_output_shape_and_skip_connections(pix2pix):
    model, params = pix2pix
    x = jnp.asarray(_sym(_batch()["source"]))
    generate = jax.jit(model.generate)
    out = generate(params, x)
    assert out.shape == (8, 16, 16, 1) and float(jnp.max(jnp.abs(out))) < 1.0
    gp = params["generator"]["params"]
    # up_i reads up_{i+1}'s output concatenated with down_i's (the skip): twice the width.
    assert [gp[f"up_{i}"]["kernel"].shape[2] for i in range(2)] == [4 + 4, 6]
    # Cut the bottleneck: the innermost conv outputs zeros whatever x is. Without skips the
    # output would then be one constant image; through the skips it still follows x.
    cut = jax.tree.map(lambda v: v, params)
    cut["generator"]["params"]["down_1"] = jax.tree.map(jnp.zeros_like, gp["down_1"])
    out = np.asarray(generate(cut, x))
    assert np.abs(out - out[:1]).max() > 1e-3
    grad = jax.jit(jax.grad(lambda v: jnp.sum(model.generate(cut, v))))(x)
    assert float(jnp.max(jnp.abs(grad[0]))) > 0


@pytest.mark.slow
def test_dropout_makes_samples_random_and_translate_deterministic():
    model = _model("pix2pix", channels=(4, 6, 6), dropout=0.5)   # dropout on up_1 only
    params = _init(model)
    x = jnp.asarray(_sym(_batch()["source"]))
    generate = jax.jit(model.generate)
    plain, a, b = generate(params, x), generate(params, x, jax.random.key(0)), generate(
        params, x, jax.random.key(1))
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3 and float(jnp.max(jnp.abs(a - plain))) > 1e-3
    sample = jax.jit(model.sample, static_argnums=2)
    s0, s1 = sample(params, jax.random.key(0), 8), sample(params, jax.random.key(1), 8)
    assert np.any(np.asarray(s0) != np.asarray(s1))
    sources = digits.edges2digits("test")["source"][:8]
    np.testing.assert_allclose(jax.jit(model.translate)(params, sources),    # no dropout
                               model._levels(plain), atol=1)


def test_l1_only_baseline_drops_the_discriminator_and_its_loss_is_exactly_l1(pix2pix):
    model = _model("pix2pix", adversarial_weight=0.0)
    assert [p.label for p in model.update_rule().phases] == ["generator"]
    params, batch = pix2pix[1], _batch()
    loss, metrics = jax.jit(model.loss)(params, batch, jax.random.key(2))
    fake = np.asarray(_applies(pix2pix[0])[0](params["generator"], _sym(batch["source"])))
    expected = 100.0 * np.mean(np.abs(_sym(batch["image"]).astype(np.float64) - fake))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["l1"], expected / 100.0, rtol=1e-5)


def test_pix2pix_losses_average_the_patch_logits(pix2pix):
    model, params = pix2pix
    assert [p.label for p in model.update_rule().phases] == ["discriminator", "generator"]
    batch = _batch()
    x, y = _sym(batch["source"]), _sym(batch["image"])
    generator, discriminator = _applies(model)
    fake = np.asarray(generator(params["generator"], x))

    def logits(target):
        return np.asarray(discriminator(params["discriminator"], np.concatenate([x, target], -1)))

    real_f, fake_f = logits(y), logits(fake)
    assert real_f.shape == (8, 8, 8)                     # 11x11 patches of 16x16 images
    d_loss, d_metrics = jax.jit(model.discriminator_loss)(params, batch, jax.random.key(3))
    np.testing.assert_allclose(
        d_loss, 0.5 * (np.mean(_softplus(-real_f)) + np.mean(_softplus(fake_f))), rtol=1e-5)
    np.testing.assert_allclose(d_metrics["accuracy"],
                               (np.sum(real_f > 0) + np.sum(fake_f < 0)) / (2 * real_f.size))
    g_loss, g_metrics = jax.jit(model.generator_loss)(params, batch, jax.random.key(3))
    np.testing.assert_allclose(g_metrics["adversarial"], np.mean(_softplus(-fake_f)), rtol=1e-5)
    expected = np.mean(_softplus(-fake_f)) + 100.0 * np.mean(np.abs(y - fake))
    np.testing.assert_allclose(g_loss, expected, rtol=1e-5)


# -------------------------------------------------------------------------- CycleGAN
@functools.lru_cache(maxsize=None)
def _applies(model):
    """The model's generator and discriminator ``apply``, jitted once per model."""
    generator = model.net if isinstance(model, CycleGAN) else model.generator
    return jax.jit(generator.apply), jax.jit(model.discriminator.apply)


def _cycle_parts(model, params):
    """G, F, D_X, D_Y as numpy functions, straight from the Flax modules."""
    net, disc = _applies(model)

    def numpy_fn(fn, key):
        return lambda v: np.asarray(fn(params[key], jnp.asarray(v, jnp.float32)), np.float64)

    return (numpy_fn(net, "G"), numpy_fn(net, "F"), numpy_fn(disc, "D_X"),
            numpy_fn(disc, "D_Y"))


def test_cyclegan_training_is_unpaired(cyclegan):
    model = cyclegan[0]
    batch = _batch()
    x, y = model._unpaired(batch)
    np.testing.assert_array_equal(x, _sym(batch["source"]))
    partner = np.arange(8) ^ 1                           # y_i is example (i xor 1)'s digit
    assert np.all(partner != np.arange(8))
    np.testing.assert_array_equal(y, _sym(batch["image"])[partner])
    with pytest.raises(ValueError, match="even"):
        model._unpaired(_batch(7))


def test_cyclegan_generator_loss_cycle_identity_and_least_squares(cyclegan):
    (model, params), batch = cyclegan, _batch()
    G, F, D_X, D_Y = _cycle_parts(model, params)
    x, y = _sym(batch["source"]), _sym(batch["image"])[np.arange(8) ^ 1]
    fy, fx = G(x), F(y)
    cycle = np.mean(np.abs(F(fy) - x)) + np.mean(np.abs(G(fx) - y))
    identity = np.mean(np.abs(G(y) - y)) + np.mean(np.abs(F(x) - x))
    adv_g = np.mean((D_Y(fy) - 1) ** 2)      # the reference's MSE
    adv_f = np.mean((D_X(fx) - 1) ** 2)
    loss, (metrics, stats) = jax.jit(model.generator_loss)(params, batch, jax.random.key(0))
    np.testing.assert_allclose(metrics["cycle"], cycle, rtol=1e-5)
    np.testing.assert_allclose(metrics["identity"], identity, rtol=1e-5)
    np.testing.assert_allclose(metrics["adversarial_g"], adv_g, rtol=1e-5)
    np.testing.assert_allclose(metrics["adversarial_f"], adv_f, rtol=1e-5)
    np.testing.assert_allclose(loss, adv_g + adv_f + 10.0 * cycle + 5.0 * identity, rtol=1e-5)
    # The phase hands update_state this batch's fakes for the pool (P = 4 of B = 8, slots
    # count + i = i); the step calls update_state after phases declared with_stats.
    np.testing.assert_allclose(stats["y"], fy[:4], atol=1e-6)
    np.testing.assert_allclose(stats["x"], fx[:4], atol=1e-6)
    assert [(p.label, p.with_stats) for p in model.update_rule().phases] == [
        ("discriminator", False), ("generator", True)]
    # The discriminators, pool empty: fakes are the current G(x) and F(y).
    d_loss, d_metrics = jax.jit(model.discriminator_loss)(params, batch, jax.random.key(1))
    d_y = 0.5 * np.mean((D_Y(y) - 1) ** 2) + 0.5 * np.mean(D_Y(fy) ** 2)
    d_x = 0.5 * np.mean((D_X(x) - 1) ** 2) + 0.5 * np.mean(D_X(fx) ** 2)
    np.testing.assert_allclose(d_metrics["loss_y"], d_y, rtol=1e-5)
    np.testing.assert_allclose(d_loss, d_x + d_y, rtol=1e-5)


def _known_pool(model, params, count: int):
    """Pools whose slot k is the constant image k / 10 (x) and -k / 10 (y)."""
    size = model.config.pool_size
    values = np.arange(size, dtype=np.float32)[:, None, None, None] / 10
    pool = np.broadcast_to(values, (size, 16, 16, 1))
    state = {"pool_x": jnp.asarray(pool), "pool_y": jnp.asarray(-pool),
             "pool_count": jnp.asarray(count, jnp.int32)}
    return dict(params, state=state)


def test_discriminator_fakes_are_half_current_half_pool(cyclegan):
    model = cyclegan[0]                                # P = 4
    current = jnp.full((8, 16, 16, 1), -0.5)
    pool = jnp.asarray(np.broadcast_to(np.arange(4.0)[:, None, None, None] / 10, (4, 16, 16, 1)),
                       jnp.float32)
    mix = jax.jit(model.mix_with_pool)
    for count, allowed in ((0, []), (3, [0.0, 0.1, 0.2]), (4, np.arange(4) / 10),
                           (40, np.arange(4) / 10)):
        seen = set()
        for seed in range(4):
            mixed = np.asarray(mix(current, pool, jnp.int32(count), jax.random.key(seed)))
            flat = mixed.reshape(8, -1)
            assert np.all(flat == flat[:, :1])           # each row is one whole image
            rows = flat[:, 0]
            assert np.all(rows[0::2] == -0.5)            # even rows: the current fakes
            if not count:
                assert np.all(rows[1::2] == -0.5)        # empty pool: all current
                continue
            odd = rows[1::2]
            assert all(np.isclose(v, allowed).any() for v in odd), (count, odd)
            seen.update(np.round(odd, 3))
        if count:
            assert len(seen) > 1                         # drawn, not one fixed slot
    # The discriminator phase feeds D exactly these mixtures (keys k_x, k_y = split(rng)).
    params = _known_pool(model, cyclegan[1], count=4)
    batch, rng = _batch(), jax.random.key(5)
    G, F, D_X, D_Y = _cycle_parts(model, params)
    x, y = _sym(batch["source"]), _sym(batch["image"])[np.arange(8) ^ 1]
    k_x, k_y = jax.random.split(rng)
    state, four = params["state"], jnp.int32(4)
    fake_y = mix(jnp.asarray(G(x), jnp.float32), state["pool_y"], four, k_y)
    fake_x = mix(jnp.asarray(F(y), jnp.float32), state["pool_x"], four, k_x)
    assert np.all(np.ptp(np.asarray(fake_y)[1::2].reshape(4, -1), 1) == 0)   # pool images
    d_y = 0.5 * np.mean((D_Y(y) - 1) ** 2) + 0.5 * np.mean(D_Y(fake_y) ** 2)
    d_x = 0.5 * np.mean((D_X(x) - 1) ** 2) + 0.5 * np.mean(D_X(fake_x) ** 2)
    loss, _ = jax.jit(model.discriminator_loss)(params, batch, rng)
    np.testing.assert_allclose(loss, d_x + d_y, rtol=1e-5)


@pytest.mark.parametrize("batch_size,count", [(2, 1), (6, 3)])
def test_update_state_writes_the_new_fakes_into_the_ring(cyclegan, batch_size, count):
    model = cyclegan[0]                                # P = 4
    params = _known_pool(model, cyclegan[1], count)
    before = jax.device_get(params["state"])
    fx = np.broadcast_to(np.arange(1.0, batch_size + 1)[:, None, None, None],
                         (batch_size, 16, 16, 1))
    stats = jax.jit(model.pool_stats)(params, jnp.asarray(fx), jnp.asarray(-fx))
    new, metrics = jax.jit(model.update_state)(params, stats)
    written = min(batch_size, 4)
    expected_x = np.array(before["pool_x"])
    for i in range(written):                           # example i -> slot (count + i) mod P
        expected_x[(count + i) % 4] = fx[i]
    np.testing.assert_array_equal(new["state"]["pool_x"], expected_x)
    expected_y = np.array(before["pool_y"])
    for i in range(written):
        expected_y[(count + i) % 4] = -fx[i]
    np.testing.assert_array_equal(new["state"]["pool_y"], expected_y)
    assert int(new["state"]["pool_count"]) == count + written
    assert float(metrics["pool_filled"]) == min(count + written, 4)
    assert_trees_equal(new["G"], params["G"])          # only the state changes


def test_resnet_generator_residual_blocks_add_to_their_input():
    """A residual block whose last conv is zero is the identity: the network then equals the
    one without the block, given the same other weights."""
    x = jnp.asarray(_sym(_batch()["image"]))
    one, none = ResNetGenerator((4, 6), 1, 1), ResNetGenerator((4, 6), 1, 0)
    params = jax.jit(one.init)(init_key(jax.random.key(0)), x)["params"]
    out = jax.jit(one.apply)({"params": params}, x)
    assert out.shape == (8, 16, 16, 1) and float(jnp.max(jnp.abs(out))) < 1.0
    # Conv_0: 7x7 in, Conv_1: stride 2, Conv_2/Conv_3: the block, Conv_4: 7x7 out.
    params["Conv_3"] = jax.tree.map(jnp.zeros_like, params["Conv_3"])
    plain = {"Conv_0": params["Conv_0"], "Conv_1": params["Conv_1"],
             "ConvTranspose_0": params["ConvTranspose_0"], "Conv_2": params["Conv_4"]}
    np.testing.assert_allclose(jax.jit(one.apply)({"params": params}, x),
                               jax.jit(none.apply)({"params": plain}, x), atol=1e-6)


# ------------------------------------------------------------------ training runs
@pytest.mark.slow
def test_a_cyclegan_step_writes_its_generator_fakes_into_the_pool():
    config = _config("cyclegan")
    model, optimizer, it, info, (tcfg, _, _) = build_run(config)
    state = initial_state(config, model, optimizer, info)
    first = jax.device_get(state.params)
    batch = next(it)
    fn = step_lib.make_train_step(model, optimizer, tcfg.ema_decay)
    new, metrics = fn(state, {k: v[None] for k, v in batch.items()})
    G, F, _, _ = _cycle_parts(model, first)           # the generators before the step
    x, y = _sym(batch["source"]), _sym(batch["image"])[np.arange(8) ^ 1]
    pool = jax.device_get(new.params["state"])
    np.testing.assert_allclose(pool["pool_y"], G(x)[:4], atol=1e-5)   # P = 4 of B = 8
    np.testing.assert_allclose(pool["pool_x"], F(y)[:4], atol=1e-5)
    assert int(pool["pool_count"]) == 4 and float(metrics["generator_pool_filled"][0]) == 4
    assert_trees_equal(new.ema_params["state"], new.params["state"])
    assert_trees_equal(new.ema_params["D_Y"], new.params["D_Y"])      # the EMA follows G, F


@pytest.mark.slow
@pytest.mark.parametrize("adversarial_weight", [1.0, 0.0])
def test_pix2pix_trains_through_the_trainer(tmp_path, adversarial_weight):
    config = _config("pix2pix", adversarial_weight=adversarial_weight)
    model, optimizer, _, info, _ = build_run(config)
    start = jax.device_get(initial_state(config, model, optimizer, info).params)
    state = train_and_evaluate(config, str(tmp_path))
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [m["step"] for m in lines] == [2, 4]
    assert all(np.isfinite(v) for m in lines for v in m.values())
    loss = "generator_loss" if adversarial_weight else "loss"
    assert loss in lines[-1]
    moved = not np.array_equal(jax.tree.leaves(state.params["discriminator"])[0],
                               jax.tree.leaves(start["discriminator"])[0])
    assert moved == bool(adversarial_weight)            # L1-only: D is never updated
    assert not np.array_equal(jax.tree.leaves(state.params["generator"])[0],
                              jax.tree.leaves(start["generator"])[0])


@pytest.mark.slow
def test_cyclegan_trains_and_resumes_bit_exactly(tmp_path, monkeypatch):
    config = _config("cyclegan", **RESNET)                         # the configs' generator
    reference = train_and_evaluate(config, str(tmp_path / "ref"))
    lines = [json.loads(line) for line in open(tmp_path / "ref" / "metrics.jsonl")]
    assert all(np.isfinite(v) for m in lines for v in m.values())
    assert {"discriminator_loss", "generator_cycle", "generator_pool_filled"} <= set(lines[-1])
    assert int(reference.params["state"]["pool_count"]) == 16      # 4 steps x min(B, P)
    assert_resumes_bit_exactly(config, reference, tmp_path, monkeypatch)


def _parallel_run(parallel: str):
    """Three single-step calls of the tiny CycleGAN with plain SGD (Adam would turn float-level
    gradient differences near zero into lr-sized steps): final state and metrics."""
    config = _config("cyclegan")
    with config.unlocked():
        config.training.parallel = parallel
        config.optimizer.update(name="sgd", learning_rate=1e-3)
    model, optimizer, it, info, (tcfg, _, _) = build_run(config)
    fn = step_lib.make_train_step(model, optimizer, tcfg.ema_decay, parallel)
    state = step_lib.put_state(initial_state(config, model, optimizer, info), parallel)
    metrics = []
    for _ in range(3):
        state, m = fn(state, step_lib.put_batch(_next_batches(it, 1), parallel))
        metrics.append(jax.device_get(m if parallel != "pmap" else jax.tree.map(
            lambda v: v[0], m)))
    return jax.device_get(step_lib.get_state(state, parallel)), metrics


def parallel_check() -> None:
    """Run with 2 host devices: the largest differences of mesh and pmap from one device."""
    assert jax.device_count() == 2, jax.devices()

    def diff(a, b, relative=False):    # metrics: relative (gradient norms are large)
        def one(x, y):
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            scale = np.maximum(np.abs(y), 1.0) if relative else 1.0
            return float(np.max(np.abs(x - y) / scale))

        return max(one(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    ref, ref_metrics = _parallel_run("none")
    out = {"pool_count": int(ref.params["state"]["pool_count"])}
    for parallel in ("mesh", "pmap"):
        state, metrics = _parallel_run(parallel)
        out[parallel] = {"params": diff(state.params, ref.params),
                         "ema": diff(state.ema_params, ref.ema_params),
                         "metrics": diff(metrics, ref_metrics, relative=True),
                         "step": int(state.step)}
    print(json.dumps(out))


@pytest.mark.slow
@pytest.mark.multidevice
def test_cyclegan_steps_match_one_device_under_mesh_and_pmap():
    """The pairing, the pool's draws and writes are per-device-consistent (module docstring)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
               + " --xla_force_host_platform_device_count=2")
    code = "from tests.models.test_translation import parallel_check; parallel_check()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["pool_count"] == 12                  # 3 steps x P = 4: the pool is in play
    for parallel in ("mesh", "pmap"):
        assert out[parallel]["step"] == 3
        for key in ("params", "ema", "metrics"):      # params include the pools
            assert out[parallel][key] < 1e-5, (parallel, out)


# ------------------------------------------------------ split metrics and sampling
def _numpy_errors(outputs, targets) -> tuple[float, float]:
    diff = np.concatenate([np.ravel(o - t) for o, t in zip(outputs, targets)])
    return float(np.mean(np.abs(diff))), float(10 * np.log10(255.0 ** 2 / np.mean(diff ** 2)))


def test_split_metrics_match_numpy(pix2pix, cyclegan):
    batches = [_batch(), _batch(start=8)]
    model, params = pix2pix
    generate = _applies(model)[0]
    outs = [_levels(generate(params["generator"], _sym(b["source"]))) for b in batches]
    l1, psnr = _numpy_errors(outs, [b["image"] for b in batches])
    got = model.split_metrics(params, batches)
    assert got["num_examples"] == 16
    np.testing.assert_allclose([got["translation_l1"], got["translation_psnr"]], [l1, psnr],
                               rtol=1e-4)

    model, params = cyclegan
    G, F, _, _ = _cycle_parts(model, params)
    got = model.split_metrics(params, batches)
    sources = [_sym(b["source"]) for b in batches]
    images = [_sym(b["image"]) for b in batches]
    expected = {
        "cycle_x": ([_levels(F(G(x))) for x in sources], "source"),
        "cycle_y": ([_levels(G(F(y))) for y in images], "image"),
        "translation": ([_levels(G(x)) for x in sources], "image"),      # the paired y
        "translation_y2x": ([_levels(F(y)) for y in images], "source"),
    }
    for name, (outs, key) in expected.items():
        l1, psnr = _numpy_errors(outs, [b[key] for b in batches])
        np.testing.assert_allclose([got[f"{name}_l1"], got[f"{name}_psnr"]], [l1, psnr],
                                   rtol=1e-4, err_msg=name)
    assert got["num_examples"] == 16


def test_sample_translates_the_test_sources_or_cond(cyclegan):
    model, params = cyclegan
    sources = digits.edges2digits("test")["source"]
    sample = jax.jit(model.sample, static_argnums=2)
    translate = jax.jit(model.translate, static_argnames="direction")
    samples = sample(params, jax.random.key(0), 8)
    assert samples.dtype == jnp.uint8 and samples.shape == (8, 16, 16, 1)
    np.testing.assert_array_equal(samples, translate(params, sources[:8]))
    cond = sources[8:16]
    np.testing.assert_array_equal(sample(params, jax.random.key(0), 8, cond),
                                  translate(params, cond))
    np.testing.assert_array_equal(model._sources(len(sources) + 2, None)[-2:], sources[:2])
    with pytest.raises(ValueError, match="cond must be uint8 source images"):
        model.sample(params, jax.random.key(0), 3, cond)
    G, F, _, _ = _cycle_parts(model, params)
    # Rounded levels of one computation done two ways: equal up to a rounding tie.
    np.testing.assert_allclose(jax.jit(model.reconstruct)(params, sources[:8]),
                               _levels(F(G(_sym(sources[:8])))), atol=1)
    np.testing.assert_allclose(translate(params, sources[:8], direction="y2x"),
                               _levels(F(_sym(sources[:8]))), atol=1)
    with pytest.raises(ValueError, match="direction must be one of"):
        model.translate(params, sources[:2], "x2x")


@pytest.mark.parametrize("name,overrides,message", [
    ("pix2pix", dict(channels=(4, 8, 8, 8, 8)), "divisible by 32"),
    ("pix2pix", dict(l1_weight=0.0, adversarial_weight=0.0), "nothing to train"),
    ("pix2pix", dict(adversarial_weight=-1.0), "must be >= 0"),
    ("pix2pix", dict(dropout=1.0), "dropout"),
    ("pix2pix", dict(norm="batch"), "model.norm"),
    ("pix2pix", dict(disc_channels=()), "disc_channels"),
    ("cyclegan", dict(generator="vgg"), "model.generator"),
    ("cyclegan", dict(pool_size=-1), "pool_size"),
    ("cyclegan", dict(generator="resnet", channels=(4, 8, 8, 8, 8)), "too small"),
])
def test_bad_config_is_a_clear_error(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        _model(name, **overrides)
