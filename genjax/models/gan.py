"""GANs on images: DCGAN, WGAN (weight clipping), WGAN-GP, R1, and the class-conditional
GAN with a projection discriminator; inversion of the generator by optimisation.

The game (Goodfellow et al., 2014), with the discriminator D(x) = sigmoid(f(x)):

    max_D  E_{x ~ p_d} log D(x) + E_z log(1 - D(G(z)))        (n_critic updates per step)
    min_G  -E_z log D(G(z))                                     (the non-saturating loss)

For a fixed G the best discriminator is D* = p_d / (p_d + p_g), at which the value is
-log 4 + 2 JS(p_d || p_g). ``loss`` picks another objective of
:mod:`genjax.core.gan_losses`: ``"wasserstein"`` makes f a critic of
W(p_d, p_g) = sup_{|f|_L <= 1} E_{p_d} f - E_{p_g} f, kept 1-Lipschitz either by clipping
its weights (WGAN: ``config.optimizer.groups.discriminator.clip_weights``) or by the
gradient penalty lambda E (|grad f(x_hat)| - 1)^2 on random interpolates (WGAN-GP:
``gradient_penalty = 10``). ``r1_gamma`` adds (gamma / 2) E_{p_d} |grad f(x)|^2 (R1).

Networks follow the DCGAN guidelines (Radford et al., 2016): strided convolutions
instead of pooling, ReLU in G and LeakyReLU(0.2) in D, tanh output, no fully connected
hidden layers but the projection of z. Where DCGAN uses batch normalisation, G uses group
normalisation and D layer normalisation (``critic_norm``): a sample then depends on its
own z only, and the per-example gradient of the penalties is well defined.

Mixed precision (``compute_dtype``, :mod:`genjax.nn.precision`): the convolutions and
dense layers of both networks compute in that dtype (bfloat16 on accelerators) with
float32 parameters; the normalisations, the generator's last convolution and tanh, the
discriminator's logits and the losses stay float32.

Class-conditional (``num_classes > 0``): G gets a learned label embedding next to z, and D
is the projection discriminator (Miyato & Koyama, 2018),
f(x, y) = psi(phi(x)) + embed(y)^T phi(x). Without ``cond`` samples take the classes in
turn (:mod:`genjax.core.conditioning`).

:class:`GAN` holds what every GAN of genjax shares (the two parameter groups, the phases,
the penalties, sampling and inversion); a family supplies the two networks and, where
the data is not an image, how data and samples enter and leave them
(:mod:`genjax.models.toy_gan`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from genjax.core import conditioning as cnd
from genjax.core import gan_losses as gl
from genjax.core import inversion
from genjax.core.likelihoods import from_symmetric, to_symmetric
from genjax.core.random import batch_draw
from genjax.models.protocol import Capabilities, Phase, UpdateRule
from genjax.nn import precision


class GAN:
    """Two parameter groups, ``generator`` and ``discriminator``; each step runs
    ``n_critic`` discriminator phases (each on its own slice of the batch and its own
    noise) and one generator phase; the EMA follows the generator only.

    Subclasses set ``self.generator`` (``apply(params, z[, labels])``) and
    ``self.discriminator`` (``apply(params, x[, labels]) -> [B, 1]`` logits f) and may
    override :meth:`_real`, :meth:`_judged` and :meth:`_output`. The config needs
    ``data_key``, ``latent_dim``, ``n_critic``, ``loss``, ``gradient_penalty`` and
    ``r1_gamma``; class conditioning is what ``capabilities`` declares, and ``pack`` (1) the
    number of examples D judges at once.
    """

    generator: nn.Module
    discriminator: nn.Module

    def __init__(self, config, capabilities: Capabilities):
        self.config = config
        self.d_loss, self.g_loss = gl.losses(config.loss)
        self.capabilities = capabilities

    pack = 1                        # examples per discriminator decision (PacGAN: m)

    @property
    def num_classes(self) -> int:
        """Classes of a class-conditional GAN, as its capabilities declare (0: none)."""
        return self.capabilities.num_classes

    def update_rule(self) -> UpdateRule:
        return UpdateRule(
            groups={"generator": ("generator",), "discriminator": ("discriminator",)},
            phases=(Phase("discriminator", self.discriminator_loss,
                          repeat=self.config.n_critic, split_batch=True),
                    Phase("generator", self.generator_loss)),
            ema_groups=("generator",))

    # -- how data enters and leaves the networks (images here) -------------------------
    def _real(self, batch):
        """The batch's data in the networks' space."""
        return to_symmetric(batch[self.config.data_key], self.config.num_levels)

    def _judged(self, x):
        """Data-space examples [B, ...] as the discriminator takes them."""
        return x

    def _output(self, x):
        """Generator outputs as samples (uint8 levels for images)."""
        return from_symmetric(x, self.config.num_levels)

    def _labels(self, batch, n):
        return cnd.labels_of(batch, n, self.num_classes)

    # -- the two networks -------------------------------------------------------------
    def _network_args(self, labels):
        return () if labels is None else (labels,)

    def init(self, rng, batch):
        del batch                                   # shapes come from the config
        c = self.config
        g, d = jax.random.split(rng)
        n = self.pack                               # examples in one discriminator input
        labels = jnp.zeros((n,), jnp.int32) if self.num_classes else None
        args = self._network_args(labels)
        x = self._judged(jnp.zeros((n,) + tuple(c.image_shape)))
        return {"generator": self.generator.init(g, jnp.zeros((n, c.latent_dim)), *args),
                "discriminator": self.discriminator.init(d, x, *args)}

    def generate(self, params, z, labels=None):
        """G(z[, y]) in the networks' space."""
        return self.generator.apply(params["generator"], z, *self._network_args(labels))

    def _fake(self, params, rng, n, labels=None):
        z = batch_draw(jax.random.normal, rng, (n, self.config.latent_dim))
        return self.generate(params, z, labels)

    def _logits(self, params, x, labels=None):
        """f(x[, y]) [B] on examples as the discriminator takes them."""
        out = self.discriminator.apply(params["discriminator"], x, *self._network_args(labels))
        return out[:, 0]

    # -- the phases -------------------------------------------------------------------
    def discriminator_loss(self, params, batch, rng):
        c = self.config
        real_x = self._real(batch)
        n = real_x.shape[0]
        labels = self._labels(batch, n)
        real = self._judged(real_x)
        fake = self._judged(jax.lax.stop_gradient(self._fake(params, rng, n, labels)))
        # Packed inputs (PacGAN) judge groups of examples; labels then do not apply.
        judged_labels = labels if real.shape[0] == n else None

        def critic(x):
            return self._logits(params, x, judged_labels)

        real_f, fake_f = critic(real), critic(fake)
        loss = self.d_loss(real_f, fake_f)
        metrics = {"accuracy": gl.discriminator_accuracy(real_f, fake_f)}
        if c.gradient_penalty:
            penalty = gl.gradient_penalty(critic, real, fake, jax.random.fold_in(rng, 1))
            loss = loss + c.gradient_penalty * penalty
            metrics["gradient_penalty"] = penalty
        if c.r1_gamma:
            r1 = gl.r1_penalty(critic, real)
            loss = loss + 0.5 * c.r1_gamma * r1
            metrics["r1"] = r1
        return loss, {"loss": loss, **metrics}

    def generator_loss(self, params, batch, rng):
        n = batch[self.config.data_key].shape[0]
        labels = self._labels(batch, n)
        judged = self._judged(self._fake(params, rng, n, labels))
        loss = self.g_loss(self._logits(params, judged, labels if judged.shape[0] == n else None))
        return loss, {"loss": loss}

    def loss(self, params, batch, rng):
        d, _ = self.discriminator_loss(params, batch, rng)
        g, _ = self.generator_loss(params, batch, rng)
        return d + g, {"discriminator_loss": d, "generator_loss": g}

    def sample(self, params, rng, num_samples, cond=None):
        labels = cnd.class_labels(cond, num_samples, self.num_classes)
        return self._output(self._fake(params, rng, num_samples, labels))

    def invert(self, params, rng, images, num_steps, *, cond=None, learning_rate=0.1):
        """z* = argmin_z |G(z[, y]) - x|^2 per image by Adam from z_0 ~ N(0, I) (z = 0 is a
        stationary point of a generator whose first layer is normalised), ``num_steps``
        steps in one ``lax.scan``. Returns (z* [B, latent_dim], G(z*) as samples).
        ``cond``: the images' labels for a class-conditional G (default: the classes in
        turn, as in :meth:`sample`)."""
        target = self._real({self.config.data_key: images})
        labels = cnd.class_labels(cond, target.shape[0], self.num_classes)

        def loss_fn(z):
            return inversion.reconstruction_mse(target, self.generate(params, z, labels))

        z0 = batch_draw(jax.random.normal, rng, (target.shape[0], self.config.latent_dim))
        z, _ = inversion.optimize(loss_fn, z0, num_steps, optax.adam(learning_rate))
        return z, self._output(self.generate(params, z, labels))


