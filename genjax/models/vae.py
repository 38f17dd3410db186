"""Variational autoencoders: VAE, beta-VAE and conditional VAE.

Model (notation of the notes): a prior p(z) = N(0, I), a decoder p_theta(x|z)
and a Gaussian encoder q_phi(z|x) = N(mu_phi(x), diag sigma_phi(x)^2).
Training maximises the evidence lower bound

    log p_theta(x) >= E_{q_phi(z|x)}[log p_theta(x|z)] - KL(q_phi(z|x) || p(z)),

with z = mu + sigma * eps, eps ~ N(0, I) (the reparameterization trick), so
the loss is  -E[log p_theta(x|z)] + beta * KL  per example (beta = 1: VAE;
beta > 1: beta-VAE, Higgins et al. 2017). The conditional VAE feeds a class
one-hot y to both networks: q_phi(z|x, y), p_theta(x|z, y).

Decoders (``decoder`` in the config), all measured on the discrete data:

* ``bernoulli``: binarized images (num_levels = 2), p(x|z) = prod Bernoulli.
* ``logistic``: discretized logistic per sub-pixel over the num_levels bins.
* ``gaussian``: discretized Gaussian per sub-pixel over the num_levels bins.

:meth:`VAE.log_prob` is the importance-weighted bound L_K (Burda et al.) with
K = ``iwae_samples``: a lower bound on log p(x), not the exact likelihood.
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp

from genjax.core import conditioning as cnd
from genjax.core import likelihoods as lk
from genjax.core.variational import importance_weighted_bound
from genjax.models.protocol import Capabilities, check_batch
from genjax.nn.autoencoder import ConvDecoder, ConvEncoder

_DECODERS = {"bernoulli": 1, "logistic": 2, "gaussian": 2}  # parameters per sub-pixel


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    image_shape: tuple[int, int, int] = (8, 8, 1)  # (H, W, C) of the data
    num_levels: int = 256          # levels per sub-pixel (2 for binarized data)
    latent_dim: int = 16           # dimension of z
    channels: tuple[int, ...] = (32, 64)   # conv channels per resolution (each halves H, W)
    hidden_dim: int = 256          # width of the dense layers
    decoder: str = "logistic"      # bernoulli | logistic | gaussian
    beta: float = 1.0              # weight of the KL term (beta-VAE)
    num_classes: int = 0           # > 0: conditional VAE on ``label``
    iwae_samples: int = 64         # K of the importance-weighted bound in log_prob

    def __post_init__(self):
        if self.decoder not in _DECODERS:
            raise ValueError(f"decoder must be one of {sorted(_DECODERS)}, got {self.decoder!r}")
        if self.decoder == "bernoulli" and self.num_levels != 2:
            raise ValueError("the bernoulli decoder needs binarized data (num_levels = 2)")
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape}")
        scale = 2 ** len(self.channels)
        if self.image_shape[0] % scale or self.image_shape[1] % scale:
            raise ValueError(
                f"image_shape {self.image_shape[:2]} must be divisible by "
                f"2**len(channels) = {scale}"
            )


class VAE:
    """Gaussian-latent VAE following the genjax model protocol.

    ``params`` is ``{"encoder": ..., "decoder": ...}`` (Flax variables).
    Batches: ``image`` uint8 [B, H, W, C] and, when conditional, ``label`` int32 [B].
    """

    def __init__(self, config: VAEConfig):
        self.config = config
        c = config
        self.capabilities = Capabilities(
            likelihood="bound", likelihood_kind="IWAE lower bound",
            conditioning="class" if c.num_classes else "none", num_classes=c.num_classes,
            encode_decode=True)
        self.encoder = ConvEncoder(c.channels, c.hidden_dim, 2 * c.latent_dim)
        self.decoder = ConvDecoder(c.image_shape, c.channels, c.hidden_dim, _DECODERS[c.decoder])
        self.num_dims = math.prod(c.image_shape)

    # ---------------------------------------------------------------- pieces
    def _cond(self, batch_or_labels, batch_size: int, *, generate: bool = False):
        """One-hot labels [B, K] of a conditional VAE, else None: a batch's, or given ones;
        without them, generation (``decode``, ``sample``) takes the classes in turn
        (:mod:`genjax.core.conditioning`) and encoding is an error."""
        if batch_or_labels is None and not generate and self.config.num_classes:
            raise ValueError("this VAE is conditional: pass class labels (batch['label'] / cond)")
        labels = cnd.labels_of(batch_or_labels, batch_size, self.config.num_classes)
        return None if labels is None else jax.nn.one_hot(labels, self.config.num_classes)

    def _scale(self, image: jax.Array) -> jax.Array:
        """uint8 levels -> network input / likelihood domain."""
        if self.config.decoder == "bernoulli":
            return image.astype(jnp.float32)
        return lk.to_symmetric(image, self.config.num_levels)

    def encode(self, params, image: jax.Array, cond=None):
        """q_phi(z|x): image uint8 [B, H, W, C] -> (mu, log sigma), each [B, D]."""
        chex.assert_rank(image, 4)
        y = self._cond(cond, image.shape[0])
        out = self.encoder.apply(params["encoder"], self._scale(image), y)
        mean, log_scale = jnp.split(out, 2, axis=-1)
        return mean, log_scale

    def decode_params(self, params, z: jax.Array, cond=None) -> jax.Array:
        """p_theta(x|z) parameters: [B, H, W, C, P] (P = 1 logits or 2 mean, log-scale)."""
        y = self._cond(cond, z.shape[0], generate=True)
        out = self.decoder.apply(params["decoder"], z, y)
        return out.reshape(out.shape[:3] + (self.config.image_shape[-1], -1))

    def decoder_log_prob(self, out: jax.Array, image: jax.Array) -> jax.Array:
        """log p_theta(x|z) summed over pixels: out [B, H, W, C, P], image uint8 -> [B]."""
        x = self._scale(image)
        c = self.config
        if c.decoder == "bernoulli":
            logp = lk.bernoulli_log_prob(x, out[..., 0])
        elif c.decoder == "logistic":
            logp = lk.discretized_logistic_log_prob(x, out[..., 0], out[..., 1], c.num_levels)
        else:
            logp = lk.discretized_gaussian_log_prob(x, out[..., 0], out[..., 1], c.num_levels)
        return logp.reshape(logp.shape[0], -1).sum(-1)

    def decode(self, params, z: jax.Array, cond=None, rng=None) -> jax.Array:
        """z [B, D] -> uint8 images: the mean of p_theta(x|z) per sub-pixel (the expected
        level of the discretized distribution, rounded; Bernoulli: the mode), or, given
        ``rng``, a draw of every sub-pixel from p_theta(x|z)."""
        out = self.decode_params(params, z, cond)
        c = self.config
        if c.decoder == "bernoulli":
            probs = jax.nn.sigmoid(out[..., 0])
            x = probs > 0.5 if rng is None else jax.random.bernoulli(rng, probs)
            return x.astype(jnp.uint8)
        mean, log_scale = out[..., 0], out[..., 1]
        if rng is None:
            # E[k] = sum_k k p(k) over the L levels. (The location alone misleads when the
            # network puts it far outside [-1, 1] with a wide scale, as on binary shapes.)
            levels = jnp.arange(c.num_levels)
            x_k = lk.to_symmetric(levels, c.num_levels)
            log_prob = (lk.discretized_logistic_log_prob if c.decoder == "logistic"
                        else lk.discretized_gaussian_log_prob)
            logp = log_prob(x_k, mean[..., None], log_scale[..., None], c.num_levels)
            expected = jnp.sum(jnp.exp(logp) * levels, axis=-1)
            return jnp.clip(jnp.round(expected), 0, c.num_levels - 1).astype(jnp.uint8)
        if c.decoder == "logistic":
            noise = jax.random.logistic(rng, mean.shape)
        else:
            noise = jax.random.normal(rng, mean.shape)
        return lk.from_symmetric(mean + jnp.exp(log_scale) * noise, c.num_levels)

    # -------------------------------------------------------------- protocol
    def init(self, rng: jax.Array, batch: dict) -> dict:
        image = jnp.asarray(batch["image"])
        enc_rng, dec_rng = jax.random.split(rng)
        y = self._cond(batch, image.shape[0])
        z = jnp.zeros((image.shape[0], self.config.latent_dim))
        return {
            "encoder": self.encoder.init(enc_rng, self._scale(image), y),
            "decoder": self.decoder.init(dec_rng, z, y),
        }

    def loss(self, params, batch: dict, rng: jax.Array):
        """Negative (beta-weighted) ELBO in nats per example, averaged over the batch.

        Metrics: ``loss``, ``nelbo_bpd`` (the beta = 1 bound in bits/dim),
        ``rec`` (-E log p_theta(x|z), nats) and ``kl`` (nats).
        """
        image = batch["image"]
        mean, log_scale = self.encode(params, image, batch)
        z = lk.reparameterize(rng, mean, log_scale)
        rec = -self.decoder_log_prob(self.decode_params(params, z, batch), image)
        kl = lk.gaussian_kl(mean, log_scale).sum(-1)
        loss = jnp.mean(rec + self.config.beta * kl)
        metrics = {
            "loss": loss,
            "nelbo_bpd": lk.bits_per_dim(jnp.mean(rec + kl), self.num_dims),
            "rec": jnp.mean(rec),
            "kl": jnp.mean(kl),
        }
        return loss, metrics

    def sample(self, params, rng: jax.Array, num_samples: int, cond=None, *, pixel_sample=False):
        """z ~ p(z), x = decoder mean (or a draw from p_theta(x|z)): uint8 [N, H, W, C].

        ``cond``: class labels (int or int32 [N]) for a conditional VAE (None: the
        classes in turn).
        """
        z_rng, x_rng = jax.random.split(rng)
        z = jax.random.normal(z_rng, (num_samples, self.config.latent_dim))
        return self.decode(params, z, cond, x_rng if pixel_sample else None)

    def log_weights(self, params, batch: dict, rng: jax.Array, num_samples: int) -> jax.Array:
        """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q: [K, B]."""
        image = batch["image"]
        mean, log_scale = self.encode(params, image, batch)

        def one(key):
            z = lk.reparameterize(key, mean, log_scale)
            log_px = self.decoder_log_prob(self.decode_params(params, z, batch), image)
            log_pz = lk.gaussian_log_prob(z, 0.0, 0.0).sum(-1)
            log_qz = lk.gaussian_log_prob(z, mean, log_scale).sum(-1)
            return log_px + log_pz - log_qz

        keys = jax.random.split(rng, num_samples)
        return jax.lax.map(one, keys, batch_size=min(num_samples, 16))

    def log_prob(self, params, batch: dict, rng: jax.Array, num_samples: int | None = None):
        """Importance-weighted lower bound L_K on log p(x), nats per example [B]
        (K = ``num_samples`` or the config's ``iwae_samples``). A bound, not exact."""
        check_batch(self, batch)
        k = num_samples or self.config.iwae_samples
        return importance_weighted_bound(self.log_weights(params, batch, rng, k), axis=0)

    # ------------------------------------------------------------- pictures
    def reconstruct(self, params, batch: dict) -> jax.Array:
        """Decode the posterior mean of each image: uint8 [B, H, W, C]."""
        mean, _ = self.encode(params, batch["image"], batch)
        return self.decode(params, mean, batch)

    def interpolate(self, params, image_a, image_b, num_steps: int, cond=None) -> jax.Array:
        """Decode (1 - a) mu(x_a) + a mu(x_b) for a in linspace(0, 1, num_steps):
        image_a, image_b uint8 [H, W, C] -> uint8 [num_steps, H, W, C]."""
        both = jnp.stack([image_a, image_b])
        y = None if cond is None else jnp.broadcast_to(jnp.asarray(cond), (2,))
        mean, _ = self.encode(params, both, y)
        alpha = jnp.linspace(0.0, 1.0, num_steps)[:, None]
        z = (1 - alpha) * mean[0] + alpha * mean[1]
        y = None if cond is None else jnp.broadcast_to(jnp.asarray(cond), (num_steps,))
        return self.decode(params, z, y)

    def traverse(self, params, image, dim: int, values: jax.Array, cond=None) -> jax.Array:
        """Latent traversal: set z_dim of mu(x) to each of ``values``: uint8 [V, H, W, C]."""
        y = None if cond is None else jnp.asarray([cond])
        mean, _ = self.encode(params, image[None], y)
        z = jnp.repeat(mean, len(values), axis=0).at[:, dim].set(values)
        y = None if cond is None else jnp.full((len(values),), cond)
        return self.decode(params, z, y)
