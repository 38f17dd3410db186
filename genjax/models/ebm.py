"""Energy-based models trained by contrastive divergence with short-run Langevin chains
started from a replay buffer (Du & Mordatch, 2019, "IGEBM"; Grathwohl et al., 2020, "JEM").

Notation of the notes: an energy network E_theta(x) defines

    p_theta(x) = exp(-E_theta(x)) / Z_theta,   Z_theta = int exp(-E_theta(x)) dx,

whose partition function Z_theta is intractable, so the family has no likelihood
(``capabilities.likelihood = "none"``). The gradient of the log-likelihood is

    grad_theta E_{x ~ data}[log p_theta(x)]
        = -E_{x ~ data}[grad_theta E_theta(x)] + E_{x ~ p_theta}[grad_theta E_theta(x)],

and contrastive divergence estimates the second expectation with samples x_model of a
short Langevin run. The loss minimised here (a mean over the batch) is

    L(theta) = E_theta(x_data) - E_theta(sg(x_model))
               + alpha (E_theta(x_data)^2 + E_theta(sg(x_model))^2),

sg = stop_gradient (no gradient flows through the chain), alpha = ``energy_reg``: IGEBM's
penalty on the energy magnitudes, which keeps the two energies from drifting apart to
+-infinity (the divergence JEM/IGEBM users report without it). Its gradient at alpha = 0
is E_data grad_theta E - E_model grad_theta E.

Sampling (``langevin_steps`` in training, ``sample_steps`` in ``sample``) is the Langevin
move of IGEBM/JEM with separate step and noise sizes,

    x <- x - step_size grad_x E_theta(x) + noise_scale z,   z ~ N(0, I),

run by :func:`genjax.core.langevin.langevin` (one ``lax.scan``) with eps = noise_scale^2 / 2
and score -(step_size / eps) grad_x E: unadjusted Langevin on the tempered density
p_theta^{1/T}, T = noise_scale^2 / (2 step_size) (T = 1, the model itself, when
noise_scale = sqrt(2 step_size); image EBMs use T << 1).

Replay buffer. ``params["state"]["buffer"]`` [N, ...] holds N persistent chains
(non-trainable state, checkpointed with the params). A training step picks B distinct slots
of the buffer from its key (a global permutation drawn with ``batch_draw``, so the slots are
distinct across devices too), restarts each chain from uniform noise on
[-init_scale, init_scale]^D with probability ``reinit_prob`` (else from its slot), runs the
short chain and returns as ``stats`` the sums over the batch ``writes`` = sum_b onehot(slot_b)
x_b [N, ...] and ``hits`` = sum_b onehot(slot_b) [N]; ``update_state`` (after the optimizer
step; ``psum``-ed over devices under pmap) writes x into the hit slots. The restarts and the
chains' Langevin noise are drawn per example (``batch_draw``) too, so a step on a device
mesh or under pmap equals the single-device step (the parity check).

Data. Images of L levels map to [-1, 1] by y = 2 k / (L - 1) - 1
(:func:`genjax.core.likelihoods.to_symmetric`), plus N(0, data_noise^2) noise in training as
IGEBM does; chains are clipped to [-1, 1] at their end, and samples map back with
:func:`~genjax.core.likelihoods.from_symmetric`. 2-D points are modelled as they are; on them
:meth:`EBM.log_prob_grid` normalises p_theta numerically on a grid (for plots and tests).

Networks: a residual-free MLP with swish activations for points, a small strided conv net
(swish, global mean pool, linear head) for images; both output one scalar energy.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.core import conditioning as cnd
from genjax.core import langevin as lg
from genjax.core.likelihoods import from_symmetric, to_symmetric
from genjax.core.random import batch_draw
from genjax.models.protocol import Capabilities, check_data_fields

SAMPLE_INITS = ("noise", "buffer")


@dataclasses.dataclass(frozen=True)
class EBMConfig:
    image_shape: tuple[int, ...] = (16, 16, 1)  # data shape: (H, W, C) images, (D,) points
    num_levels: int = 256           # levels of the image data (0: continuous points)
    data_key: str = "image"         # batch key of the data: image | point
    hidden: int = 128               # points: MLP width; images: width of the dense head
    num_layers: int = 3             # points: hidden layers of the MLP
    channels: tuple[int, ...] = (32, 64)   # images: conv widths, each stage halves the side
    langevin_steps: int = 20        # training: Langevin moves per step (short run)
    step_size: float = 1.0          # Langevin gradient step: x <- x - step_size grad_x E
    noise_scale: float = 0.01       # Langevin noise: + noise_scale z
    sample_steps: int = 100         # Langevin moves of ``sample``
    sample_init: str = "noise"      # ``sample`` starts from: noise | buffer
    buffer_size: int = 10000        # persistent chains in the replay buffer
    reinit_prob: float = 0.05       # p(a chain restarts from uniform noise) per step
    init_scale: float = 1.0         # uniform noise on [-init_scale, init_scale]^D
    energy_reg: float = 0.1         # alpha of alpha (E(x_data)^2 + E(x_model)^2)
    data_noise: float = 0.01        # std of Gaussian noise added to training data

    def __post_init__(self):
        check_data_fields(self.data_key, self.image_shape, self.num_levels)
        for name in ("langevin_steps", "sample_steps", "buffer_size", "hidden", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"model.channels must be positive widths, got {self.channels}")
        for name in ("step_size", "noise_scale", "init_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"model.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.reinit_prob <= 1.0:
            raise ValueError(f"model.reinit_prob must be in [0, 1], got {self.reinit_prob}")
        if self.energy_reg < 0 or self.data_noise < 0:
            raise ValueError("model.energy_reg and model.data_noise must be >= 0, got "
                             f"{self.energy_reg} and {self.data_noise}")
        if self.sample_init not in SAMPLE_INITS:
            raise ValueError(f"model.sample_init must be one of {list(SAMPLE_INITS)}, "
                             f"got {self.sample_init!r}")


class PointEnergy(nn.Module):
    """E(x) for points x [B, D] -> [B]: ``num_layers`` swish layers of width ``hidden``."""
    hidden: int
    num_layers: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.num_layers):
            x = nn.swish(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(x)[:, 0]


class ImageEnergy(nn.Module):
    """E(x) for images x [B, H, W, C] in [-1, 1] -> [B]: a 3x3 conv, then one strided 3x3
    conv per width of ``channels`` (swish), global mean pool, a dense swish layer, linear."""
    channels: tuple[int, ...]
    hidden: int

    @nn.compact
    def __call__(self, x):
        x = nn.swish(nn.Conv(self.channels[0], (3, 3))(x))
        for width in self.channels:
            x = nn.swish(nn.Conv(width, (3, 3), strides=(2, 2))(x))
        x = jnp.mean(x, axis=(1, 2))
        x = nn.swish(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(x)[:, 0]


class EBM:
    """Energy-based model following the genjax protocol; see the module docstring.

    ``params``: ``{"net": ..., "state": {"buffer": [buffer_size, ...]}}``.
    """

    def __init__(self, config: EBMConfig):
        self.config = c = config
        self.is_image = c.data_key == "image"
        self.x_shape = tuple(c.image_shape)
        self.num_dims = math.prod(self.x_shape)
        self.net = (ImageEnergy(tuple(c.channels), c.hidden) if self.is_image
                    else PointEnergy(c.hidden, c.num_layers))
        self.capabilities = Capabilities(likelihood="none", state=True)

    # ---------------------------------------------------------------- energy
    def energy(self, params, x: jax.Array) -> jax.Array:
        """E_theta(x) [B] of x [B, ...] (network space: [-1, 1] images or points)."""
        return self.net.apply(params["net"], x)

    def noise(self, rng: jax.Array, shape: tuple) -> jax.Array:
        """Uniform noise on [-init_scale, init_scale] of ``shape``: the chains' restarts."""
        s = self.config.init_scale
        return jax.random.uniform(rng, shape, jnp.float32, -s, s)

    def chains(self, params, x0: jax.Array, rng: jax.Array, num_steps: int) -> jax.Array:
        """``num_steps`` moves x <- x - step_size grad_x E(x) + noise_scale z from x0 [B, ...]
        (:func:`genjax.core.langevin.langevin`, module docstring); images clipped to
        [-1, 1] at the end."""
        c = self.config
        eps = 0.5 * c.noise_scale ** 2
        grad_energy = jax.grad(lambda x: jnp.sum(self.energy(params, x)))

        def score(x):
            return -(c.step_size / eps) * grad_energy(x)

        normal = functools.partial(batch_draw, jax.random.normal)   # per example (parity)
        x = lg.langevin(score, x0, rng, step_size=eps, num_steps=num_steps, normal=normal)
        return jnp.clip(x, -1.0, 1.0) if self.is_image else x

    # ------------------------------------------------------------------ data
    def to_x(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
        """Training data x [B, ...]: images in [-1, 1] (points as they are), plus
        N(0, data_noise^2) when ``rng`` is given and ``data_noise`` > 0."""
        c = self.config
        data = batch[c.data_key]
        x = to_symmetric(data, c.num_levels) if self.is_image else jnp.asarray(data, jnp.float32)
        if rng is not None and c.data_noise > 0:
            x = x + c.data_noise * batch_draw(jax.random.normal, rng, x.shape)
        return x

    def from_x(self, x: jax.Array) -> jax.Array:
        """x -> uint8 levels (images), or the points themselves."""
        return from_symmetric(x, self.config.num_levels) if self.is_image else x

    # ------------------------------------------------------------- protocol
    def init(self, rng: jax.Array, batch: dict) -> dict:
        """Energy network parameters and a replay buffer of uniform noise."""
        k_net, k_buffer = jax.random.split(rng)
        n = batch[self.config.data_key].shape[0]
        net = self.net.init(k_net, jnp.zeros((n,) + self.x_shape))
        buffer = self.noise(k_buffer, (self.config.buffer_size,) + self.x_shape)
        return {"net": net, "state": {"buffer": buffer}}

    def loss_and_stats(self, params, batch: dict, rng: jax.Array):
        """(loss, (metrics, stats)) of one contrastive-divergence step (module docstring).

        ``rng`` splits into (data noise, buffer slots, restarts, chain). Metrics:
        ``loss``, ``energy_data`` and ``energy_model`` (batch means of E at the data and at
        the chains' end points), ``energy_gap`` (their difference), ``reinit_frac``
        (fraction of this batch's chains restarted from noise). Stats (sums over the
        batch): ``writes`` [N, ...], the chains' end points at their slots, and ``hits``
        [N], how many chains each slot received (0 or 1)."""
        c = self.config
        k_data, k_slots, k_reinit, k_chain = jax.random.split(rng, 4)
        x_data = self.to_x(batch, k_data)
        b = x_data.shape[0]
        buffer = jax.lax.stop_gradient(params["state"]["buffer"])
        n = buffer.shape[0]
        if b > n:       # per-device b here; the global batch must fit as well (slots distinct)
            raise ValueError(f"a batch of {b} chains needs model.buffer_size >= {b}, "
                             f"got {n}")
        slots = batch_draw(lambda k, shape: jax.random.permutation(k, n)[:shape[0]],
                           k_slots, (b,))
        renew = batch_draw(jax.random.uniform, k_reinit, (b,)) < c.reinit_prob
        k_fresh, k_chain = jax.random.split(k_chain)
        fresh = batch_draw(self.noise, k_fresh, x_data.shape)
        keep = renew.reshape((-1,) + (1,) * len(self.x_shape))
        x0 = jnp.where(keep, fresh, buffer[slots])
        # sg(x_model): the chain runs on constant parameters, so nothing differentiates it
        x_model = self.chains(jax.lax.stop_gradient(params), x0, k_chain, c.langevin_steps)

        e_data = self.energy(params, x_data)
        e_model = self.energy(params, x_model)
        loss = (jnp.mean(e_data) - jnp.mean(e_model)
                + c.energy_reg * (jnp.mean(e_data ** 2) + jnp.mean(e_model ** 2)))
        metrics = {
            "loss": loss,
            "energy_data": jnp.mean(e_data),
            "energy_model": jnp.mean(e_model),
            "energy_gap": jnp.mean(e_data) - jnp.mean(e_model),
            "reinit_frac": jnp.mean(renew.astype(jnp.float32)),
        }
        stats = {"writes": jnp.zeros_like(buffer).at[slots].add(x_model),
                 "hits": jnp.zeros((n,), jnp.float32).at[slots].add(1.0)}
        return loss, (metrics, stats)

    def loss(self, params, batch: dict, rng: jax.Array):
        """Protocol form of :meth:`loss_and_stats`: (loss, metrics)."""
        loss, (metrics, _) = self.loss_and_stats(params, batch, rng)
        return loss, metrics

    def update_state(self, params, stats: dict):
        """After the optimizer step: the slots hit by the batch (summed over devices) take
        the chains' end points; the others keep theirs. Returns (params, {})."""
        buffer = params["state"]["buffer"]
        hits = stats["hits"].reshape((-1,) + (1,) * len(self.x_shape))
        buffer = jnp.where(hits > 0, stats["writes"] / jnp.maximum(hits, 1.0), buffer)
        return dict(params, state=dict(params["state"], buffer=buffer)), {}

    def sample(self, params, rng: jax.Array, num_samples: int, cond=None, *,
               num_steps: int | None = None, init: str | None = None):
        """``num_steps`` (default ``sample_steps``) Langevin moves from uniform noise or from
        random rows of the replay buffer (``init``, default ``sample_init``): uint8 images
        [N, H, W, C], or points float [N, D]. Unconditional: ``cond`` must be None."""
        c = self.config
        cnd.class_labels(cond, num_samples, 0)
        init = init or c.sample_init
        if init not in SAMPLE_INITS:
            raise ValueError(f"init must be one of {list(SAMPLE_INITS)}, got {init!r}")
        k_init, k_chain = jax.random.split(rng)
        shape = (num_samples,) + self.x_shape
        if init == "noise":
            x0 = self.noise(k_init, shape)
        else:
            buffer = params["state"]["buffer"]
            x0 = buffer[jax.random.randint(k_init, (num_samples,), 0, buffer.shape[0])]
        x = self.chains(params, x0, k_chain, c.sample_steps if num_steps is None else num_steps)
        return self.from_x(x)

    def log_prob_grid(self, params, grid: jax.Array) -> jax.Array:
        """log p_theta on a regular 2-D grid [I, J, 2] (``meshgrid(xs, ys, indexing="ij")``):
        -E_theta(x) - log Z with Z ~ sum_ij exp(-E_theta(x_ij)) dx dy, the rectangle rule
        over the grid (so exp(log p) dx dy sums to 1 on it). Not a protocol likelihood:
        the mass outside the grid is ignored. Returns [I, J]."""
        if self.is_image or self.x_shape != (2,):
            raise ValueError("log_prob_grid is defined for 2-D points only "
                             f"(this model's data has shape {self.x_shape})")
        grid = jnp.asarray(grid, jnp.float32)
        if grid.ndim != 3 or grid.shape[-1] != 2 or min(grid.shape[:2]) < 2:
            raise ValueError(f"grid must be [I, J, 2] with I, J >= 2, got {grid.shape}")
        dx = grid[1, 0, 0] - grid[0, 0, 0]
        dy = grid[0, 1, 1] - grid[0, 0, 1]
        neg_energy = -self.energy(params, grid.reshape(-1, 2)).reshape(grid.shape[:2])
        log_z = jax.scipy.special.logsumexp(neg_energy) + jnp.log(jnp.abs(dx * dy))
        return neg_energy - log_z