@dataclasses.dataclass(frozen=True)
class GANConfig:
    image_shape: tuple = (16, 16, 1)  # H = W, a power of 2, at least 8
    num_levels: int = 256
    data_key: str = "image"
    latent_dim: int = 64
    channels: int = 32              # G's last and D's first width; doubled per resolution
    num_classes: int = 0            # > 0: class-conditional (projection discriminator)
    n_critic: int = 1               # discriminator updates per generator update
    loss: str = "nonsaturating"     # a key of gan_losses.GENERATOR_LOSSES
    gradient_penalty: float = 0.0   # lambda of WGAN-GP (10)
    r1_gamma: float = 0.0           # gamma of R1: (gamma / 2) E |grad f(x)|^2 on real data
    critic_norm: str = "layer"      # layer | none: normalisation in D's hidden layers
    compute_dtype: str = "float32"  # network computation dtype (bfloat16 on accelerators)

    def __post_init__(self):
        gl.losses(self.loss)        # a clear error for an unknown name
        precision.compute_dtype(self.compute_dtype)
        h, w = self.image_shape[:2]
        if h != w or h < 8 or h & (h - 1):
            raise ValueError(f"model.image_shape must be square with a power-of-2 side >= 8, "
                             f"got {self.image_shape}")
        if self.n_critic < 1 or self.latent_dim < 1 or self.channels < 1:
            raise ValueError("model.n_critic, latent_dim and channels must be >= 1")
        if self.critic_norm not in ("layer", "none"):
            raise ValueError(f"model.critic_norm must be layer or none, got {self.critic_norm!r}")

    @property
    def num_upsamplings(self) -> int:
        return int(math.log2(self.image_shape[0])) - 2          # from 4x4


