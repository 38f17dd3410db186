"""Token prior over the codes of a frozen VQ-VAE: sampler identities, causality, training."""

import functools
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data as gdata
from genjax.configs import make_config
from genjax.data import captions as cap
from genjax.eval.report import evaluate_run
from genjax.models import build
from genjax.models.token_prior import pick_token, top_k_filter
from genjax.train.trainer import load_run, train_and_evaluate


@functools.lru_cache(maxsize=None)
def trained_vqvae_for(dataset: str, image_shape: tuple, num_levels: int) -> str:
    """Workdir of a VQ-VAE (one conv level, K = 8) trained 2 steps on ``dataset``: a
    stand-in for the ``vqvae_workdir`` of a token prior (also used by tests/test_configs.py)."""
    config = make_config(
        "vqvae", dataset,
        model_kwargs=dict(image_shape=image_shape, num_levels=num_levels, channels=(8,),
                          num_codes=8, code_dim=4, dead_window=2),
        training=dict(batch_size=8, num_steps=2, steps_per_call=1, log_every=2,
                      checkpoint_every=2, sample_every=0, num_sample_images=0, ema_decay=0.9,
                      progress=False),
        optimizer=dict(learning_rate=3e-3, warmup_steps=0, grad_clip=1.0),
        eval=dict(num_samples=0))
    workdir = tempfile.mkdtemp(prefix="genjax_tiny_vqvae_")
    train_and_evaluate(config, workdir)
    return workdir


def tiny_prior_config(conditioning="text", **training):
    """digits 8x8 -> 16 codes of K = 8, text captions of 4 tokens, one tiny block."""
    train = dict(batch_size=16, num_steps=4, steps_per_call=2, log_every=2, checkpoint_every=4,
                 sample_every=0, num_sample_images=0, ema_decay=0.9, progress=False)
    train.update(training)
    return make_config(
        "token_prior", "digits",
        model_kwargs=dict(image_shape=(8, 8, 1), num_levels=17,
                          vqvae_workdir=trained_vqvae_for("digits", (8, 8, 1), 17),
                          conditioning=conditioning, captions="digits", text_len=4,
                          num_classes=10 if conditioning == "class" else 0,
                          dim=16, num_layers=1, num_heads=2, p_uncond=0.5),
        training=train,
        optimizer=dict(learning_rate=3e-3, warmup_steps=0, grad_clip=1.0),
        eval=dict(num_samples=0, num_examples=16, batch_size=16))


@pytest.fixture(scope="module")
def batch():
    it, _ = gdata.load("digits", "train", 4, shuffle=False)
    return next(it)


@functools.lru_cache(maxsize=None)
def _model(conditioning):
    model = build(tiny_prior_config(conditioning).model)
    it, _ = gdata.load("digits", "train", 4, shuffle=False)
    return model, model.init(jax.random.key(1), next(it))


def _greedy(model, params, text, label):
    """Argmax decoding by re-running the whole sequence per position (Python loop)."""
    codes = np.zeros((label.shape[0] if text is None else text.shape[0],
                      model.num_image_tokens), np.int32)
    logits = jax.jit(model.logits)
    for m in range(model.num_image_tokens):
        codes[:, m] = np.argmax(logits(params, jnp.asarray(codes), text, label)[:, m], -1)
    return codes.reshape((-1,) + model.latent_shape)


@pytest.mark.parametrize("conditioning", ["class", pytest.param("text", marks=pytest.mark.slow)])
def test_cached_sampling_equals_full_recompute(conditioning):
    model, params = _model(conditioning)
    # class: with guidance (2N rows, the null class); text: a prompt, no guidance.
    kwargs = (dict(prompt="a handwritten two") if conditioning == "text"
              else dict(cond=2, guidance_scale=1.5))
    cached = model.sample_codes(params, jax.random.key(3), 3, **kwargs)
    full = model.sample_codes(params, jax.random.key(3), 3, use_cache=False, **kwargs)
    assert cached.shape == (3, 4, 4) and cached.dtype == jnp.int32
    np.testing.assert_array_equal(cached, full)
    assert ((cached >= 0) & (cached < 8)).all()
    if conditioning == "text":
        # A traced zero weight takes the guided (2N rows) path and must draw what w = 0 draws.
        traced = model.sample_codes(params, jax.random.key(3), 3, guidance_scale=jnp.float32(0),
                                    **kwargs)
        np.testing.assert_array_equal(traced, cached)


