"""Token prior: a causal transformer over the codes of a frozen VQ-VAE (a small DALL-E).

A trained VQ-VAE (``vqvae_workdir``, :mod:`genjax.models.vqvae`) maps an image x
to a grid of code indices z = E(x) in {0..K-1}^{h x w}. This model learns the
distribution of the grid read in raster order, z_1..z_M (M = h w), given a
condition c, as a product of next-token distributions

    p_theta(z | c) = prod_{m=1..M} p_theta(z_m | z_<m, c),

each a softmax over the K codes from a :class:`genjax.nn.transformer.CausalTransformer`.
The loss is the mean cross-entropy -1/M sum_m log p_theta(z_m | z_<m, c) of the
codes of the training images (nats per code). Samples draw z token by token
and decode it with the VQ-VAE decoder, x = D(z).

Conditioning (``conditioning``):

- ``"none"``: p(z).
- ``"class"``: the class embedding is added to the begin-of-sequence vector
  (class ``num_classes`` is the null class of classifier-free guidance).
- ``"text"``: as in DALL-E, the sequence is the caption's text tokens
  (:mod:`genjax.data.captions`, ``text_len`` of them, padded) followed by the
  image tokens, over one shared vocabulary (text ids 0..V-1, code k as V + k);
  the loss is on the image tokens only. Captions are written from the labels
  (``captions="digits"``) or factors (``"shapes"``) of each batch.

Classifier-free guidance: in training the condition is dropped (null class, or
an all-pad caption) with probability ``p_uncond``; sampling with guidance
weight w > 0 draws from

    log p~(z_m | .) = (1 + w) log p(z_m | z_<m, c) - w log p(z_m | z_<m, null)

(renormalised by the softmax), :func:`genjax.core.conditioning.guided_logits`.

Without a condition, sampling follows :mod:`genjax.core.conditioning`: the classes
in turn, or the captions of the dataset in turn (:func:`genjax.data.captions.all_captions`).

``dropout`` (training only, :class:`~genjax.nn.transformer.CausalTransformer`) is the
regulariser a prior on a small dataset needs: 1,350 training digits are 21.6k codes, which the
transformer otherwise memorises within a few hundred steps.

Sampling (:meth:`TokenPrior.sample_codes`): one ``lax.fori_loop`` over the T
positions (text then image), each step one ``CausalTransformer.decode`` call
from a key/value cache; text positions are fed in unchanged, which fills the
cache with the prompt. ``temperature`` divides the logits (0 is greedy
argmax), ``top_k`` > 0 keeps the k most likely codes; both may be traced.

Parameters: ``{"net": transformer, "vqvae": {"encoder", "decoder", "codebook"}}``,
the latter the float arrays of the VQ-VAE's EMA params that encoding and decoding
need (the codebook e [K, D], not its statistics). They are loaded at construction
and carried in the frozen parameter group (no gradient, no optimizer moments), so
that a checkpoint of this model samples on its own.

No likelihood of images: log p_theta(z | c) is an exact log-probability of the
code grid, not of the image (the VQ-VAE encoder is deterministic and its decoder
has no normalised density), so ``capabilities.likelihood`` is ``"none"`` and
``genjax eval`` reports no bits/dim; the training loss in nats per code is the model's fit.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from genjax.core import likelihoods as lk
from genjax.core import quantize as vq_math
from genjax.core import conditioning as cnd
from genjax.core.random import device_key
from genjax.data import captions as cap
from genjax.models.protocol import DEFAULT_GROUP, FROZEN, Capabilities, Phase, UpdateRule
from genjax.nn import precision
from genjax.nn.transformer import CausalTransformer

CONDITIONINGS = ("none", "class", "text")


@dataclasses.dataclass(frozen=True)
class TokenPriorConfig:
    image_shape: tuple[int, int, int] = (16, 16, 1)   # (H, W, C) of the data and the VQ-VAE
    num_levels: int = 256          # levels per sub-pixel of the data
    num_classes: int = 0           # classes of the data ("class" conditioning), else 0
    vqvae_workdir: str = ""        # workdir of a trained VQ-VAE run (required)
    conditioning: str = "none"     # none | class | text
    captions: str = "digits"       # caption scheme for "text": digits | shapes
    text_len: int = 8              # text tokens before the image tokens ("text")
    dim: int = 128                 # transformer width
    num_layers: int = 4            # transformer blocks
    num_heads: int = 4             # attention heads
    p_uncond: float = 0.0          # probability of dropping the condition in training
    dropout: float = 0.0           # transformer dropout in training (a regulariser)
    compute_dtype: str = "float32"  # transformer computation dtype (bfloat16 on accelerators)
    remat: bool = False            # recompute block activations in the backward pass (memory)

    def __post_init__(self):
        precision.compute_dtype(self.compute_dtype)     # a clear error for an unknown name
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, "
                             f"got {self.conditioning!r}")
        if (self.conditioning == "class") != (self.num_classes > 0):
            raise ValueError("num_classes > 0 goes with conditioning='class' (and only with it); "
                             f"got num_classes={self.num_classes}, "
                             f"conditioning={self.conditioning!r}")
        if self.conditioning == "text":
            if self.captions not in cap.CAPTION_LENGTHS:
                raise ValueError(f"captions must be one of {sorted(cap.CAPTION_LENGTHS)}, "
                                 f"got {self.captions!r}")
            if self.text_len < cap.CAPTION_LENGTHS[self.captions]:
                raise ValueError(f"text_len {self.text_len} is shorter than the "
                                 f"{self.captions!r} captions")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must be in [0, 1), got {self.p_uncond}")


def top_k_filter(logits: jax.Array, k) -> jax.Array:
    """Logits [..., K] with all but the k largest set to -inf; k <= 0 keeps all (k may be
    traced). Ties with the k-th largest are kept."""
    size = logits.shape[-1]
    k = jnp.asarray(k)
    kth = jnp.take(jnp.sort(logits, axis=-1), size - jnp.clip(k, 1, size), axis=-1)
    return jnp.where((k > 0) & (logits < kth[..., None]), -jnp.inf, logits)


def pick_token(key: jax.Array, logits: jax.Array, temperature=1.0, top_k=0) -> jax.Array:
    """One draw per row from softmax(top_k_filter(logits) / temperature): logits [B, K] ->
    int32 [B]; temperature <= 0 gives argmax (the limit temperature -> 0)."""
    logits = top_k_filter(logits, top_k)
    t = jnp.asarray(temperature, logits.dtype)
    drawn = jax.random.categorical(key, logits / jnp.where(t > 0, t, 1.0), axis=-1)
    return jnp.where(t > 0, drawn, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


class TokenPrior:
    """Prior over VQ-VAE codes following the genjax protocol; see the module docstring."""

    def __init__(self, config: TokenPriorConfig):
        from genjax.models.pretrained import load_pretrained

        self.config = c = config
        if not c.vqvae_workdir:
            raise ValueError("token_prior needs config.model.vqvae_workdir: the workdir of a "
                             "trained VQ-VAE run (train configs/vqvae_digits.py first)")
        self.vqvae, vq_params = load_pretrained(
            c.vqvae_workdir, kind="vqvae", image_shape=c.image_shape,
            role="config.model.vqvae_workdir")
        # Only the float arrays that encode and decode need (not the codebook statistics).
        self._vq_params = {"encoder": vq_params["encoder"], "decoder": vq_params["decoder"],
                           "codebook": self.vqvae.codebook(vq_params)}
        vq = self.vqvae.config
        if tuple(vq.image_shape) != tuple(c.image_shape) or vq.num_levels != c.num_levels:
            raise ValueError(f"the VQ-VAE of {c.vqvae_workdir} models images "
                             f"{tuple(vq.image_shape)} with {vq.num_levels} levels, this prior "
                             f"{tuple(c.image_shape)} with {c.num_levels}")
        self.latent_shape = self.vqvae.latent_shape
        self.num_codes = vq.num_codes
        self.num_image_tokens = math.prod(self.latent_shape)
        self.text = c.conditioning == "text"
        self.text_len = c.text_len if self.text else 0
        self.offset = cap.VOCAB_SIZE if self.text else 0     # id of code 0 in the sequence
        self.null_class = c.num_classes
        self.net = CausalTransformer(
            self.offset + self.num_codes, self.num_codes, self.text_len + self.num_image_tokens,
            c.dim, c.num_layers, c.num_heads, c.num_classes + 1 if c.num_classes else 0,
            dropout=c.dropout, dtype=precision.compute_dtype(c.compute_dtype), remat=c.remat)
        # p(codes | c) is an exact log-probability of the codes, not of the image.
        self.capabilities = Capabilities(
            conditioning=c.conditioning, num_classes=c.num_classes, encode_decode=True,
            split_metrics=True, param_groups=True,
            sample_options=("temperature", "top_k", "guidance_scale", "prompt"))

    def update_rule(self) -> UpdateRule:
        """The transformer is trained; the VQ-VAE it reads is frozen."""
        return UpdateRule(groups={DEFAULT_GROUP: None, FROZEN: ("vqvae",)},
                          phases=(Phase(DEFAULT_GROUP, self.loss),))

    # ---------------------------------------------------------------- pieces
    def encode(self, params, images: jax.Array) -> jax.Array:
        """uint8 [B, H, W, C] -> codes int32 [B, M] in raster order: the nearest code
        argmin_k ||z_e(x) - e_k||^2 at each position (frozen VQ-VAE)."""
        vq = jax.lax.stop_gradient(params["vqvae"])
        z = self.vqvae.encoder.apply(vq["encoder"], lk.to_symmetric(images, self.config.num_levels))
        return vq_math.vector_quantize(z, vq["codebook"])[1].reshape(images.shape[0], -1)

    def decode(self, params, codes: jax.Array) -> jax.Array:
        """codes int [B, M] -> uint8 [B, H, W, C], D(e_z) rounded to the levels."""
        vq = params["vqvae"]
        z_q = vq_math.lookup(vq["codebook"], codes.reshape((-1,) + self.latent_shape))
        return lk.from_symmetric(self.vqvae.decode_codes(vq, z_q), self.config.num_levels)

    def sequence(self, codes: jax.Array, text: jax.Array | None = None) -> jax.Array:
        """The transformer's input int32 [B, T]: text tokens [B, L] then codes [B, M] + V."""
        seq = codes.astype(jnp.int32) + self.offset
        return seq if text is None else jnp.concatenate([text.astype(jnp.int32), seq], axis=1)

    def all_logits(self, params, seq: jax.Array, label: jax.Array | None = None,
                   dropout_rng: jax.Array | None = None) -> jax.Array:
        """Logits over the K codes [B, T, K] of every position of ``seq`` [B, T] (row t
        from tokens < t); rows L.. are those of the image tokens. With ``dropout_rng``
        the transformer's dropout is on (training)."""
        if dropout_rng is None:
            return self.net.apply(params["net"], seq, label)
        return self.net.apply(params["net"], seq, label, True, rngs={"dropout": dropout_rng})

    def logits(self, params, codes, text=None, label=None, dropout_rng=None) -> jax.Array:
        """Logits [B, M, K] of log p(z_m | z_<m, c) for codes [B, M]."""
        seq = self.sequence(codes, text)
        return self.all_logits(params, seq, label, dropout_rng)[:, self.text_len:]

    def _null(self, n: int):
        """(text, label) of the dropped condition for n examples."""
        text = cap.null_tokens(n, self.text_len) if self.text else None
        label = jnp.full((n,), self.null_class, jnp.int32) if self.config.num_classes else None
        return text, label

    def condition(self, n: int, cond=None, prompt=None):
        """(text [n, L] or None, label [n] or None) for sampling.

        class: ``cond`` int [n] or a scalar (default: labels 0, 1, .., K-1, 0, ...).
        text: ``prompt`` (a string, or n strings) or ``cond`` token ids int [n, <= L]
        (default: the captions of the dataset in turn). The null condition (the empty
        caption) is :meth:`_null`."""
        c = self.config
        if prompt is not None and not self.text:
            raise ValueError(f"this token prior is conditioned on {c.conditioning!r}, not on "
                             "text: it takes no prompt")
        if not self.text:
            return None, cnd.class_labels(cond, n, c.num_classes)
        return cap.condition_tokens(n, cond, prompt, max_len=self.text_len,
                                    scheme=c.captions), None

    # -------------------------------------------------------------- protocol
    def init(self, rng: jax.Array, batch: dict) -> dict:
        n = batch["image"].shape[0]
        text, label = self._null(n)
        seq = jnp.zeros((n, self.text_len + self.num_image_tokens), jnp.int32)
        return {"net": self.net.init(rng, seq, label), "vqvae": self._vq_params}

    def _batch_condition(self, batch: dict):
        """(text [B, L] or None, label [B] or None): the condition of each example."""
        c = self.config
        text = cap.caption_tokens(c.captions, batch, self.text_len) if self.text else None
        label = jnp.asarray(batch["label"], jnp.int32) if c.num_classes else None
        return text, label

    def _code_log_probs(self, params, codes, text, label, dropout_rng=None) -> jax.Array:
        """log p(k | z_<m, c) [B, M, K] for codes [B, M]."""
        return jax.nn.log_softmax(self.logits(params, codes, text, label, dropout_rng), axis=-1)

    def code_nll(self, params, batch: dict) -> jax.Array:
        """-log p(z_m | z_<m, c) per code [B, M] of a batch's images, condition kept (no
        dropout, no condition dropped)."""
        codes = self.encode(params, batch["image"])
        log_p = self._code_log_probs(params, codes, *self._batch_condition(batch))
        return -jnp.take_along_axis(log_p, codes[..., None], axis=-1)[..., 0]

    def split_metrics(self, params, batches) -> dict:
        """Over an iterable of batches (a whole split, for ``genjax eval``): the mean
        ``nats_per_code`` and ``bits_per_code`` of the codes of its images given their
        condition, and ``num_examples``. The uniform prior scores log K nats per code."""
        nll = jax.jit(lambda p, b: jnp.sum(self.code_nll(p, b)))
        total, count = 0.0, 0
        keys = ("image", "label", "factors")
        for batch in batches:
            total += float(nll(params, {k: batch[k] for k in keys if k in batch}))
            count += len(batch["image"])
        nats = total / (count * self.num_image_tokens)
        return {"nats_per_code": nats, "bits_per_code": nats / math.log(2.0),
                "uniform_nats_per_code": math.log(self.num_codes), "num_examples": count}

    def loss(self, params, batch: dict, rng: jax.Array):
        """Mean -log p(z_m | z_<m, c) over codes and batch (nats per code); metrics ``loss``,
        ``bits_per_code`` and ``accuracy`` (argmax = the true code)."""
        c = self.config
        codes = self.encode(params, batch["image"])
        n = codes.shape[0]
        text, label = self._batch_condition(batch)
        drop_key, dropout_rng = jax.random.split(rng)
        if c.p_uncond > 0 and c.conditioning != "none":
            null_text, null_label = self._null(n)
            if self.text:
                text = cnd.drop_condition(drop_key, text, null_text, c.p_uncond)
            else:
                label = cnd.drop_condition(drop_key, label, null_label, c.p_uncond)
        dropout_rng = device_key(dropout_rng) if c.dropout > 0 else None
        log_p = self._code_log_probs(params, codes, text, label, dropout_rng)
        nll = -jnp.take_along_axis(log_p, codes[..., None], axis=-1)[..., 0]
        loss = jnp.mean(nll)
        accuracy = jnp.mean(jnp.argmax(log_p, axis=-1) == codes)
        return loss, {"loss": loss, "bits_per_code": loss / jnp.log(2.0), "accuracy": accuracy}

    def sample_codes(self, params, rng: jax.Array, num_samples: int, cond=None, *,
                     temperature=1.0, top_k=0, guidance_scale=0.0, prompt=None,
                     use_cache: bool = True) -> jax.Array:
        """Codes int32 [N, h, w] drawn position by position (module docstring).

        ``use_cache=False`` re-runs the whole sequence at every step instead of one
        cached decode step (the same draws; a check of the cache, and the baseline of
        benchmarks/token_sampler_speed.py). Guidance runs the conditional and the null
        condition as one batch of 2N unless ``guidance_scale`` is the Python number 0."""
        n = num_samples
        text, label = self.condition(n, cond, prompt)
        guided = not (isinstance(guidance_scale, (int, float)) and guidance_scale == 0)
        if guided and self.config.conditioning == "none":
            raise ValueError("guidance needs a conditional prior")
        if guided:
            null_text, null_label = self._null(n)
            text = None if text is None else jnp.concatenate([text, null_text])
            label = None if label is None else jnp.concatenate([label, null_label])
        rows = 2 * n if guided else n
        length = self.text_len + self.num_image_tokens
        seq = jnp.zeros((rows, length), jnp.int32)
        if self.text:
            seq = seq.at[:, :self.text_len].set(text)
        w = jnp.asarray(guidance_scale, jnp.float32)

        def body(t, carry):
            seq, cache = carry
            if use_cache:
                prev = jnp.take(seq, jnp.maximum(t - 1, 0), axis=1)
                out, cache = self.net.apply(params["net"], prev, t, cache, label,
                                            method=CausalTransformer.decode)
            else:
                out = jnp.take(self.all_logits(params, seq, label), t, axis=1)
            log_p = jax.nn.log_softmax(out, axis=-1)
            if guided:
                log_p = cnd.guided_logits(log_p[:n], log_p[n:], w)
            new = pick_token(jax.random.fold_in(rng, t), log_p, temperature, top_k)
            new = jnp.tile(new, rows // n) + self.offset
            new = jnp.where(t < self.text_len, seq[:, t], new)
            return jax.lax.dynamic_update_index_in_dim(seq, new, t, axis=1), cache

        cache = self.net.init_cache(rows) if use_cache else ()
        seq, _ = jax.lax.fori_loop(0, length, body, (seq, cache))
        codes = seq[:n, self.text_len:] - self.offset
        return codes.reshape((n,) + self.latent_shape)

    def sample(self, params, rng: jax.Array, num_samples: int, cond=None, *,
               temperature=1.0, top_k=0, guidance_scale=0.0, prompt=None) -> jax.Array:
        """uint8 [N, H, W, C]: :meth:`sample_codes` decoded by the VQ-VAE. ``prompt`` (text
        conditioning) is a string or N strings of words of the caption vocabulary; pass it
        bound (``functools.partial``) when jitting."""
        codes = self.sample_codes(params, rng, num_samples, cond, temperature=temperature,
                                  top_k=top_k, guidance_scale=guidance_scale, prompt=prompt)
        return self.decode(params, codes)

    @property
    def num_dims(self) -> int:
        return math.prod(self.config.image_shape)
