"""CLIP (Radford et al., 2021) on the captioned embedded data: an image encoder f and a text
encoder g trained so that matching (image, caption) pairs score high.

The captions are those of :mod:`genjax.data.captions` ("a large square in the top left" for
``shapes``, "a handwritten seven" for ``digits16``), computed from each batch's factors or
labels inside the loss. With L2-normalised embeddings u_i = f(x_i), v_j = g(c_j) and the
learned log-temperature t (clipped at log 100, started at log(1 / 0.07)), the scores
s_ij = exp(t) <u_i, v_j> of a batch of N pairs train by the symmetric InfoNCE of
:mod:`genjax.core.contrastive` (nats). Its large-batch minimiser is the pointwise mutual
information log p(x, c) - log p(x) - log p(c) + const; since a caption here is a function of
its image, many images share a caption and the best batch loss is about log N - I(X; C),
not 0 (I = log 24 for shapes' 24 equally likely captions, log 10 for digits).

Networks:

- image encoder: convolutions (3x3, then a 3x3 stride-2 downsampling, per level) on the
  image in [-1, 1] (``to_symmetric``, the scale of the diffusion models), flattened (the
  flattening keeps where things are: the quadrant is part of the caption), a hidden layer
  and the projection to ``embed_dim``;
- text encoder: :class:`genjax.nn.transformer.TextEncoder` over the word tokens (pad 0 on
  the right, a padding mask; CLIP's last-token pooling with causal attention, or the mean
  over the words), then a linear projection to ``embed_dim``.

For other models: ``encode_text(params, tokens) -> (pooled [B, D], states [B, L, W])`` (text
conditioning reads the per-token states, masked by ``tokens != PAD_ID``),
``encode_image(params, images) -> [B, D]`` and ``clip_score(params, images, tokens)``.
The image path is differentiable: float images in [-1, 1] go straight into the network
(uint8 levels are first mapped by ``to_symmetric``), so CLIP guidance takes
``jax.grad`` of ``cosine(params, x, tokens)`` with respect to x.

It has no sampler and no likelihood; ``genjax eval`` reports (``split_metrics``) zero-shot
accuracies (every caption of the scheme scored for each image, the best one's attributes
compared with the image's: shape, size and quadrant for shapes, chance 1/3, 1/2, 1/4, and
the whole caption, chance 1/24; the digit, chance 1/10) and retrieval recall@1 and @5
(image->text among the scheme's captions; text->image among blocks of ``retrieval_gallery``
images of the split, a retrieved image right when its caption is the query).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import contrastive as con
from genjax.core.likelihoods import to_symmetric
from genjax.data import captions as cap
from genjax.models.protocol import Capabilities, check_data_fields
from genjax.nn.transformer import TEXT_POOLS, TextEncoder

RECALL_KS = (1, 5)


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    image_shape: tuple[int, ...] = (32, 32, 1)
    num_levels: int = 256
    data_key: str = "image"
    captions: str = "shapes"            # caption scheme: digits | shapes
    text_len: int = 8                   # caption tokens (pad on the right)
    embed_dim: int = 64                 # the shared embedding
    image_channels: tuple[int, ...] = (32, 64, 128)   # one downsampling level each
    image_hidden: int = 256             # hidden layer after flattening
    text_dim: int = 64                  # text transformer width
    text_layers: int = 2
    text_heads: int = 4
    text_pool: str = "last"             # last (causal, CLIP) | mean (bidirectional)
    init_log_scale: float = con.INIT_LOG_SCALE    # t at init: log(1 / 0.07)
    max_log_scale: float = con.MAX_LOG_SCALE      # t is clipped at log 100
    learn_scale: bool = True            # False: t stays at init_log_scale
    retrieval_gallery: int = 100        # split_metrics: text->image among this many images

    def __post_init__(self):
        check_data_fields(self.data_key, self.image_shape, self.num_levels)
        if self.data_key != "image":
            raise ValueError("clip encodes images (data_key = 'image')")
        if self.captions not in cap.CAPTION_LENGTHS:
            raise ValueError(f"model.captions must be one of {sorted(cap.CAPTION_LENGTHS)}, "
                             f"got {self.captions!r}")
        if self.text_len < cap.CAPTION_LENGTHS[self.captions]:
            raise ValueError(f"model.text_len {self.text_len} is shorter than the "
                             f"{self.captions!r} captions ({cap.CAPTION_LENGTHS[self.captions]})")
        if self.text_pool not in TEXT_POOLS:
            raise ValueError(f"model.text_pool must be one of {TEXT_POOLS}, "
                             f"got {self.text_pool!r}")
        if self.text_dim % self.text_heads:
            raise ValueError("model.text_dim must be divisible by model.text_heads")
        if self.init_log_scale > self.max_log_scale:
            raise ValueError("model.init_log_scale must be <= model.max_log_scale")
        if self.retrieval_gallery < 2:
            raise ValueError("model.retrieval_gallery must be >= 2")


class ImageEncoder(nn.Module):
    """x [B, H, W, C] in [-1, 1] -> [B, out_features] (module docstring)."""

    channels: tuple[int, ...] = (32, 64, 128)
    hidden: int = 256
    out_features: int = 64

    @nn.compact
    def __call__(self, x):
        h = x
        for c in self.channels:
            h = nn.silu(nn.Conv(c, (3, 3))(h))
            h = nn.silu(nn.Conv(c, (3, 3), strides=(2, 2))(h))
        h = nn.LayerNorm()(h.reshape(h.shape[0], -1))
        return nn.Dense(self.out_features, name="projection")(nn.silu(nn.Dense(self.hidden)(h)))


class TextTower(nn.Module):
    """tokens [B, L] -> (projected pooled [B, embed_dim], states [B, L, dim])."""

    max_len: int
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    pool: str = "last"
    out_features: int = 64

    @nn.compact
    def __call__(self, tokens):
        pooled, states = TextEncoder(cap.VOCAB_SIZE, self.max_len, self.dim, self.num_layers,
                                     self.num_heads, self.pool, cap.PAD_ID,
                                     name="encoder")(tokens)
        return nn.Dense(self.out_features, use_bias=False, name="projection")(pooled), states


def caption_attributes(scheme: str) -> dict[str, np.ndarray]:
    """The attributes of :func:`genjax.data.captions.all_captions` ``(scheme)``, each int [K]:
    ``digit`` (0..9) for digits; ``shape`` (0..2), ``size`` (0 small, 1 large) and
    ``quadrant`` (2 * bottom + right, 0..3) for shapes."""
    words = [c.split() for c in cap.all_captions(scheme)]
    if scheme == "digits":
        return {"digit": np.array([cap.DIGIT_NAMES.index(w[2]) for w in words])}
    return {"shape": np.array([cap.SHAPE_NAMES.index(w[2]) for w in words]),
            "size": np.array([cap.SIZE_NAMES.index(w[1]) for w in words]),
            "quadrant": np.array([2 * cap.VERTICAL_NAMES.index(w[5])
                                  + cap.HORIZONTAL_NAMES.index(w[6]) for w in words])}


def zero_shot_accuracy(image_emb, caption_emb, true_index, attributes) -> dict[str, float]:
    """Zero-shot classification by the best caption: image embeddings [N, D], the embeddings
    of the K captions [K, D], each image's caption index int [N] and the captions'
    attributes {name: int [K]} -> ``accuracy_<name>`` (the best caption's attribute equals
    the true caption's) and ``accuracy_caption`` (the best caption is the true one)."""
    scores = np.asarray(con.l2_normalize(jnp.asarray(image_emb))
                        @ con.l2_normalize(jnp.asarray(caption_emb)).T)
    best, true_index = scores.argmax(axis=1), np.asarray(true_index)
    out = {f"accuracy_{name}": float(np.mean(values[best] == values[true_index]))
           for name, values in attributes.items()}
    out["accuracy_caption"] = float(np.mean(best == true_index))
    return out


def retrieval_recall(image_emb, caption_emb, true_index, gallery: int,
                     ks=RECALL_KS) -> dict[str, float]:
    """``i2t_recall@k``: each image ranks the K captions [K, D], a hit when its own caption
    (``true_index`` [N]) is among the k best. ``t2i_recall@k``: the N images in consecutive
    blocks of ``gallery`` (the last may be smaller); in a block, the caption of each image
    ranks the block's images, a hit when one of the k best has that caption."""
    u = con.l2_normalize(jnp.asarray(image_emb))
    v = con.l2_normalize(jnp.asarray(caption_emb))
    true_index = jnp.asarray(true_index)
    n, k_captions = u.shape[0], v.shape[0]
    i2t = u @ v.T
    own = true_index[:, None] == jnp.arange(k_captions)[None, :]
    out = {f"i2t_recall@{k}": float(jnp.mean(con.recall_at_k(i2t, own, k))) for k in ks}
    hits = {k: [] for k in ks}
    for start in range(0, n, gallery):
        block = true_index[start:start + gallery]
        scores = v[block] @ u[start:start + gallery].T
        same = block[:, None] == block[None, :]
        for k in ks:
            hits[k].append(con.recall_at_k(scores, same, k))
    out.update({f"t2i_recall@{k}": float(jnp.mean(jnp.concatenate(h))) for k, h in hits.items()})
    return out


class CLIP:
    """Contrastive image and caption encoders following the genjax protocol (no sampler);
    see the module docstring. ``params``: ``{"image": ..., "text": ..., "log_scale": t}``."""

    def __init__(self, config: CLIPConfig):
        self.config = c = config
        self.text_len = c.text_len
        self.image_net = ImageEncoder(tuple(c.image_channels), c.image_hidden, c.embed_dim)
        self.text_net = TextTower(c.text_len, c.text_dim, c.text_layers, c.text_heads,
                                  c.text_pool, c.embed_dim)
        self.capabilities = Capabilities(split_metrics=True)

    # ------------------------------------------------------------- encoders
    def encode_image(self, params, images) -> jax.Array:
        """Image embeddings [B, embed_dim] (before L2 normalisation) of ``images``
        [B, H, W, C]: uint8 levels (mapped to [-1, 1] by ``to_symmetric``) or float values
        in [-1, 1], through which it is differentiable (CLIP guidance)."""
        if jnp.issubdtype(jnp.asarray(images).dtype, jnp.integer):
            images = to_symmetric(images, self.config.num_levels)
        return self.image_net.apply(params["image"], images)

    def encode_text(self, params, tokens) -> tuple[jax.Array, jax.Array]:
        """(pooled [B, embed_dim], states [B, L, text_dim]) of caption tokens int [B, L]
        (``L <= text_len``, padded with ``PAD_ID``; mask states with ``tokens != PAD_ID``).
        The pooled embedding is before L2 normalisation."""
        return self.text_net.apply(params["text"], jnp.asarray(tokens, jnp.int32))

    def logit_scale(self, params) -> jax.Array:
        """exp(t) = 1 / tau, t clipped at ``max_log_scale``."""
        t = params["log_scale"]
        t = t if self.config.learn_scale else jax.lax.stop_gradient(t)
        return con.logit_scale(t, self.config.max_log_scale)

    def cosine(self, params, images, tokens) -> jax.Array:
        """cos(f(x_i), g(c_i)) [B] of B pairs (images as in :meth:`encode_image`)."""
        u = con.l2_normalize(self.encode_image(params, images))
        v = con.l2_normalize(self.encode_text(params, tokens)[0])
        return jnp.sum(u * v, axis=-1)

    def clip_score(self, params, images, tokens) -> jax.Array:
        """CLIP score [B] of B (image, caption) pairs: 100 max(cos, 0) (Hessel et al., 2021,
        without their 2.5 rescaling): from 0 (unrelated or opposed) to 100."""
        return 100.0 * jnp.maximum(self.cosine(params, images, tokens), 0.0)

    def caption_tokens(self, batch) -> jax.Array:
        """The caption tokens int32 [B, text_len] of a batch (its labels or factors)."""
        return cap.caption_tokens(self.config.captions, batch, self.text_len)

    # ------------------------------------------------------------- protocol
    def init(self, rng: jax.Array, batch: dict) -> dict:
        c = self.config
        n = batch[c.data_key].shape[0]
        k_image, k_text = jax.random.split(rng)
        x = jnp.zeros((n,) + tuple(c.image_shape))
        tokens = jnp.zeros((n, c.text_len), jnp.int32)
        return {"image": self.image_net.init(k_image, x),
                "text": self.text_net.init(k_text, tokens),
                "log_scale": jnp.asarray(c.init_log_scale, jnp.float32)}

    def loss(self, params, batch: dict, rng: jax.Array):
        """The symmetric InfoNCE (nats) of the batch's (image, caption) pairs (``rng`` is
        unused). Metrics: ``loss``, ``logit_scale`` exp(t), and the in-batch accuracies
        ``accuracy_i2t`` / ``accuracy_t2i`` (the best-scoring caption / image of each row /
        column has the right caption)."""
        tokens = self.caption_tokens(batch)
        u = self.encode_image(params, batch[self.config.data_key])
        v = self.encode_text(params, tokens)[0]
        scale = self.logit_scale(params)
        scores = scale * (con.l2_normalize(u) @ con.l2_normalize(v).T)
        loss = con.symmetric_info_nce(scores)
        same = jnp.all(tokens[:, None, :] == tokens[None, :, :], axis=-1)
        i2t = jnp.take_along_axis(same, jnp.argmax(scores, axis=1)[:, None], axis=1)
        t2i = jnp.take_along_axis(same, jnp.argmax(scores, axis=0)[:, None], axis=1)
        return loss, {"loss": loss, "logit_scale": scale, "accuracy_i2t": jnp.mean(i2t),
                      "accuracy_t2i": jnp.mean(t2i)}

    def sample(self, params, rng, num_samples: int, cond=None):
        raise ValueError("a clip model does not sample: it scores images against captions "
                         "(clip_score) and embeds them for other models")

    def split_metrics(self, params, batches) -> dict:
        """Zero-shot accuracies, retrieval recall@1/@5 (module docstring), the mean CLIP
        score of the true pairs (``clip_score``) and ``num_examples`` over the split."""
        c = self.config
        caption_set = jnp.asarray(cap.tokenize(cap.all_captions(c.captions), c.text_len))

        @jax.jit
        def embed(params, batch):
            tokens = self.caption_tokens(batch)
            index = jnp.argmax(jnp.all(tokens[:, None] == caption_set[None], axis=-1), axis=1)
            return self.encode_image(params, batch[c.data_key]), index

        images, index = [], []
        for batch in batches:
            keys = (c.data_key, "factors" if c.captions == "shapes" else "label")
            u, i = embed(params, {k: batch[k] for k in keys})
            images.append(np.asarray(u))
            index.append(np.asarray(i))
        if not images:
            return {"num_examples": 0}
        images, index = np.concatenate(images), np.concatenate(index)
        captions = np.asarray(jax.jit(self.encode_text)(params, caption_set)[0])
        out = zero_shot_accuracy(images, captions, index, caption_attributes(c.captions))
        out.update(retrieval_recall(images, captions, index, c.retrieval_gallery))
        cos = np.sum(np.asarray(con.l2_normalize(jnp.asarray(images)))
                     * np.asarray(con.l2_normalize(jnp.asarray(captions)))[index], axis=1)
        out["clip_score"] = float(np.mean(100.0 * np.maximum(cos, 0.0)))
        return {**out, "num_examples": int(len(index))}
