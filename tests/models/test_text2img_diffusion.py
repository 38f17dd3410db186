"""Text-conditioned DDPM (cross-attention to a jointly trained text encoder): caption
dropout to the empty caption, guidance identities, prompts, one compile for every guidance
weight and prompt, and a tiny run trained and sampled through the CLI."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data as gdata
from genjax.configs import make_config
from genjax.core import diffusion as dm
from genjax.data import captions as cap
from genjax.models import build
from tests.conftest import perturbed

# The tiny text-to-image diffusion of the family tables: 8x8 digits captioned
# "a handwritten seven", one level with self- and cross-attention, a 1-block text encoder.
TINY_T2I = dict(image_shape=(8, 8, 1), num_levels=17, num_timesteps=10, base_channels=8,
                channel_mults=(1,), num_res_blocks=1, attention_resolutions=(8,), num_heads=2,
                captions="digits", text_len=4, text_dim=16, text_layers=1, text_heads=2,
                label_dropout=0.2, sampler="ddim", sample_steps=3)


def tiny_t2i_config(eval=None, **training):
    train = dict(batch_size=8, num_steps=4, steps_per_call=1, log_every=2, checkpoint_every=4,
                 sample_every=0, num_sample_images=0, ema_decay=0.9, progress=False)
    train.update(training)
    return make_config("ddpm", "digits", model_kwargs=TINY_T2I, training=train,
                       optimizer=dict(learning_rate=3e-3, warmup_steps=0, grad_clip=1.0),
                       eval=dict(dict(num_samples=0, num_examples=8, batch_size=8),
                                 **(eval or {})))


@pytest.fixture(scope="module")
def batch():
    it, _ = gdata.load("digits", "train", 8, shuffle=False)
    return next(it)


@pytest.fixture(scope="module")
def tiny(batch):
    """(model, perturbed params: every zero-initialised branch live)."""
    model = build(tiny_t2i_config().model)
    params = jax.jit(model.init)(jax.random.key(0), batch)
    return model, perturbed(params, jax.random.key(42), 0.3)


def test_text_model_declares_text_conditioning_and_its_encoder_is_trained(tiny):
    model, params = tiny
    assert model.capabilities.conditioning == "text"
    assert "prompt" in model.capabilities.sample_options
    assert not model.capabilities.param_groups           # one trained group: net + text
    assert set(params) == {"net", "text_encoder"}


def test_captions_are_dropped_to_the_empty_caption(tiny, batch, monkeypatch):
    """The training condition of each example is its caption, or with probability
    label_dropout the empty (all-pad) caption: its text mask (True at real tokens) is
    the caption's, or all False; p = 1 drops every caption, p = 0 none."""
    model, params = tiny
    truth = cap.tokenize(cap.captions("digits", batch), 4) != cap.PAD_ID
    config = model.config
    for p in (0.5, 1.0, 0.0):
        monkeypatch.setattr(model, "config", config.__class__(
            **{**config.__dict__, "label_dropout": p}))
        mask = np.asarray(jax.jit(lambda b, k: model._batch_cond(params, b, k)[2])(
            {"label": batch["label"]}, jax.random.key(1)))
        dropped = ~mask.any(axis=1)
        np.testing.assert_array_equal(mask[~dropped], truth[~dropped])
        if p == 0.5:
            assert 0 < dropped.sum() < len(mask)
        else:
            assert np.all(dropped == (p == 1.0))


def test_guidance_weight_0_is_the_conditional_and_minus_1_the_unconditional(tiny):
    """eps~ = (1 + w) eps(x, c) - w eps(x, null): w = 0 gives the prediction given the
    caption, w = -1 the prediction given the empty caption (the convention of
    genjax.core.conditioning.guided)."""
    model, params = tiny
    n = 3
    x = jax.random.normal(jax.random.key(3), (n, 8, 8, 1))
    t = jnp.array([2, 5, 9])
    cond, null = model._sample_cond(params, n, prompt="a handwritten three")
    assert not np.allclose(np.asarray(cond[0]), np.asarray(null[0]))

    @jax.jit
    def eps_of(c):
        out = model._apply(params, x, t, c)
        return dm.model_output_to_x0_eps(model.schedule, x, t, out, "eps")[1]

    eps_c, eps_u = eps_of(cond), eps_of(null)
    assert np.abs(np.asarray(eps_c - eps_u)).max() > 1e-3     # the text matters
    with_clip = model.config.clip_x0
    object.__setattr__(model.config, "clip_x0", False)
    try:
        guided = jax.jit(lambda w: model._x0_eps(params, x, t, cond, w, null=null)[1])
        for w, expect in ((0.0, eps_c), (-1.0, eps_u), (2.0, 3 * eps_c - 2 * eps_u)):
            np.testing.assert_allclose(np.asarray(guided(w)), np.asarray(expect), atol=1e-4)
    finally:
        object.__setattr__(model.config, "clip_x0", with_clip)


