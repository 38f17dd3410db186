"""VQ-VAE (van den Oord et al. 2017): a discrete autoencoder with a codebook.

Model (notation of the notes): an encoder maps x to a grid of vectors
z_e(x) [h, w, D]; each is replaced by its nearest code e_k of the codebook
{e_k}_{k=1..K} (k* = argmin_k ||z_e - e_k||^2); the decoder maps the grid of
codes z_q back to an image. The loss per image is

    L = ||x - D(z_q)||^2 / (H W C)  +  ||sg[z_e] - e||^2 / D  +  beta ||z_e - sg[e]||^2 / D

averaged over latent positions, with the straight-through estimator
z_e + sg[z_q - z_e] carrying the decoder's gradient to the encoder.

Reconstruction term: the mean squared error on images scaled to [-1, 1], i.e. a
Gaussian decoder of fixed variance (the choice of the paper). It keeps the
reconstruction term on the same per-element scale as the codebook and
commitment terms, so beta = 0.25 means what it means in the paper; a learned
discretized logistic would add a variance whose nats, summed over pixels,
outweigh the VQ terms and would need a re-tuned beta. The VQ-VAE gives no
likelihood by itself, so nothing is lost by not having a normalised decoder.

Codebook training (``quantizer``): ``"loss"`` trains e by the codebook loss;
``"ema"`` (default) sets e to exponential moving averages of the assigned encoder
outputs with Laplace-smoothed counts, and the codebook loss is dropped. Codes
unused for ``dead_window`` steps are re-seeded from random current encoder
outputs when ``restart_dead_codes`` is on.

Parameters and state: ``params = {"encoder", "decoder", "vq", "state"}`` where
``params["vq"]`` holds the trainable codebook (loss mode; absent in EMA mode)
and ``params["state"]`` the non-trainable statistics (EMA codebook, cluster
sizes, sums, steps since each code was last used). The model implements the
train step's state protocol (:mod:`genjax.train.step`):
``loss_and_stats(params, batch, rng) -> (loss, (metrics, stats))`` and
``update_state(params, stats) -> (params, metrics)``; ``loss`` is the plain
protocol form.

No prior: :meth:`sample` decodes codes drawn uniformly and independently per
position, which shows what the decoder does with arbitrary codes, not samples of
the data distribution; real samples come from a prior over the code grid (an
autoregressive token model) trained on :meth:`encode` outputs. ``log_prob`` is
not defined (``None``): without a prior the model has no likelihood.
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import conditioning as cnd
from genjax.core import likelihoods as lk
from genjax.core.metrics import psnr_from_mse
from genjax.core import quantize as vq
from genjax.core.random import batch_draw
from genjax.models.protocol import Capabilities
from genjax.nn.vq import VectorQuantizer, VQDecoder, VQEncoder


@dataclasses.dataclass(frozen=True)
class VQVAEConfig:
    image_shape: tuple[int, int, int] = (16, 16, 1)  # (H, W, C) of the data
    num_levels: int = 256          # levels per sub-pixel of the data
    channels: tuple[int, ...] = (32, 64)   # conv channels per level (each halves H, W)
    num_res_blocks: int = 1        # residual blocks per level
    num_codes: int = 64            # K, codebook size
    code_dim: int = 16             # D, dimension of each code
    quantizer: str = "ema"         # ema (moving-average codebook) | loss (codebook loss)
    beta: float = 0.25             # commitment weight
    codebook_decay: float = 0.99   # EMA decay gamma of the codebook statistics
    restart_dead_codes: bool = True  # re-seed codes unused for dead_window steps
    dead_window: int = 100         # steps without use after which a code is dead

    def __post_init__(self):
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape}")
        scale = 2 ** len(self.channels)
        if self.image_shape[0] % scale or self.image_shape[1] % scale:
            raise ValueError(f"image_shape {self.image_shape[:2]} must be divisible by "
                             f"2**len(channels) = {scale}")
        if self.quantizer not in ("ema", "loss"):
            raise ValueError(f"quantizer must be 'ema' or 'loss', got {self.quantizer!r}")


def psnr(images: jax.Array, reconstructions: jax.Array, num_levels: int) -> jax.Array:
    """Peak signal-to-noise ratio in dB of uint8 levels: 10 log10((L - 1)^2 / MSE),
    the MSE over all sub-pixels of the batch. images, reconstructions [B, H, W, C] -> scalar."""
    diff = images.astype(jnp.float32) - reconstructions.astype(jnp.float32)
    return psnr_from_mse(jnp.mean(jnp.square(diff)), num_levels - 1)


class VQVAE:
    """VQ-VAE following the genjax model protocol (see the module docstring)."""

    def __init__(self, config: VQVAEConfig):
        self.config = c = config
        # No likelihood: that needs a prior over codes (genjax.models.token_prior).
        self.capabilities = Capabilities(encode_decode=True, state=True, split_metrics=True)
        self.encoder = VQEncoder(c.channels, c.code_dim, c.num_res_blocks)
        self.decoder = VQDecoder(c.channels, c.image_shape[-1], c.num_res_blocks)
        self.quantizer = VectorQuantizer(
            c.num_codes, c.code_dim, c.quantizer, c.beta, c.codebook_decay,
            restart=c.restart_dead_codes, dead_window=c.dead_window)
        scale = 2 ** len(c.channels)
        self.latent_shape = (c.image_shape[0] // scale, c.image_shape[1] // scale)

    # ---------------------------------------------------------------- pieces
    def _scale(self, image: jax.Array) -> jax.Array:
        return lk.to_symmetric(image, self.config.num_levels)

    def _trainable_vq(self, params) -> dict:
        return params.get("vq", {})

    def codebook(self, params) -> jax.Array:
        """e [K, D]."""
        return self.quantizer.codebook(self._trainable_vq(params), params["state"])

    def encode(self, params, images: jax.Array) -> jax.Array:
        """images uint8 [B, H, W, C] -> code indices int32 [B, h, w]."""
        chex.assert_rank(images, 4)
        z = self.encoder.apply(params["encoder"], self._scale(images))
        return vq.vector_quantize(z, self.codebook(params))[1]

    def decode_codes(self, params, z_q: jax.Array) -> jax.Array:
        """Code vectors [B, h, w, D] -> decoder output on the [-1, 1] scale [B, H, W, C]."""
        return self.decoder.apply(params["decoder"], z_q)

    def decode(self, params, indices: jax.Array) -> jax.Array:
        """Code indices int [B, h, w] -> uint8 images [B, H, W, C] (rounded to levels)."""
        out = self.decode_codes(params, vq.lookup(self.codebook(params), indices))
        return lk.from_symmetric(out, self.config.num_levels)

    def reconstruct(self, params, batch: dict) -> jax.Array:
        """decode(encode(x)): uint8 [B, H, W, C]."""
        return self.decode(params, self.encode(params, batch["image"]))

    # -------------------------------------------------------------- protocol
    def init(self, rng: jax.Array, batch: dict) -> dict:
        image = jnp.asarray(batch["image"])
        enc_rng, dec_rng, vq_rng = jax.random.split(rng, 3)
        z = jnp.zeros((image.shape[0],) + self.latent_shape + (self.config.code_dim,))
        trainable, state = self.quantizer.init(vq_rng)
        params = {
            "encoder": self.encoder.init(enc_rng, self._scale(image)),
            "decoder": self.decoder.init(dec_rng, z),
            "state": state,
        }
        if trainable:
            params["vq"] = trainable
        return params

    def loss_and_stats(self, params, batch: dict, rng: jax.Array):
        """(loss, (metrics, stats)): the loss of the module docstring, averaged over the
        batch; metrics ``loss``, ``mse`` (on the [-1, 1] scale), ``psnr`` (dB, of the
        unrounded reconstruction, peak-to-peak 2), ``codebook_loss``, ``commitment_loss``;
        stats: the quantizer's batch sums (:meth:`VectorQuantizer.__call__`)."""
        image = batch["image"]
        x = self._scale(image)
        z = self.encoder.apply(params["encoder"], x)
        picks = batch_draw(vq.one_hot_picks, rng, z.shape[:-1] + (self.config.num_codes,))
        z_st, _, losses, stats = self.quantizer(
            self._trainable_vq(params), params["state"], z, picks)
        x_hat = self.decode_codes(params, z_st)
        mse = jnp.mean(jnp.square(x_hat - x))
        loss = mse + losses["codebook"] + losses["commitment"]
        metrics = {
            "loss": loss,
            "mse": mse,
            "psnr": psnr_from_mse(mse, 2.0),
            "codebook_loss": losses["codebook"],
            "commitment_loss": losses["commitment"],
        }
        return loss, (metrics, stats)

    def loss(self, params, batch: dict, rng: jax.Array):
        """Protocol form: (loss, metrics), metrics as :meth:`loss_and_stats` plus this
        batch's ``perplexity`` and ``usage`` of the codebook."""
        loss, (metrics, stats) = self.loss_and_stats(params, batch, rng)
        counts = stats["counts"]
        return loss, dict(metrics, perplexity=vq.codebook_perplexity(counts),
                          usage=vq.codebook_usage(counts))

    def update_state(self, params, stats: dict):
        """After the optimizer step: EMA codebook, unused-step counters and dead-code
        restart from the batch ``stats`` (summed over all devices). Returns (params,
        metrics ``perplexity``, ``usage``, ``dead_codes``)."""
        trainable, state, metrics = self.quantizer.update(
            self._trainable_vq(params), params["state"], stats)
        params = dict(params, state=state)
        if trainable:
            params["vq"] = trainable
        return params, metrics

    def sample(self, params, rng: jax.Array, num_samples: int, cond=None) -> jax.Array:
        """Decode codes drawn uniformly and independently per position: uint8 [N, H, W, C].
        Not samples of the data (that needs a prior over codes; see the module docstring)."""
        cnd.class_labels(cond, num_samples, 0)      # unconditional: no cond
        indices = jax.random.randint(rng, (num_samples,) + self.latent_shape, 0,
                                     self.config.num_codes)
        return self.decode(params, indices)

    def reconstruction_metrics(self, params, batches) -> dict:
        """Over an iterable of batches (e.g. a whole split): ``psnr`` (dB, on the levels, of
        the rounded reconstructions, the MSE pooled over all sub-pixels), ``usage`` (fraction
        of the K codes chosen at least once), ``perplexity`` of the code frequencies and
        ``num_examples``."""
        encode, decode = jax.jit(self.encode), jax.jit(self.decode)
        sq_err, count, counts = 0.0, 0, np.zeros(self.config.num_codes)
        for batch in batches:
            codes = encode(params, batch["image"])
            diff = np.asarray(decode(params, codes), np.float64) - batch["image"]
            sq_err, count = sq_err + np.sum(diff ** 2), count + diff.size
            counts += np.bincount(np.asarray(codes).ravel(), minlength=self.config.num_codes)
        return {"psnr": float(psnr_from_mse(sq_err / count, self.config.num_levels - 1)),
                "usage": float(np.mean(counts > 0)),
                "perplexity": float(vq.codebook_perplexity(jnp.asarray(counts, jnp.float32))),
                "num_examples": int(count // math.prod(self.config.image_shape))}

    split_metrics = reconstruction_metrics    # what `genjax eval` reports

    @property
    def num_dims(self) -> int:
        return math.prod(self.config.image_shape)