def _group_norm(channels: int) -> nn.GroupNorm:
    """Group norm computed in float32 (the caller casts its input to float32)."""
    return nn.GroupNorm(num_groups=min(8, channels), dtype=jnp.float32)


class DCGANGenerator(nn.Module):
    """z [B, D] (+ label embedding) -> 4x4 x (C 2^k) -> k x [nearest 2x upsampling, 3x3
    conv, group norm, ReLU] -> 3x3 conv -> tanh, in [-1, 1]^(H x W x channels).

    Upsampling then convolving replaces DCGAN's fractionally strided convolution: it
    has no checkerboard artefacts (Odena et al., 2016), and XLA:CPU differentiates it
    about 8x faster than a 4x4 transposed convolution of the same widths. ``dtype``: the
    computation dtype of the hidden layers (the output layer is float32)."""

    image_shape: tuple
    channels: int
    num_upsamplings: int
    num_classes: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z, labels=None):
        if self.num_classes:
            z = jnp.concatenate([z, nn.Embed(self.num_classes, z.shape[-1])(labels)], axis=-1)
        width = self.channels * 2 ** self.num_upsamplings
        x = nn.Dense(4 * 4 * width, dtype=self.dtype)(z).reshape(z.shape[0], 4, 4, width)
        x = nn.relu(_group_norm(width)(x.astype(jnp.float32))).astype(self.dtype)
        for _ in range(self.num_upsamplings):
            width //= 2
            b, h, w, ch = x.shape
            x = jax.image.resize(x, (b, 2 * h, 2 * w, ch), "nearest")
            x = nn.Conv(width, (3, 3), padding="SAME", dtype=self.dtype)(x)
            x = nn.relu(_group_norm(width)(x.astype(jnp.float32))).astype(self.dtype)
        out = nn.Conv(self.image_shape[-1], (3, 3), padding="SAME", dtype=jnp.float32)(x)
        return jnp.tanh(out)


class DCGANDiscriminator(nn.Module):
    """x -> k x [4x4 conv stride 2, (layer norm), LeakyReLU 0.2] -> phi(x) (flattened 4x4
    features) -> f = psi(phi) [+ embed(y)^T phi] as logits [B, 1]. ``dtype``: the
    computation dtype of the convolutions (layer norms and logits are float32)."""

    channels: int
    num_downsamplings: int
    num_classes: int = 0
    norm: str = "layer"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, labels=None):
        width = self.channels
        x = x.astype(self.dtype)
        for i in range(self.num_downsamplings):
            x = nn.Conv(width, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype)(x)
            if i and self.norm == "layer":
                x = nn.LayerNorm(reduction_axes=(-3, -2, -1), dtype=jnp.float32)(
                    x.astype(jnp.float32))
            x = nn.leaky_relu(x, 0.2).astype(self.dtype)
            width *= 2
        phi = x.reshape(x.shape[0], -1).astype(jnp.float32)
        out = nn.Dense(1)(phi)
        if self.num_classes:
            projection = nn.Embed(self.num_classes, phi.shape[-1])(labels)
            out = out + jnp.sum(projection * phi, axis=-1, keepdims=True)
        return out


class ImageGAN(GAN):
    """DCGAN, WGAN, WGAN-GP and the projection cGAN on images (see the module docstring)."""

    def __init__(self, config: GANConfig):
        super().__init__(config, Capabilities(
            param_groups=True, inversion=True,
            conditioning="class" if config.num_classes else "none",
            num_classes=config.num_classes))
        k = config.num_upsamplings
        dtype = precision.compute_dtype(config.compute_dtype)
        self.generator = DCGANGenerator(config.image_shape, config.channels, k,
                                        config.num_classes, dtype)
        self.discriminator = DCGANDiscriminator(config.channels, k, config.num_classes,
                                                config.critic_norm, dtype)
