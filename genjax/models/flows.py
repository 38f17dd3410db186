"""Normalizing flows: RealNVP (Dinh et al. 2017) and Glow (Kingma & Dhariwal 2018).

Change of variables (notation of the notes): with x = f(z), z ~ p_z = N(0, I) and
f = f_1 o ... o f_K invertible,

    log p_x(x) = log p_z(f^{-1}(x)) + sum_k log |det d f_k^{-1} / d h_{k-1}|,

each f_k a bijection of ``genjax.core.bijectors`` with a triangular (couplings)
or per-channel (actnorm, 1x1 conv) Jacobian. The network (``genjax.nn.flows``)
is written data -> latent, so ``log_prob`` is one pass and ``sample`` runs it
backwards.

Data. Images of L levels are dequantized, y = (k + u) / L with u ~ U[0, 1)^D,
and pre-processed (``preprocess``): ``shift`` x = y - 1/2 (Glow) or ``logit``
x = logit(alpha + (1 - 2 alpha) y) (RealNVP), each with its log-det. The
dequantization's log-det -D log L makes the result a log-probability of the
discrete levels:

    log P(k) >= E_u[log p(y)] - D log L,

so bits/dim are on the discrete data (one draw of u per call). ``log_prob`` is
the exact log-density of the flow at the dequantized point, which makes it a
one-sample estimate of a lower bound on the discrete log-likelihood
(``capabilities.likelihood_kind = "uniform dequantization bound"``; no variational bound on
the flow itself). 2-D points
(``data_key = "point"``) go into the flow as they are and ``log_prob`` is their
exact density.

Architectures (``layers()``, data -> latent order), K = ``steps_per_scale``:

* RealNVP: per scale, K affine couplings with alternating checkerboard masks,
  squeeze, K with alternating channel masks, split; the last scale K
  checkerboard couplings. Actnorm before each coupling (in place of batch norm,
  so the map does not depend on the batch). Points: K couplings, alternating.
* Glow: per scale, squeeze, then K steps actnorm -> invertible 1x1 conv (LU) ->
  affine coupling (channel mask), then split (not after the last scale).

Splits standardise the factored-out half under a Gaussian whose mean and
log-scale are a network of the kept half; the top has a learned Gaussian
(from the class when ``num_classes > 0``, which also feeds a class embedding to
every conditioner: class-conditional Glow). ``encode`` returns the flat
z [B, D] that is N(0, I) under the model; ``sample(temperature=T)`` draws
z ~ N(0, T^2 I). Actnorm is initialised from the batch given to ``init``.

Couplings bound their scale (``scale``: s = sigmoid(r + 2) or exp(tanh r)), so
training cannot blow up through exp of an unbounded network output.
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp

from genjax.core import bijectors as bj
from genjax.core import conditioning as cnd
from genjax.core import likelihoods as lk
from genjax.core.random import batch_draw
from genjax.models.protocol import Capabilities, check_batch
from genjax.nn.flows import MultiScaleFlow


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    image_shape: tuple[int, ...] = (8, 8, 1)  # data shape: (H, W, C) images, (D,) points
    num_levels: int = 17            # levels per sub-pixel (0: continuous points)
    data_key: str = "image"         # batch key of the data: image | point
    num_scales: int = 2             # L: scales of the multi-scale architecture (images)
    steps_per_scale: int = 4        # K: flow steps (couplings) per scale / group
    hidden: int = 64                # conditioner width (conv channels or MLP units)
    num_blocks: int = 1             # residual blocks per conditioner
    coupling: str = "affine"        # affine | additive (NICE)
    scale: str = "sigmoid"          # bounded coupling scale: sigmoid (s = sigmoid(r+2)) | tanh
    actnorm: bool = True            # actnorm before every 1x1 conv / coupling
    conv1x1: str = "lu"             # invertible 1x1 conv: lu | plain | none
    preprocess: str = "shift"       # images: shift (y - 1/2) | logit
    logit_alpha: float = 0.05       # alpha of the logit pre-processing
    num_classes: int = 0            # > 0: class-conditional on ``label``
    embed_dim: int = 16             # class embedding width

    def __post_init__(self):
        checks = {"data_key": ("image", "point"), "coupling": ("affine", "additive"),
                  "scale": ("sigmoid", "tanh"), "conv1x1": ("lu", "plain", "none"),
                  "preprocess": ("shift", "logit")}
        for name, valid in checks.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"model.{name} must be one of {sorted(valid)}, "
                                 f"got {getattr(self, name)!r}")
        if self.data_key == "image" and len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape}")
        if self.data_key == "point" and len(self.image_shape) != 1:
            raise ValueError(f"points need image_shape = (D,), got {self.image_shape}")
        if self.num_scales < 1 or self.steps_per_scale < 1:
            raise ValueError("model.num_scales and model.steps_per_scale must be >= 1")


@dataclasses.dataclass(frozen=True)
class RealNVPConfig(FlowConfig):
    num_scales: int = 2
    steps_per_scale: int = 3
    scale: str = "tanh"
    conv1x1: str = "none"
    preprocess: str = "logit"


@dataclasses.dataclass(frozen=True)
class GlowConfig(FlowConfig):
    num_scales: int = 3
    steps_per_scale: int = 8
    scale: str = "sigmoid"
    conv1x1: str = "lu"
    preprocess: str = "shift"

    def __post_init__(self):
        super().__post_init__()
        if self.conv1x1 == "none":
            raise ValueError(
                "model.conv1x1 = 'none' would make every Glow coupling transform the same "
                "channel half (Glow permutes channels with its 1x1 convolutions); use 'lu' or "
                "'plain', or RealNVP (model.name = 'realnvp'), which alternates the halves")


class Flow:
    """A normalizing flow following the genjax protocol; subclasses give ``layers()``.

    ``params``: ``{"flow": ...}`` (Flax variables of :class:`MultiScaleFlow`).
    """

    def __init__(self, config: FlowConfig):
        self.config = c = config
        self.is_image = c.data_key == "image"
        self.capabilities = Capabilities(
            likelihood="bound" if self.is_image else "exact",
            likelihood_kind="uniform dequantization bound" if self.is_image else "exact",
            conditioning="class" if c.num_classes else "none", num_classes=c.num_classes,
            encode_decode=True, sample_options=("temperature",))
        self.shape = tuple(c.image_shape)
        self.num_dims = math.prod(self.shape)
        self.flow = MultiScaleFlow(self.layers(), hidden=c.hidden, num_blocks=c.num_blocks,
                                   coupling=c.coupling, scale=c.scale, actnorm=c.actnorm,
                                   conv1x1=c.conv1x1, num_classes=c.num_classes,
                                   embed_dim=c.embed_dim)

    def layers(self) -> tuple:
        raise NotImplementedError

    # ----------------------------------------------------------------- data
    def _labels(self, batch_or_labels, n: int):
        """Labels of a conditional flow: a batch's, or the ``cond`` of n samples."""
        return cnd.labels_of(batch_or_labels, n, self.config.num_classes)

    def _preprocess(self, y: jax.Array, reverse: bool = False):
        """Images: y in [0, 1) <-> flow input x (shift or logit), with log-det."""
        c = self.config
        if not self.is_image:
            return y, jnp.zeros(y.shape[0])
        if c.preprocess == "logit":
            fn = bj.logit_inverse if reverse else bj.logit_forward
            return fn(y, c.logit_alpha)
        return (y + 0.5 if reverse else y - 0.5), jnp.zeros(y.shape[0])

    def dequantize(self, rng: jax.Array, data: jax.Array):
        """Images: (y = (k + u) / L [B, H, W, C], log-det -D log L [B]); points as they are."""
        if not self.is_image:
            data = jnp.asarray(data, jnp.float32)
            return data, jnp.zeros(data.shape[0])
        u = batch_draw(jax.random.uniform, rng, data.shape)
        return bj.dequantize_forward(data, u, self.config.num_levels)

    # ------------------------------------------------------------ the map
    def forward(self, params, y: jax.Array, labels=None):
        """Continuous data y (dequantized images in [0, 1), or points) -> (z [B, D],
        log |det dz/dy| [B]): pre-processing and the whole flow."""
        x, ld_pre = self._preprocess(y)
        z, ld = self.flow.apply(params["flow"], x, labels, method=MultiScaleFlow.forward)
        return z, ld + ld_pre

    def inverse(self, params, z: jax.Array, labels=None):
        """z [B, D] -> (y [B, *shape], log |det dy/dz| [B])."""
        x, ld = self.flow.apply(params["flow"], z, labels, method=MultiScaleFlow.inverse,
                                input_shape=self.shape)
        y, ld_pre = self._preprocess(x, reverse=True)
        return y, ld + ld_pre

    # -------------------------------------------------------------- protocol
    def init(self, rng: jax.Array, batch: dict) -> dict:
        """Parameters; every actnorm is initialised on ``batch`` (zero mean, unit std of
        its input per channel), as it flows through the layers before it."""
        data = jnp.asarray(batch[self.config.data_key])
        k_deq, k_init = jax.random.split(rng)
        y, _ = self.dequantize(k_deq, data)
        x, _ = self._preprocess(y)
        labels = self._labels(batch, data.shape[0])
        return {"flow": self.flow.init(k_init, x, labels, method=MultiScaleFlow.forward)}

    def log_prob(self, params, batch: dict, rng: jax.Array) -> jax.Array:
        """log p in nats per example [B]: images, log p(y) - D log L at one dequantized
        y (a log-probability of the discrete levels); points, the exact log-density."""
        check_batch(self, batch)
        data = batch[self.config.data_key]
        y, ld_deq = self.dequantize(rng, data)
        z, ld = self.forward(params, y, self._labels(batch, data.shape[0]))
        log_pz = lk.gaussian_log_prob(z, 0.0, 0.0).sum(-1)
        return log_pz + ld + ld_deq

    def loss(self, params, batch: dict, rng: jax.Array):
        """Mean negative log-likelihood: in bits/dim for images, nats for points.
        Metrics ``loss``, ``nll`` (nats per example) and ``bpd`` (images)."""
        nll = -self.log_prob(params, batch, rng)
        metrics = {"nll": jnp.mean(nll)}
        if self.is_image:
            metrics["bpd"] = jnp.mean(lk.bits_per_dim(nll, self.num_dims))
            loss = metrics["bpd"]
        else:
            loss = metrics["nll"]
        metrics["loss"] = loss
        return loss, metrics

    def decode(self, params, z: jax.Array, cond=None) -> jax.Array:
        """z [N, D] -> uint8 images [N, H, W, C] (floor(y L)), or float points [N, D]."""
        y, _ = self.inverse(params, z, self._labels(cond, z.shape[0]))
        if not self.is_image:
            return y
        return bj.dequantize_inverse(y, self.config.num_levels)

    def encode(self, params, data: jax.Array, cond=None) -> jax.Array:
        """Images uint8 [N, H, W, C] (at the bin centres (k + 1/2) / L) or points [N, D]
        -> z [N, D]; decode(encode(x)) == x."""
        chex.assert_rank(data, len(self.shape) + 1)
        if self.is_image:
            y, _ = bj.dequantize_forward(data, 0.5, self.config.num_levels)
        else:
            y = jnp.asarray(data, jnp.float32)
        z, _ = self.forward(params, y, self._labels(cond, data.shape[0]))
        return z

    def sample(self, params, rng: jax.Array, num_samples: int, cond=None, *,
               temperature: float = 1.0) -> jax.Array:
        """z ~ N(0, T^2 I), x = f(z): uint8 images [N, H, W, C] (points: float [N, D]).

        ``cond``: labels [N] (or an int) of a class-conditional flow (None: classes
        0, 1, ..., K-1 in turn). ``temperature`` T < 1 trades diversity for quality.
        """
        z = temperature * jax.random.normal(rng, (num_samples, self.num_dims))
        return self.decode(params, z, cond)

    def interpolate(self, params, a: jax.Array, b: jax.Array, num_steps: int, cond=None):
        """Decode (1 - t) z_a + t z_b for t in linspace(0, 1, num_steps): a, b one example
        each ([H, W, C] or [D]) -> [num_steps, ...]."""
        z = self.encode(params, jnp.stack([a, b]),
                        None if cond is None else jnp.full((2,), cond))
        t = jnp.linspace(0.0, 1.0, num_steps)[:, None]
        path = (1.0 - t) * z[0] + t * z[1]
        return self.decode(params, path, None if cond is None else jnp.full((num_steps,), cond))


