"""CLIP: encoder shapes, a text encoder that ignores trailing pads, the loss as the core
InfoNCE of the encoders' outputs, a differentiable image path (for CLIP guidance), the
zero-shot and retrieval metrics on hand-made embeddings, and a tiny run that learns."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import models
from genjax.configs import make_config
from genjax.core import contrastive as con
from genjax.core.likelihoods import to_symmetric
from genjax.data import captions as cap
from genjax.models.clip import caption_attributes, retrieval_recall, zero_shot_accuracy

TINY = dict(embed_dim=8, image_channels=(4, 8), image_hidden=16, text_dim=16, text_layers=1,
            text_heads=2)


def tiny_clip(dataset="digits16", **kwargs):
    shape = {"digits16": (16, 16, 1), "shapes": (32, 32, 1)}[dataset]
    scheme = {"digits16": "digits", "shapes": "shapes"}[dataset]
    return models.build(make_config("clip", dataset, model_kwargs={
        **TINY, "image_shape": shape, "captions": scheme, **kwargs}).model)


def digit_batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.integers(0, 256, (n, 16, 16, 1)), jnp.uint8),
            "label": jnp.asarray(np.arange(n) % 10, jnp.int32)}


@pytest.fixture(scope="module")
def clip():
    model = tiny_clip(text_len=4)
    batch = digit_batch()
    return model, jax.jit(model.init)(jax.random.key(0), batch), batch


def test_shapes_scores_and_the_loss_is_the_core_infonce(clip):
    model, params, batch = clip
    tokens = model.caption_tokens(batch)
    np.testing.assert_array_equal(
        tokens, cap.tokenize(cap.captions("digits", batch), 4))
    u = jax.jit(model.encode_image)(params, batch["image"])
    pooled, states = jax.jit(model.encode_text)(params, tokens)
    assert u.shape == (8, 8) and pooled.shape == (8, 8) and states.shape == (8, 4, 16)
    loss, metrics = jax.jit(model.loss)(params, batch, jax.random.key(1))
    np.testing.assert_allclose(loss, con.clip_loss(u, pooled, params["log_scale"]), rtol=1e-5)
    np.testing.assert_allclose(metrics["logit_scale"], 1 / 0.07, rtol=1e-5)
    # CLIP score: 100 max(cos, 0), computed here in numpy
    un = np.asarray(u) / np.linalg.norm(u, axis=1, keepdims=True)
    vn = np.asarray(pooled) / np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(jax.jit(model.clip_score)(params, batch["image"], tokens),
                               100 * np.maximum((un * vn).sum(1), 0), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="does not sample"):
        model.sample(params, jax.random.key(0), 2)


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_the_text_encoder_ignores_trailing_pads_and_reads_every_word(pool):
    model = tiny_clip("shapes", text_len=12, text_pool=pool)
    params = jax.jit(model.init)(jax.random.key(2),
                                 {"image": jnp.zeros((1, 32, 32, 1), jnp.uint8)})
    encode = jax.jit(lambda tokens: model.encode_text(params, tokens)[0])
    text = ["a large square in the top left", "a small heart in the bottom right",
            "the large square in the top left"]          # the first word changed
    pooled = [encode(cap.tokenize(text, n)) for n in (7, 9, 12)]
    for other in pooled[1:]:
        np.testing.assert_allclose(other, pooled[0], atol=1e-5)
    assert float(jnp.max(jnp.abs(pooled[0][2] - pooled[0][0]))) > 1e-3


def test_the_image_path_is_differentiable(clip):
    """uint8 levels enter as to_symmetric(levels); gradients of the cosine w.r.t. float
    images in [-1, 1] agree with a central difference."""
    model, params, batch = clip
    x = to_symmetric(batch["image"])
    encode = jax.jit(model.encode_image)
    np.testing.assert_allclose(encode(params, batch["image"]), encode(params, x), atol=1e-6)
    tokens = model.caption_tokens(batch)
    total = jax.jit(lambda x: jnp.sum(model.cosine(params, x, tokens)))
    grad = jax.jit(jax.grad(total))(x)
    direction = jax.random.normal(jax.random.key(3), x.shape)
    eps = 1e-2
    fd = (total(x + eps * direction) - total(x - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(jnp.sum(grad * direction), fd, rtol=2e-2)
    assert float(jnp.abs(grad).sum()) > 0


def test_caption_attributes_agree_with_the_shapes_reader():
    from genjax.eval.conditioning import shape_prompts

    prompts, attrs = shape_prompts()
    assert tuple(prompts) == cap.all_captions("shapes")
    ours = caption_attributes("shapes")
    for name, theirs in (("shape", "shape"), ("size", "size"), ("quadrant", "position")):
        np.testing.assert_array_equal(ours[name], attrs[theirs])
    np.testing.assert_array_equal(caption_attributes("digits")["digit"], np.arange(10))


def test_zero_shot_and_retrieval_on_hand_made_embeddings():
    """Captions are the 4 unit vectors, with attributes a (0, 0, 1, 1) and b (0, 1, 0, 1);
    each image points at a chosen caption, with the runner-up given by a smaller component."""
    captions = np.eye(4)
    attrs = {"a": np.array([0, 0, 1, 1]), "b": np.array([0, 1, 0, 1])}
    true = np.array([0, 1, 2, 3, 0, 2])
    best = np.array([0, 1, 3, 1, 2, 2])
    second = np.array([1, 0, 2, 3, 0, 0])
    images = 5.0 * captions[best] + 1.0 * captions[second]
    out = zero_shot_accuracy(images, captions, true, attrs)
    # best vs true caption: right for images 0, 1, 5; image 2 (3 for 2) gets a, not b;
    # image 3 (1 for 3) b, not a; image 4 (2 for 0) b, not a.
    assert out == pytest.approx({"accuracy_a": 4 / 6, "accuracy_b": 5 / 6,
                                 "accuracy_caption": 3 / 6})
    rec = retrieval_recall(images, captions, true, gallery=3, ks=(1, 2))
    # image -> text: the true caption is the best for 0, 1, 5 and the second for 2, 3, 4
    assert rec["i2t_recall@1"] == pytest.approx(3 / 6)
    assert rec["i2t_recall@2"] == pytest.approx(1.0)
    # text -> image in blocks {0, 1, 2} (captions 0, 1, 2: each finds its own image) and
    # {3, 4, 5} (captions 3, 0, 2; images 4 and 5 are the same vector (1, 0, 5, 0)):
    # caption 3 finds image 3; caption 0 ties 4 and 5 and takes 4 (caption 0), right;
    # caption 2 ties them too and takes 4, wrong at k = 1, right at k = 2.
    assert rec["t2i_recall@1"] == pytest.approx(5 / 6)
    assert rec["t2i_recall@2"] == pytest.approx(1.0)


def test_split_metrics_over_batches(clip):
    """Counts over batches, recall@5 >= recall@1, and for digits (one attribute, the whole
    caption) the digit accuracy is the caption accuracy and image->text recall@1."""
    model, params, _ = clip
    batches = [digit_batch(8, 5), digit_batch(5, 6)]
    out = model.split_metrics(params, batches)
    assert out["num_examples"] == 13
    for k in ("i2t", "t2i"):
        assert 0 <= out[f"{k}_recall@1"] <= out[f"{k}_recall@5"] <= 1
    assert out["accuracy_digit"] == out["accuracy_caption"] == pytest.approx(out["i2t_recall@1"])
    assert 0 <= out["clip_score"] <= 100


def test_config_errors():
    with pytest.raises(ValueError, match="text_len"):
        tiny_clip(text_len=2)
    with pytest.raises(ValueError, match="captions"):
        tiny_clip(captions="poems")
    with pytest.raises(ValueError, match="text_pool"):
        tiny_clip(text_pool="max")


@pytest.mark.slow
def test_a_tiny_clip_learns_to_pair_digits_with_their_captions():
    """Adam on 32 fixed real digits: the loss falls well below its start and the in-batch
    image->text accuracy rises above chance."""
    from genjax import data as gdata

    model = tiny_clip(text_len=3)
    it, _ = gdata.load("digits16", "train", 32)
    batch = {k: jnp.asarray(v) for k, v in next(iter(it)).items()}
    params = model.init(jax.random.key(4), batch)
    opt = optax.adam(3e-3)

    @jax.jit
    def step(params, state):
        (loss, metrics), grad = jax.value_and_grad(model.loss, has_aux=True)(
            params, batch, jax.random.key(0))
        updates, state = opt.update(grad, state, params)
        return optax.apply_updates(params, updates), state, metrics

    state = opt.init(params)
    first = None
    for _ in range(40):
        params, state, metrics = step(params, state)
        first = metrics if first is None else first
    assert float(metrics["loss"]) < float(first["loss"]) - 1.0
    assert float(metrics["accuracy_i2t"]) > 0.5