def test_top_k_one_and_zero_temperature_are_greedy():
    model, params = _model("text")
    text, _ = model.condition(2, prompt=["a handwritten two", "a handwritten nine"])
    greedy = _greedy(model, params, text, None)
    # Temperature and top-k are traced: one compile for every setting.
    sample = jax.jit(lambda t, k: model.sample_codes(params, jax.random.key(5), 2, text,
                                                     temperature=t, top_k=k))
    for temperature, top_k in ((1.0, 1), (0.0, 0), (1e-4, 0)):
        np.testing.assert_array_equal(sample(temperature, top_k), greedy)
    # At temperature 1 the draws differ from the argmax somewhere (random init, 32 codes).
    assert (np.asarray(sample(1.0, 0)) != greedy).any()


def test_guided_greedy_sampling_follows_the_guided_log_probs():
    """temperature 0 with guidance w: each code is argmax_k (1 + w) log p(k | z_<m, c)
    - w log p(k | z_<m, null), computed here by re-running the sequence (Python loop)."""
    model, params = _model("class")
    label, w = jnp.array([3, 7]), 2.0
    null = jnp.full_like(label, model.null_class)
    codes = np.zeros((2, model.num_image_tokens), np.int32)
    logits = jax.jit(model.logits)
    for m in range(model.num_image_tokens):
        log_c, log_u = (jax.nn.log_softmax(logits(params, jnp.asarray(codes), None, y)[:, m])
                        for y in (label, null))
        codes[:, m] = np.argmax((1 + w) * log_c - w * log_u, -1)
    guided = model.sample_codes(params, jax.random.key(0), 2, label, temperature=0.0,
                                guidance_scale=w)
    np.testing.assert_array_equal(guided, codes.reshape((-1,) + model.latent_shape))
    unguided = model.sample_codes(params, jax.random.key(0), 2, label, temperature=0.0)
    assert (np.asarray(unguided) != np.asarray(guided)).any()


def test_top_k_filter_keeps_the_k_largest_and_sampling_stays_in_them():
    logits = jax.random.normal(jax.random.key(0), (4, 10))
    for k in (1, 3, 10):
        kept = np.isfinite(top_k_filter(logits, k))
        top = np.argsort(-np.asarray(logits), axis=-1)[:, :k]
        np.testing.assert_array_equal(kept.sum(-1), k)
        assert np.take_along_axis(kept, top, -1).all()
    assert np.isfinite(top_k_filter(logits, 0)).all()
    draws = jax.vmap(lambda key: pick_token(key, logits, 1.0, 3))(
        jax.random.split(jax.random.key(1), 500))                        # [500, 4]
    top3 = np.argsort(-np.asarray(logits), -1)[:, :3]
    assert all(set(np.asarray(draws[:, i])) == set(top3[i]) for i in range(4))
    # Without top-k the frequencies follow the softmax.
    draws = jax.vmap(lambda key: pick_token(key, logits[:1], 1.0, 0))(
        jax.random.split(jax.random.key(2), 4000))[:, 0]
    freq = np.bincount(np.asarray(draws), minlength=10) / 4000
    np.testing.assert_allclose(freq, jax.nn.softmax(logits[0]), atol=0.03)


def test_text_precedes_image_tokens_causally(batch):
    model, params = _model("text")
    codes = model.encode(params, batch["image"])                          # [4, 16]
    text = cap.caption_tokens("digits", batch, 4)
    seq = model.sequence(codes, text)                                     # [4, 20]
    assert seq.shape == (4, 20) and (seq[:, :4] == text).all()
    base = model.all_logits(params, seq)
    j = 4 + 9                                                             # an image token
    changed = model.all_logits(params, seq.at[:, j].set(cap.VOCAB_SIZE + (codes[:, 9] + 1) % 8))
    np.testing.assert_allclose(changed[:, :j + 1], base[:, :j + 1], atol=1e-6)
    assert np.abs(changed[:, j + 1:] - base[:, j + 1:]).max() > 1e-4
    # The caption (positions 0..3) changes the logits of every image token.
    other = model.all_logits(params, seq.at[:, 2].set(cap.WORD_TO_ID["one"]))
    assert (np.abs(other[:, 4:] - base[:, 4:]).max(axis=(0, 2)) > 1e-6).all()


def test_dropout_acts_in_the_loss_only(batch):
    config = tiny_prior_config("class")
    config.model.dropout = 0.3
    model = build(config.model)
    params = model.init(jax.random.key(1), batch)
    plain, _ = _model("class")          # the same network without dropout
    losses = [float(model.loss(params, batch, jax.random.key(k))[0]) for k in (0, 1)]
    assert losses[0] != losses[1]
    assert float(plain.loss(params, batch, jax.random.key(0))[0]) not in losses
    # Evaluation and sampling see no dropout.
    label = jnp.asarray(batch["label"])
    codes = model.encode(params, batch["image"])
    np.testing.assert_array_equal(model.logits(params, codes, None, label),
                                  plain.logits(params, codes, None, label))


