"""A GAN on 2-D points: the worked example of parameter groups and update phases.

The minimax game (Goodfellow et al., 2014) with D(x) = sigmoid(f(x)):
    max_D  E_x log D(x) + E_z log(1 - D(G(z)))      (n_critic updates per step)
    min_G  -E_z log D(G(z))                          (the non-saturating loss)
Each step: ``n_critic`` discriminator phases, each on its own slice of the batch
and its own noise, then one generator phase; the EMA follows the generator only.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.core import conditioning as cnd
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
        self.capabilities = Capabilities(param_groups=True)

    def update_rule(self) -> UpdateRule:
        return UpdateRule(
            groups={"generator": ("generator",), "discriminator": ("discriminator",)},
            phases=(Phase("discriminator", self.discriminator_loss,
                          repeat=self.config.n_critic, split_batch=True),
                    Phase("generator", self.generator_loss)),
            ema_groups=("generator",))

    def init(self, rng, batch):
        g, d = jax.random.split(rng)
        x = batch[self.config.data_key]
        z = jnp.zeros((x.shape[0], self.config.latent_dim))
        return {"generator": self.generator.init(g, z), "discriminator": self.discriminator.init(d, x)}

    def _fake(self, params, rng, n):
        z = batch_draw(jax.random.normal, rng, (n, self.config.latent_dim))
        return self.generator.apply(params["generator"], z)

    def _logits(self, params, x):       # f(x), D(x) = sigmoid(f(x))
        return self.discriminator.apply(params["discriminator"], x)[:, 0]

    def discriminator_loss(self, params, batch, rng):
        real = batch[self.config.data_key]
        fake = jax.lax.stop_gradient(self._fake(params, rng, real.shape[0]))
        # -log D(x) = softplus(-f(x)),  -log(1 - D(x)) = softplus(f(x))
        loss = (jnp.mean(jax.nn.softplus(-self._logits(params, real)))
                + jnp.mean(jax.nn.softplus(self._logits(params, fake))))
        return loss, {"loss": loss}

    def generator_loss(self, params, batch, rng):
        fake = self._fake(params, rng, batch[self.config.data_key].shape[0])
        loss = jnp.mean(jax.nn.softplus(-self._logits(params, fake)))
        return loss, {"loss": loss}

    def loss(self, params, batch, rng):
        d, _ = self.discriminator_loss(params, batch, rng)
        g, _ = self.generator_loss(params, batch, rng)
        return d + g, {"discriminator_loss": d, "generator_loss": g}

    def sample(self, params, rng, num_samples, cond=None):
        cnd.class_labels(cond, num_samples, 0)       # unconditional: no cond
        return self._fake(params, rng, num_samples)
