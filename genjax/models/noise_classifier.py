"""Noise-conditional classifiers p_phi(y | x_t), for classifier guidance (Song et al., 2021;
Dhariwal & Nichol, 2021).

Classifier guidance samples p_t(x | y) with an unconditional score model, since by Bayes

    grad_x log p_t(x | y) = grad_x log p_t(x) + grad_x log p_t(y | x),

and the second term is the gradient of a classifier of *noisy* data: x_t = a(t) x_0 + std(t) z
for (x_0, y) from the data. Scaled by gamma (``classifier_scale`` of the score model), the
sum is the score of p_t(x) p_t(y | x)^gamma, which sharpens the classes for gamma > 1.

The classifier sees the noise level through the log signal-to-noise ratio
lambda = log(a^2 / std^2) rather than through a time, so that one classifier serves every
process with Gaussian marginals of the same lambda range (the VP, sub-VP and VE SDEs of
:mod:`genjax.core.sde`, the discrete DDPM chain). It is trained under the forward SDE
``sde`` (with ``beta_min``/``beta_max`` or ``sigma_min``/``sigma_max``) at times
t ~ U(train_eps, 1) by cross-entropy,

    L(phi) = E_{t, (x_0, y), z} [-log p_phi(y | a(t) x_0 + std(t) z, lambda(t))],

with images at their bin centres x_0 = 2 (k + 1/2) / L - 1 (the score models' scale), on
the input scaled to unit variance, c_in x_t with c_in = 1 / sqrt(a^2 + std^2), as the
score model does. The network is the encoder half of the diffusion U-Net (its ResBlocks with
the embedding of 100 lambda, downsampling between levels), global mean pooling and a linear
layer to the logits.

It has no sampler and no likelihood: ``genjax eval`` reports its accuracy on the split at
several noise levels (``split_metrics``), and a score model uses a trained run through
``classifier_workdir`` (:class:`genjax.models.score.ScoreSDE`).
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import bijectors as bj
from genjax.core.random import batch_draw
from genjax.models.protocol import Capabilities, check_data_fields
from genjax.nn.unet import Downsample, GroupNorm32, ResBlock, sinusoidal_embedding

LOGSNR_SCALE = 100.0        # the embedding sees 100 lambda (lambda of order 10)
ACCURACY_TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)   # split_metrics: accuracy at these t


@dataclasses.dataclass(frozen=True)
class NoiseClassifierConfig:
    image_shape: tuple[int, ...] = (16, 16, 1)
    num_levels: int = 256
    data_key: str = "image"
    num_classes: int = 10
    sde: str = "vp"                 # the forward SDE of the training noise: vp | subvp | ve
    beta_min: float = 0.1
    beta_max: float = 20.0
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    train_eps: float = 1e-5         # t ~ U(train_eps, 1)
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    dropout: float = 0.0

    def __post_init__(self):
        check_data_fields(self.data_key, self.image_shape, self.num_levels)
        if self.data_key != "image":
            raise ValueError("noise_classifier classifies images (data_key = 'image')")
        if self.num_classes < 2:
            raise ValueError(f"model.num_classes must be >= 2, got {self.num_classes}")
        if self.sde not in ("vp", "subvp", "ve"):
            raise ValueError(f"model.sde must be one of ['vp', 'subvp', 've'], got {self.sde!r}")
        if not 0 < self.train_eps < 1:
            raise ValueError("model.train_eps must be in (0, 1)")


class ClassifierNet(nn.Module):
    """x [B, H, W, C], lambda [B] -> logits [B, num_classes] (see the module docstring)."""

    num_classes: int
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, logsnr, *, train: bool = False):
        emb_dim = 4 * self.base_channels
        emb = sinusoidal_embedding(LOGSNR_SCALE * logsnr, self.base_channels)
        emb = nn.Dense(emb_dim)(nn.silu(nn.Dense(emb_dim)(emb)))
        res = functools.partial(ResBlock, dropout=self.dropout)
        h = nn.Conv(self.base_channels * self.channel_mults[0], (3, 3))(x)
        for level, mult in enumerate(self.channel_mults):
            for _ in range(self.num_res_blocks):
                h = res(self.base_channels * mult)(h, emb, train=train)
            if level != len(self.channel_mults) - 1:
                h = Downsample()(h)
        h = nn.silu(GroupNorm32()(h)).mean(axis=(1, 2))
        return nn.Dense(self.num_classes)(h)


class NoiseClassifier:
    """A classifier of noisy images following the genjax protocol (no sampler); see the
    module docstring. ``params``: ``{"net": ...}``."""

    def __init__(self, config: NoiseClassifierConfig):
        from genjax.models.score import make_sde

        self.config = c = config
        self.sde = make_sde(c)
        self.num_classes = c.num_classes
        self.net = ClassifierNet(c.num_classes, c.base_channels, tuple(c.channel_mults),
                                 c.num_res_blocks, c.dropout)
        self.capabilities = Capabilities(split_metrics=True)

    # ------------------------------------------------------------- classifier
    def log_probs(self, params, x, a, std, *, train: bool = False, rng=None) -> jax.Array:
        """log p_phi(. | x) [B, num_classes] for x [B, H, W, C] = a x_0 + std z with the
        marginal coefficients a, std (broadcastable to x, per example)."""
        a = jnp.broadcast_to(a, x.shape[:1] + (1,) * (x.ndim - 1))
        std = jnp.broadcast_to(std, a.shape)
        logsnr = (2.0 * (jnp.log(a) - jnp.log(std))).reshape(-1)
        c_in = jax.lax.rsqrt(a ** 2 + std ** 2)
        rngs = {"dropout": rng} if train and rng is not None else None
        logits = self.net.apply(params["net"], c_in * x, logsnr, train=train, rngs=rngs)
        return jax.nn.log_softmax(logits)

    def grad_log_prob(self, params, x, a, std, y) -> jax.Array:
        """grad_x log p_phi(y | x) [B, ...]: the guidance term (each example's log-probability
        depends on its own x only, so the gradient of the sum is per example)."""
        def total(x):
            logp = self.log_probs(params, x, a, std)
            return jnp.take_along_axis(logp, y[:, None], axis=1).sum()
        return jax.grad(total)(x)

    def _noisy(self, batch, t, z):
        c = self.config
        y, _ = bj.dequantize_forward(batch[c.data_key], 0.5, c.num_levels)   # bin centres
        x0 = 2.0 * y - 1.0
        ones = jnp.ones((x0.shape[0],) + (1,) * (x0.ndim - 1))
        a, std = self.sde.marginal_prob(ones, t)
        return a * x0 + std * z, a, std

    # ------------------------------------------------------------- protocol
    def init(self, rng: jax.Array, batch: dict) -> dict:
        n = batch[self.config.data_key].shape[0]
        x = jnp.zeros((n,) + tuple(self.config.image_shape))
        return {"net": self.net.init(rng, x, jnp.zeros((n,)))}

    def loss(self, params, batch: dict, rng: jax.Array):
        """Cross-entropy of the labels at x_t, t ~ U(train_eps, 1); ``rng`` splits into
        (t, z, dropout). Metrics ``loss`` (nats) and ``accuracy``."""
        c = self.config
        k_t, k_z, k_drop = jax.random.split(rng, 3)
        data = batch[c.data_key]
        t = batch_draw(jax.random.uniform, k_t, data.shape[:1], minval=c.train_eps, maxval=1.0)
        z = batch_draw(jax.random.normal, k_z, data.shape)
        x, a, std = self._noisy(batch, t, z)
        logp = self.log_probs(params, x, a, std, train=True, rng=k_drop)
        y = batch["label"]
        loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        accuracy = jnp.mean(jnp.argmax(logp, axis=1) == y)
        return loss, {"loss": loss, "accuracy": accuracy}

    def sample(self, params, rng, num_samples: int, cond=None):
        raise ValueError("a noise_classifier does not sample: train it, then guide a score "
                         "model with --config.model.classifier_workdir=<this run>")

    def split_metrics(self, params, batches) -> dict:
        """Accuracy on the split at t in ``ACCURACY_TIMES`` (t = 0 is the clean data;
        ``accuracy_t<t>``), with one fixed noise draw per batch; and ``num_examples``."""
        c = self.config

        @jax.jit
        def correct(params, batch, key):
            z = jax.random.normal(key, batch[c.data_key].shape)
            out = []
            for t in ACCURACY_TIMES:
                tb = jnp.full(z.shape[:1], max(t, c.train_eps))
                x, a, std = self._noisy(batch, tb, z)
                pred = jnp.argmax(self.log_probs(params, x, a, std), axis=1)
                out.append(jnp.sum(pred == batch["label"]))
            return jnp.stack(out)

        totals, count = np.zeros(len(ACCURACY_TIMES)), 0
        for i, batch in enumerate(batches):
            batch = {k: batch[k] for k in (c.data_key, "label")}
            totals += np.asarray(correct(params, batch, jax.random.key(i)))
            count += len(batch["label"])
        out = {f"accuracy_t{t:g}": float(v / max(count, 1))
               for t, v in zip(ACCURACY_TIMES, totals)}
        return {**out, "num_examples": count}