def test_one_compile_serves_every_guidance_weight_and_prompt(tiny):
    """model.sample jitted with token ids and w traced: traced once for two weights and
    two prompts, and both change the samples."""
    model, params = tiny
    traces = []

    def sample(p, key, tokens, w):
        traces.append(1)
        return model.sample(p, key, 2, tokens, guidance_scale=w)

    fn = jax.jit(sample)
    three = cap.tokenize(["a handwritten three"] * 2, 4)
    seven = cap.tokenize(["a handwritten seven"] * 2, 4)
    key = jax.random.key(5)
    a = np.asarray(fn(params, key, three, 0.0))
    b = np.asarray(fn(params, key, three, 4.0))
    c = np.asarray(fn(params, key, seven, 4.0))
    assert len(traces) == 1
    assert not np.array_equal(a, b) and not np.array_equal(b, c)


def test_a_prompt_is_its_token_ids_and_unknown_words_are_refused(tiny):
    model, params = tiny
    key = jax.random.key(6)
    by_prompt = jax.jit(functools.partial(model.sample, prompt="a handwritten three",
                                          guidance_scale=1.0), static_argnums=2)(params, key, 2)
    by_ids = jax.jit(functools.partial(model.sample, guidance_scale=1.0), static_argnums=2)(
        params, key, 2, cap.tokenize(["a handwritten three"] * 2, 4))
    np.testing.assert_array_equal(np.asarray(by_prompt), np.asarray(by_ids))
    with pytest.raises(ValueError, match="unknown word 'purple'"):
        model.sample(params, key, 2, prompt="a handwritten purple")
    with pytest.raises(ValueError, match="'heart'.*'digits' captions"):
        model.sample(params, key, 2, prompt="a handwritten heart")
    with pytest.raises(ValueError, match="more than max_len"):
        model.sample(params, key, 2, prompt="a handwritten three in the top left")


def test_text_config_errors():
    with pytest.raises(ValueError, match="captions"):
        build(make_config("ddpm", "digits", model_kwargs=dict(TINY_T2I, captions="cats")).model)
    with pytest.raises(ValueError, match="exclude each other"):
        build(make_config("ddpm", "digits", model_kwargs=dict(TINY_T2I, num_classes=10)).model)
    with pytest.raises(ValueError, match="unknown text_encoder"):
        build(make_config("ddpm", "digits",
                          model_kwargs=dict(TINY_T2I, text_encoder="clip_vit")).model)
    plain = build(make_config("ddpm", "digits", model_kwargs=dict(
        TINY_T2I, captions="")).model)
    with pytest.raises(ValueError, match="takes no prompt"):
        plain.sample(None, jax.random.key(0), 2, prompt="a handwritten three")


def test_a_frozen_text_tower_goes_to_the_frozen_group(monkeypatch, batch):
    """The hook of genjax/models/text_encoder.py: an encoder declared frozen (a pretrained
    CLIP text tower) is kept in params["text_encoder"] in the frozen parameter group, and
    no gradient reaches it."""
    from genjax.models import text_encoder as te
    from genjax.models.protocol import FROZEN

    frozen = te.JointTextEncoder(4, 16, 1, 2, frozen=True)
    monkeypatch.setitem(te.TEXT_ENCODERS, "pretrained_test", lambda config: frozen)
    model = build(make_config("ddpm", "digits", model_kwargs=dict(
        TINY_T2I, text_encoder="pretrained_test")).model)
    assert model.capabilities.param_groups
    assert model.update_rule().groups[FROZEN] == ("text_encoder",)
    params = jax.jit(model.init)(jax.random.key(0), batch)
    grads = jax.jit(jax.grad(lambda p: model.loss(p, batch, jax.random.key(1))[0]))(params)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads["text_encoder"]))
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads["net"]))


@pytest.mark.slow
def test_tiny_run_trains_and_samples_through_the_cli_with_a_prompt(tmp_path):
    """train_and_evaluate (loss falls), then `genjax sample --prompt --guidance` and
    `genjax eval` with the conditioning rows (the digits reader over the 10 captions)."""
    import json
    import os

    from PIL import Image

    from genjax.train.trainer import train_and_evaluate
    from tests.test_cli import genjax

    workdir = str(tmp_path / "t2i")
    config = tiny_t2i_config(num_steps=30, log_every=10, checkpoint_every=30,
                             eval=dict(conditioning_per_condition=2,
                                       conditioning_guidance=(0.0, 2.0)))
    train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        losses = [row["loss"] for row in map(json.loads, f) if "loss" in row]
    assert losses[-1] < losses[0]
    out = str(tmp_path / "three.png")
    proc = genjax("sample", f"--workdir={workdir}", "--num=4", f"--out={out}",
                  "--prompt=a handwritten three", "--guidance=2")
    assert "wrote 4 samples" in proc.stdout and np.asarray(Image.open(out)).ndim == 2
    proc = genjax("sample", f"--workdir={workdir}", "--prompt=a handwritten purple",
                  check=False)
    assert proc.returncode == 1 and "unknown word 'purple'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    genjax("eval", f"--workdir={workdir}")
    with open(os.path.join(workdir, "eval.json")) as f:
        results = json.load(f)
    assert results["conditioning/chance"] == 0.1
    for w in ("0", "2"):
        assert results[f"conditioning/w={w}/num_samples"] == 20
        assert 0 <= results[f"conditioning/w={w}/class_accuracy"] <= 1
    assert results["bits_per_dim_is"] == "variational bound"
