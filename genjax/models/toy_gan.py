"""A GAN on 2-D points: the worked example of parameter groups and update phases.

The minimax game (Goodfellow et al., 2014) with D(x) = sigmoid(f(x)):
    max_D  E_x log D(x) + E_z log(1 - D(G(z)))      (n_critic updates per step)
    min_G  -E_z log D(G(z))                          (the non-saturating loss)
:class:`genjax.models.gan.GAN` declares the two groups and the phases (``n_critic``
discriminator phases, each on its own slice of the batch and its own noise, then one
generator phase; the EMA follows the generator only); this file gives it two MLPs and
says how points enter the discriminator. ``loss`` picks another objective of
:mod:`genjax.core.gan_losses` (``"wasserstein"`` with ``gradient_penalty = 10`` is
WGAN-GP), and ``pack = m`` lets D judge m samples at once (PacGAN), two standard
mitigations of mode collapse. ``generator_activation = "relu"`` and ``maxout`` give the
networks of PacGAN's 2-D experiments (a ReLU generator, a maxout discriminator).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from genjax.core import gan_losses as gl
from genjax.models.gan import GAN
from genjax.models.protocol import Capabilities


@dataclasses.dataclass(frozen=True)
class ToyGANConfig:
    image_shape: tuple = (2,)       # the points' shape
    data_key: str = "point"
    latent_dim: int = 2
    hidden: int = 64                # G's width and depth (and D's unless given below)
    num_layers: int = 2
    discriminator_hidden: int = 0   # D's width (0: hidden)
    discriminator_layers: int = 0   # D's depth (0: num_layers)
    n_critic: int = 2               # discriminator updates per generator update
    loss: str = "nonsaturating"     # a key of gan_losses.GENERATOR_LOSSES
    gradient_penalty: float = 0.0   # lambda of E (|grad f(x_hat)| - 1)^2 (WGAN-GP: 10)
    r1_gamma: float = 0.0           # gamma of R1: (gamma / 2) E |grad f(x)|^2 on real data
    pack: int = 1                   # samples per discriminator decision (PacGAN)
    generator_activation: str = "leaky_relu"  # G's hidden units: leaky_relu (0.2) | relu
    maxout: int = 1                 # > 1: D's hidden units are maxout units of this many pieces

    def __post_init__(self):
        gl.losses(self.loss)        # a clear error for an unknown name
        if self.pack < 1 or self.n_critic < 1 or self.maxout < 1:
            raise ValueError("model.pack, model.n_critic and model.maxout must be >= 1")
        if self.generator_activation not in ("leaky_relu", "relu"):
            raise ValueError(f"model.generator_activation must be leaky_relu or relu, "
                             f"got {self.generator_activation!r}")


class MLP(nn.Module):
    """``num_layers`` hidden layers of ``hidden`` units, then a linear layer to ``out``.

    A hidden unit is Dense then LeakyReLU(0.2), or ReLU (``activation="relu"``: units switch
    off, so G can send whole regions of z to almost one point, as tight modes need), or with
    ``maxout = k > 1`` the maximum of k affine pieces (Goodfellow et al., 2013).
    """

    hidden: int
    num_layers: int
    out: int
    activation: str = "leaky_relu"
    maxout: int = 1

    @nn.compact
    def __call__(self, x):
        for _ in range(self.num_layers):
            x = nn.Dense(self.hidden * self.maxout)(x)
            if self.maxout > 1:
                x = x.reshape(x.shape[:-1] + (self.hidden, self.maxout)).max(axis=-1)
            elif self.activation == "relu":
                x = nn.relu(x)
            else:
                x = nn.leaky_relu(x, 0.2)
        return nn.Dense(self.out)(x)


class ToyGAN(GAN):
    def __init__(self, config: ToyGANConfig):
        super().__init__(config, Capabilities(param_groups=True))
        self.pack = config.pack
        self.generator = MLP(config.hidden, config.num_layers, config.image_shape[0],
                             activation=config.generator_activation)
        self.discriminator = MLP(config.discriminator_hidden or config.hidden,
                                 config.discriminator_layers or config.num_layers, 1,
                                 maxout=config.maxout)

    def _real(self, batch):             # points as they are
        return batch[self.config.data_key]

    def _judged(self, x):               # [B, d] -> [B / pack, pack * d]
        if x.shape[0] % self.pack:
            raise ValueError(f"a batch of {x.shape[0]} points (per discriminator phase) is not "
                             f"a multiple of model.pack = {self.pack}")
        return x.reshape(x.shape[0] // self.pack, -1)

    def _output(self, x):
        return x