class RealNVP(Flow):
    """RealNVP: affine couplings with checkerboard, then channel masks per scale."""

    def layers(self) -> tuple:
        c = self.config
        k = c.steps_per_scale
        if not self.is_image:
            return tuple(("step", "channel", i % 2) for i in range(k))
        h, w, _ = c.image_shape
        if h % 2 ** (c.num_scales - 1) or w % 2 ** (c.num_scales - 1):
            raise ValueError(f"image side {h, w} must be divisible by 2**(num_scales - 1)")
        layers = []
        for _ in range(c.num_scales - 1):
            layers += [("step", "checkerboard", i % 2) for i in range(k)]
            layers += [("squeeze",)] + [("step", "channel", i % 2) for i in range(k)]
            layers += [("split",)]
        return tuple(layers + [("step", "checkerboard", i % 2) for i in range(k)])


class Glow(Flow):
    """Glow: squeeze, K x (actnorm -> 1x1 conv -> coupling), split; per scale."""

    def layers(self) -> tuple:
        c = self.config
        k = c.steps_per_scale
        if not self.is_image:
            return tuple(("step", "channel", i % 2) for i in range(k))
        h, w, _ = c.image_shape
        if h % 2 ** c.num_scales or w % 2 ** c.num_scales:
            raise ValueError(f"image side {h, w} must be divisible by 2**num_scales")
        layers = []
        for scale in range(c.num_scales):
            layers += [("squeeze",)] + [("step", "channel", 0)] * k
            if scale < c.num_scales - 1:
                layers += [("split",)]
        return tuple(layers)
