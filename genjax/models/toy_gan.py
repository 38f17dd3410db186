"""A GAN on 2-D points: the worked example of parameter groups and update phases.

The minimax game (Goodfellow et al., 2014) with D(x) = sigmoid(f(x)):
    max_D  E_x log D(x) + E_z log(1 - D(G(z)))      (n_critic updates per step)
    min_G  -E_z log D(G(z))                          (the non-saturating loss)
Each step: ``n_critic`` discriminator phases, each on its own slice of the batch
and its own noise, then one generator phase; the EMA follows the generator only.
``loss`` picks another objective of :mod:`genjax.core.gan_losses` (``"wasserstein"``
with ``gradient_penalty = 10`` is WGAN-GP), and ``pack = m`` lets D judge m samples at
once (PacGAN), two standard mitigations of mode collapse.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.core import conditioning as cnd
from genjax.core import gan_losses as gl
from genjax.core.random import batch_draw
from genjax.models.protocol import Capabilities, Phase, UpdateRule


@dataclasses.dataclass(frozen=True)
class ToyGANConfig:
    image_shape: tuple = (2,)       # the points' shape
    data_key: str = "point"
    latent_dim: int = 2
    hidden: int = 64
    num_layers: int = 2
    n_critic: int = 2               # discriminator updates per generator update
    loss: str = "nonsaturating"     # a key of gan_losses.GENERATOR_LOSSES
    gradient_penalty: float = 0.0   # lambda of E (|grad f(x_hat)| - 1)^2 (WGAN-GP: 10)
    pack: int = 1                   # samples per discriminator decision (PacGAN)

    def __post_init__(self):
        gl.losses(self.loss)        # a clear error for an unknown name
        if self.pack < 1 or self.n_critic < 1:
            raise ValueError("model.pack and model.n_critic must be >= 1")


class MLP(nn.Module):
    hidden: int
    num_layers: int
    out: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.num_layers):
            x = nn.leaky_relu(nn.Dense(self.hidden)(x), 0.2)
        return nn.Dense(self.out)(x)


class ToyGAN:
    def __init__(self, config: ToyGANConfig):
        self.config = c = config
        self.generator = MLP(c.hidden, c.num_layers, c.image_shape[0])
        self.discriminator = MLP(c.hidden, c.num_layers, 1)
        self.d_loss, self.g_loss = gl.losses(c.loss)
        self.capabilities = Capabilities(param_groups=True)

    def update_rule(self) -> UpdateRule:
        return UpdateRule(
            groups={"generator": ("generator",), "discriminator": ("discriminator",)},
            phases=(Phase("discriminator", self.discriminator_loss,
                          repeat=self.config.n_critic, split_batch=True),
                    Phase("generator", self.generator_loss)),
            ema_groups=("generator",))

    def init(self, rng, batch):
        c = self.config
        g, d = jax.random.split(rng)
        z = jnp.zeros((1, c.latent_dim))
        x = jnp.zeros((1, c.pack * c.image_shape[0]))
        return {"generator": self.generator.init(g, z),
                "discriminator": self.discriminator.init(d, x)}

    def _fake(self, params, rng, n):
        z = batch_draw(jax.random.normal, rng, (n, self.config.latent_dim))
        return self.generator.apply(params["generator"], z)

    def _packed(self, x):               # [B, d] -> [B / pack, pack * d]
        if x.shape[0] % self.config.pack:
            raise ValueError(f"a batch of {x.shape[0]} points (per discriminator phase) is not "
                             f"a multiple of model.pack = {self.config.pack}")
        return x.reshape(x.shape[0] // self.config.pack, -1)

    def _logits(self, params, x):       # f(x), D(x) = sigmoid(f(x)), on packed points
        return self.discriminator.apply(params["discriminator"], x)[:, 0]

    def discriminator_loss(self, params, batch, rng):
        real = self._packed(batch[self.config.data_key])
        n = batch[self.config.data_key].shape[0]
        fake = self._packed(jax.lax.stop_gradient(self._fake(params, rng, n)))
        real_f, fake_f = self._logits(params, real), self._logits(params, fake)
        loss = self.d_loss(real_f, fake_f)
        metrics = {"accuracy": gl.discriminator_accuracy(real_f, fake_f)}
        if self.config.gradient_penalty:
            penalty = gl.gradient_penalty(lambda x: self._logits(params, x), real, fake,
                                          jax.random.fold_in(rng, 1))
            loss = loss + self.config.gradient_penalty * penalty
            metrics["gradient_penalty"] = penalty
        return loss, {"loss": loss, **metrics}

    def generator_loss(self, params, batch, rng):
        fake = self._fake(params, rng, batch[self.config.data_key].shape[0])
        loss = self.g_loss(self._logits(params, self._packed(fake)))
        return loss, {"loss": loss}

    def loss(self, params, batch, rng):
        d, _ = self.discriminator_loss(params, batch, rng)
        g, _ = self.generator_loss(params, batch, rng)
        return d + g, {"discriminator_loss": d, "generator_loss": g}

    def sample(self, params, rng, num_samples, cond=None):
        cnd.class_labels(cond, num_samples, 0)       # unconditional: no cond
        return self._fake(params, rng, num_samples)