def test_split_metrics_are_the_loss_without_dropping_the_condition(batch):
    config = tiny_prior_config("class")
    config.model.p_uncond = 0.0
    model = build(config.model)
    _, params = _model("class")
    loss = float(model.loss(params, batch, jax.random.key(0))[0])
    halves = [{k: v[:2] for k, v in batch.items()}, {k: v[2:] for k, v in batch.items()}]
    metrics = model.split_metrics(params, halves)
    np.testing.assert_allclose(metrics["nats_per_code"], loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["bits_per_code"] * np.log(2), loss, rtol=1e-5)
    assert metrics["num_examples"] == 4 and metrics["uniform_nats_per_code"] == np.log(8)


def test_prompts_are_checked():
    class_model, class_params = _model("class")
    with pytest.raises(ValueError, match="takes no prompt"):
        class_model.sample_codes(class_params, jax.random.key(0), 2, prompt="a handwritten one")
    model, params = _model("text")
    with pytest.raises(ValueError, match="unknown word"):
        model.sample_codes(params, jax.random.key(0), 2, prompt="a handwritten eleven")


@pytest.fixture(scope="module")
def trained_prior(tmp_path_factory):
    config = tiny_prior_config("text")
    workdir = str(tmp_path_factory.mktemp("token_prior"))
    return config, workdir, train_and_evaluate(config, workdir)


def test_trains_with_a_frozen_vqvae_and_samples_from_a_prompt(trained_prior, batch):
    config, workdir, state = trained_prior
    assert int(state.step) == 4
    assert os.listdir(os.path.join(workdir, "samples")) == []        # num_sample_images = 0
    model = build(config.model)
    # The VQ-VAE carried in params is the loaded one, untouched by the optimizer.
    jax.tree.map(np.testing.assert_array_equal, state.params["vqvae"], model._vq_params)
    loss, metrics = model.loss(state.params, batch, jax.random.key(0))
    assert np.isfinite(loss) and 0 <= metrics["accuracy"] <= 1
    results = evaluate_run(config, model, state.ema_params)
    assert results["num_examples"] == 297 and np.isfinite(results["nats_per_code"])
    _, loaded, loaded_state, _ = load_run(workdir)
    sample = jax.jit(functools.partial(loaded.sample, prompt="a handwritten three"),
                     static_argnums=2)
    images = sample(loaded_state.ema_params, jax.random.key(0), 5)
    assert images.shape == (5, 8, 8, 1) and images.dtype == jnp.uint8
    assert int(images.max()) <= 16


@pytest.mark.slow
def test_sampled_first_two_codes_follow_the_model_probabilities():
    """Chi-square of the joint frequencies of the first two codes of 4000 samples against
    p(z_1 | c) p(z_2 | z_1, c) computed by the full (uncached) network; the counts are
    rejected against the uniform law, so the test can tell a wrong sampler."""
    from scipy import stats

    model, params = _model("class")
    params = jax.tree.map(lambda x: x * 3.0, params)      # sharper than at init
    n, k = 4000, model.num_codes
    codes = np.asarray(jax.jit(lambda key: model.sample_codes(params, key, n, 4))(
        jax.random.key(11))).reshape(n, -1)
    label = jnp.full((k,), 4, jnp.int32)
    first = np.zeros((k, model.num_image_tokens), np.int32)
    first[:, 0] = np.arange(k)
    log_p = np.asarray(jax.nn.log_softmax(model.logits(params, jnp.asarray(first), None, label),
                                          -1), np.float64)
    joint = np.exp(log_p[0, 0][:, None] + log_p[:, 1, :])          # [z1, z2]
    counts = np.bincount(codes[:, 0] * k + codes[:, 1], minlength=k * k)
    expected = n * joint.ravel() / joint.sum()
    keep = expected >= 5                                           # chi-square validity
    observed, wanted = counts[keep], expected[keep]
    if not keep.all():                                             # pool the rare cells
        observed = np.append(observed, counts[~keep].sum())
        wanted = np.append(wanted, expected[~keep].sum())
    assert stats.chisquare(observed, wanted).pvalue > 1e-3
    assert stats.chisquare(counts, np.full(k * k, n / (k * k))).pvalue < 1e-6
