"""StyleGAN (StyleGAN2-style): a style-based generator with a mapping network, weight
modulation and demodulation, noise inputs, skip-connected toRGB outputs, style mixing,
truncation and inversion into W / W+.

Generator (notation of the notes; Karras et al. 2019, 2020):

* Mapping network z -> w: pixel norm z / sqrt(mean_i z_i^2 + eps), then
  ``mapping_layers`` fully connected layers with leaky ReLU, learning rate scaled by
  ``mapping_lr_multiplier`` (equalized learning rate: weights drawn N(0, 1 / lr_mul^2),
  multiplied at run time by lr_mul / sqrt(fan_in)). W is the space of the w's.
* Synthesis network: a learned constant 4x4 input, then one block per resolution
  8, 16, ..., H: bilinear 2x upsampling and two modulated 3x3 convolutions. Each
  layer l gets its own w_l (the "W+" space holds one w per layer, ``num_ws`` = 2 x the
  number of resolutions); its style is s = A(w_l), "A" the learned affine map
  (bias initialised to 1).
* Modulation and demodulation replace AdaIN(x_i, y) = y_{s,i} (x_i - mu(x_i)) /
  sigma(x_i) + y_{b,i}: the style scales the convolution's input channels i,

      w'_{ijk} = s_i w_{ijk},      w''_{ijk} = w'_{ijk} / sqrt(sum_{i,k} w'_{ijk}^2 + eps),

  (j the output channel, k the 3x3 footprint), so that an output channel of a unit-
  variance i.i.d. input has unit variance again: demodulation is AdaIN's instance
  normalisation "in expectation", without the droplet artefacts of normalising the
  actual activations. Implemented by scaling the activations, not the weights:
  y = (conv(x * s, w)) * d_j with d_j = 1 / sqrt(sum_i s_i^2 sum_k w_{ijk}^2 + eps),
  one convolution with shared weights for the whole batch (the same numbers as a
  grouped convolution with a per-sample kernel w'', which :func:`modulated_conv2d`'s
  test checks sample by sample).
* Noise inputs: after each convolution, per-pixel N(0, 1) noise (one channel, broadcast)
  times a learned per-channel strength "B" (initialised to 0), then bias and leaky ReLU
  (gain sqrt(2)).
* toRGB: a modulated 1x1 convolution without demodulation at every resolution; the
  images are summed across resolutions through upsampling skips,
  rgb_r = up(rgb_{r/2}) + toRGB_r(x_r). The output lives on the [-1, 1] scale of the
  data (``tanh_output`` bounds it) and becomes levels through
  :func:`genjax.core.likelihoods.from_symmetric`; real data enter the discriminator as
  :func:`~genjax.core.likelihoods.to_symmetric` of their levels.

Style mixing (regularisation, ``mixing_prob``): with that probability per example a
second z2 is drawn and layers l >= c (a crossover c uniform in 1..num_ws-1) take
w(z2) instead of w(z1); :meth:`StyleGAN.mix` does the same for given z1, z2, c.

Truncation: w~ = w_avg + psi (w - w_avg) (computed as psi w + (1 - psi) w_avg, which is
w_avg exactly at psi = 0 and w exactly at psi = 1), with w_avg the running mean of the
mapping's outputs, kept as non-trainable state ``params["state"]["w_avg"]``: the
generator phase returns the sums (sum_b w_b, B) and, after the optimizer step,
w_avg <- beta w_avg + (1 - beta) mean_b w_b (``w_avg_beta``); sums make the data-
parallel ``psum`` exact. ``sample(..., truncation=psi)``.

Discriminator: residual blocks (two 3x3 convolutions, 2x2 average-pool downsampling,
a 1x1 skip, sum scaled by 1/sqrt(2)), no normalisation; at 4x4 the minibatch standard
deviation (the std of each feature over a group of ``mbstd_group`` examples, averaged to
``mbstd_features`` extra channels), a 3x3 convolution and two dense layers give f(x),
D(x) = sigmoid(f(x)). Loss from :mod:`genjax.core.gan_losses` (default non-saturating
logistic) plus the R1 penalty gamma / 2 E_{x ~ p_d} |grad f(x)|^2 on real images
(``r1_gamma``, applied every step; with the minibatch-std layer the gradient of
sum_b f(x_b) is taken, as StyleGAN2 does). Phases: ``n_critic`` discriminator updates,
then one generator update (groups ``generator`` = mapping + synthesis, and
``discriminator``); the EMA follows the generator.

Inversion (:meth:`StyleGAN.invert`): Adam from w_avg on one w for every layer (W) or
one per layer (W+; better for reconstruction, W better for editing), minimising the
per-example mean squared error on the [-1, 1] scale with zero noise, the step size
decaying to 0 (cosine).

Mixed precision (``compute_dtype``, :mod:`genjax.nn.precision`): the convolutions of the
synthesis network and of the discriminator (and its hidden dense layer) compute in that
dtype (bfloat16 on accelerators) from float32 parameters; the mapping network, the
styles and demodulation coefficients, noise, biases, activations, the minibatch std,
the images, the logits and the losses stay float32.

Simplifications against StyleGAN2: bilinear up- and average-pool downsampling instead
of the [1, 3, 3, 1] FIR filters; no path-length regulariser; no lazy regularisation.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from genjax.core import conditioning as cnd
from genjax.core import gan_losses as gl
from genjax.core import inversion
from genjax.core import likelihoods as lk
from genjax.core.random import batch_draw
from genjax.models.protocol import STATE_KEY, Capabilities, Phase, UpdateRule, check_batch
from genjax.nn import precision

SQRT2 = math.sqrt(2.0)
SPACES = ("w", "w+")
_CONV_DIMS = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class StyleGANConfig:
    image_shape: tuple = (16, 16, 1)    # (H, H, C), H = 4 * 2^k
    num_levels: int = 256               # levels per sub-pixel of the data
    latent_dim: int = 64                # dimension of z
    w_dim: int = 64                     # dimension of w (and of the space W)
    mapping_layers: int = 4             # fully connected layers z -> w
    mapping_lr_multiplier: float = 0.01  # learning-rate multiplier of the mapping network
    channels: tuple = (64, 64, 32)      # synthesis channels at 4x4, 8x8, ..., H x H
    d_channels: tuple = (32, 64, 64)    # discriminator channels at H x H, ..., 4x4
    noise: bool = True                  # per-layer noise inputs
    tanh_output: bool = False           # bound the output by tanh (else linear)
    mixing_prob: float = 0.9            # probability of style mixing per training example
    w_avg_beta: float = 0.995           # w_avg <- beta w_avg + (1 - beta) mean_b w_b
    loss: str = "nonsaturating"         # a key of gan_losses.GENERATOR_LOSSES
    r1_gamma: float = 0.1               # gamma of the R1 penalty gamma / 2 E |grad f(x)|^2
    n_critic: int = 1                   # discriminator updates per generator update
    mbstd_group: int = 4                # minibatch-std group size (min with the batch)
    mbstd_features: int = 1             # minibatch-std output channels
    compute_dtype: str = "float32"      # convolution dtype (bfloat16 on accelerators)

    def __post_init__(self):
        gl.losses(self.loss)            # a clear error for an unknown name
        precision.compute_dtype(self.compute_dtype)
        shape = tuple(self.image_shape)
        if len(shape) != 3 or shape[0] != shape[1]:
            raise ValueError(f"model.image_shape must be (H, H, C), got {shape}")
        size = shape[0]
        if size < 4 or size & (size - 1):
            raise ValueError(f"model.image_shape: the side {size} must be a power of two >= 4")
        n = int(math.log2(size)) - 1    # resolutions 4, 8, ..., size
        for name in ("channels", "d_channels"):
            values = tuple(getattr(self, name))
            if len(values) != n or min(values) < 1:
                raise ValueError(f"model.{name} needs {n} positive entries (one per resolution "
                                 f"4..{size}), got {values}")
        for name in ("latent_dim", "w_dim", "mapping_layers", "n_critic", "mbstd_group",
                     "mbstd_features"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_channels[-1] % self.mbstd_features:
            raise ValueError(f"model.mbstd_features = {self.mbstd_features} must divide "
                             f"model.d_channels[-1] = {self.d_channels[-1]}")
        if self.mapping_lr_multiplier <= 0:
            raise ValueError("model.mapping_lr_multiplier must be positive")
        if not 0.0 <= self.mixing_prob <= 1.0:
            raise ValueError(f"model.mixing_prob must be in [0, 1], got {self.mixing_prob}")
        if not 0.0 <= self.w_avg_beta < 1.0:
            raise ValueError(f"model.w_avg_beta must be in [0, 1), got {self.w_avg_beta}")
        if self.r1_gamma < 0:
            raise ValueError(f"model.r1_gamma must be >= 0, got {self.r1_gamma}")
        if self.num_levels < 2:
            raise ValueError(f"model.num_levels must be >= 2, got {self.num_levels}")


# ------------------------------------------------------------------ the math
def pixel_norm(z: jax.Array, eps: float = 1e-8) -> jax.Array:
    """z / sqrt(mean_i z_i^2 + eps) over the last axis: z [..., D] -> [..., D]."""
    return z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + eps)


def lrelu(x: jax.Array) -> jax.Array:
    """Leaky ReLU (slope 0.2) with gain sqrt(2), which keeps unit second moments."""
    return nn.leaky_relu(x, 0.2) * SQRT2


def _conv(x: jax.Array, kernel: jax.Array, dtype=jnp.float32) -> jax.Array:
    """"Same"-padded stride-1 convolution computed in ``dtype``, returned in float32."""
    y = jax.lax.conv_general_dilated(x.astype(dtype), kernel.astype(dtype), (1, 1), "SAME",
                                     dimension_numbers=_CONV_DIMS)
    return y.astype(jnp.float32)


def modulated_conv2d(x: jax.Array, weight: jax.Array, styles: jax.Array, *,
                     demodulate: bool = True, eps: float = 1e-8,
                     dtype=jnp.float32) -> jax.Array:
    """Modulated ("same"-padded, stride 1) convolution with optional demodulation.

    Per sample b, the kernel is w'_{ijk} = s_{b,i} w_{ijk}, and with demodulation
    w''_{ijk} = w'_{ijk} / sqrt(sum_{i,k} w'_{ijk}^2 + eps). Computed by scaling the
    activations: conv(x * s_b, w) * d_{b,j}, d_{b,j} = 1 / sqrt(sum_i s_{b,i}^2
    sum_k w_{ijk}^2 + eps), which equals the convolution with w'' (linearity).

    Args:
      x: [B, H, W, I]; weight: [k, k, I, O] (HWIO); styles: s [B, I]; dtype: of the
      convolution (the demodulation is float32).

    Returns:
      [B, H, W, O] float32.
    """
    y = _conv(x * styles[:, None, None, :], weight, dtype)
    if demodulate:
        d = jax.lax.rsqrt(jnp.einsum("bi,hwio->bo", jnp.square(styles), jnp.square(weight))
                          + eps)
        y = y * d[:, None, None, :]
    return y


def truncate(w: jax.Array, w_avg: jax.Array, psi) -> jax.Array:
    """The truncation trick w~ = w_avg + psi (w - w_avg), written psi w + (1 - psi) w_avg
    (exactly w_avg at psi = 0 and w at psi = 1). w [..., D], w_avg [D], psi a float
    (may be traced)."""
    return psi * w + (1.0 - psi) * w_avg


def mixed_ws(w1: jax.Array, w2: jax.Array, crossover, num_ws: int) -> jax.Array:
    """Style mixing: w_l = w1 for layers l < crossover, else w2. w1, w2 [B, D];
    crossover an int or int [B] in 0..num_ws -> ws [B, num_ws, D]."""
    layer = jnp.arange(num_ws)[None, :, None]
    crossover = jnp.reshape(jnp.asarray(crossover), (-1, 1, 1))
    return jnp.where(layer < crossover, w1[:, None, :], w2[:, None, :])


def minibatch_std(x: jax.Array, group_size: int, num_features: int = 1,
                  eps: float = 1e-8) -> jax.Array:
    """Appends the minibatch standard deviation: x [B, H, W, C] -> [B, H, W, C + F].

    Examples b and b + B/G, b + 2B/G, ... form a group of G = min(group_size, B); for
    each the std over the group of every feature (per position and channel), averaged
    over positions and over the C / F channels of each of F chunks, is appended as F
    constant channels to every member.
    """
    b, h, w, c = x.shape
    g = min(group_size, b)
    if b % g:
        raise ValueError(f"minibatch std: a batch of {b} is not a multiple of the group size "
                         f"{g} (model.mbstd_group)")
    f = num_features
    y = x.reshape(g, b // g, h, w, f, c // f)
    y = jnp.sqrt(jnp.var(y, axis=0) + eps)            # [B/G, H, W, F, C/F]
    y = jnp.mean(y, axis=(1, 2, 4))                   # [B/G, F]
    y = jnp.tile(y, (g, 1))                           # example b gets group b mod B/G
    y = jnp.broadcast_to(y[:, None, None, :], (b, h, w, f))
    return jnp.concatenate([x, y], axis=-1)


def upsample2x(x: jax.Array) -> jax.Array:
    """Bilinear 2x upsampling, [B, H, W, C] -> [B, 2H, 2W, C]."""
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, 2 * h, 2 * w, c), "bilinear")


def downsample2x(x: jax.Array) -> jax.Array:
    """2x2 average pooling, [B, H, W, C] -> [B, H/2, W/2, C]."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


# ------------------------------------------------------------------ networks
class EqualDense(nn.Module):
    """Dense layer with equalized learning rate: kernel ~ N(0, 1 / lr_mul^2), used as
    kernel * lr_mul / sqrt(fan_in); the bias starts at ``bias_init``."""

    features: int
    lr_mul: float = 1.0
    bias_init: float = 0.0
    dtype: Any = jnp.float32        # of the matrix product (the output is float32)

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.normal(1.0 / self.lr_mul),
                            (fan_in, self.features))
        bias = self.param("bias", nn.initializers.constant(self.bias_init / self.lr_mul),
                          (self.features,))
        kernel = kernel * (self.lr_mul / math.sqrt(fan_in))
        y = (x.astype(self.dtype) @ kernel.astype(self.dtype)).astype(jnp.float32)
        return y + bias * self.lr_mul


class EqualConv(nn.Module):
    """k x k convolution ("same" padding) with equalized learning rate."""

    features: int
    kernel_size: int = 3
    use_bias: bool = True
    dtype: Any = jnp.float32        # of the convolution (the output is float32)

    @nn.compact
    def __call__(self, x):
        k, fan_in = self.kernel_size, x.shape[-1] * self.kernel_size ** 2
        kernel = self.param("kernel", nn.initializers.normal(1.0),
                            (k, k, x.shape[-1], self.features))
        y = _conv(x, kernel / math.sqrt(fan_in), self.dtype)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


class MappingNetwork(nn.Module):
    """z [B, latent_dim] -> w [B, w_dim]: pixel norm, then dense + leaky ReLU layers."""

    w_dim: int
    num_layers: int
    lr_mul: float

    @nn.compact
    def __call__(self, z):
        x = pixel_norm(z)
        for i in range(self.num_layers):
            x = lrelu(EqualDense(self.w_dim, self.lr_mul, name=f"fc{i}")(x))
        return x


class StyleConv(nn.Module):
    """[2x upsampling,] modulated (demodulated) 3x3 convolution, noise B * n, bias,
    leaky ReLU. x [B, H, W, I], w [B, w_dim], noise [B, H', W', 1] or None."""

    features: int
    upsample: bool = False
    use_noise: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, w, noise):
        styles = EqualDense(x.shape[-1], bias_init=1.0, name="affine")(w)      # s = A(w)
        weight = self.param("weight", nn.initializers.normal(1.0),
                            (3, 3, x.shape[-1], self.features))
        if self.upsample:
            x = upsample2x(x)
        x = modulated_conv2d(x, weight, styles, demodulate=True, dtype=self.dtype)
        if self.use_noise:
            strength = self.param("noise_strength", nn.initializers.zeros, (self.features,))
            x = x + noise * strength
        return lrelu(x + self.param("bias", nn.initializers.zeros, (self.features,)))


class ToRGB(nn.Module):
    """Modulated 1x1 convolution, no demodulation: x [B, H, W, I] -> [B, H, W, C]."""

    channels: int

    @nn.compact
    def __call__(self, x, w):
        fan_in = x.shape[-1]
        styles = EqualDense(fan_in, bias_init=1.0, name="affine")(w) / math.sqrt(fan_in)
        weight = self.param("weight", nn.initializers.normal(1.0), (1, 1, fan_in, self.channels))
        y = modulated_conv2d(x, weight, styles, demodulate=False)
        return y + self.param("bias", nn.initializers.zeros, (self.channels,))


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] and one noise image per convolution -> image [B, H, H, C]
    on the [-1, 1] scale. Layer indices: the 4x4 convolution uses w_0, resolution r's
    two convolutions w_{2r-1}, w_{2r}, and its toRGB the index of the next
    convolution (w_{2r+1}; the last toRGB w_{num_ws - 1})."""

    channels: tuple
    out_channels: int
    use_noise: bool = True
    tanh_output: bool = False
    dtype: Any = jnp.float32        # of the 3x3 convolutions (toRGB and output: float32)

    @nn.compact
    def __call__(self, ws, noise):
        const = self.param("const", nn.initializers.normal(1.0), (4, 4, self.channels[0]))
        x = jnp.broadcast_to(const, (ws.shape[0],) + const.shape)
        conv = functools.partial(StyleConv, use_noise=self.use_noise, dtype=self.dtype)
        x = conv(self.channels[0], name="conv4")(
            x, ws[:, 0], noise[0])
        rgb = ToRGB(self.out_channels, name="torgb4")(x, ws[:, 1])
        for r, ch in enumerate(self.channels[1:], 1):
            size = 4 * 2 ** r
            x = conv(ch, upsample=True, name=f"conv{size}_up")(
                x, ws[:, 2 * r - 1], noise[2 * r - 1])
            x = conv(ch, name=f"conv{size}")(
                x, ws[:, 2 * r], noise[2 * r])
            rgb = upsample2x(rgb) + ToRGB(self.out_channels, name=f"torgb{size}")(
                x, ws[:, 2 * r + 1])
        return jnp.tanh(rgb) if self.tanh_output else rgb


class ResidualBlock(nn.Module):
    """Discriminator block: (conv3 -> lrelu -> pool -> conv3 -> lrelu) + 1x1(pool(x)),
    summed and scaled by 1/sqrt(2): [B, H, W, I] -> [B, H/2, W/2, O]."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(EqualConv, dtype=self.dtype)
        skip = conv(self.features, 1, use_bias=False, name="skip")(downsample2x(x))
        y = lrelu(conv(x.shape[-1], name="conv0")(x))
        y = lrelu(conv(self.features, name="conv1")(downsample2x(y)))
        return (y + skip) / SQRT2


class Discriminator(nn.Module):
    """x [B, H, H, C] on the [-1, 1] scale -> logits f(x) [B]."""

    channels: tuple
    mbstd_group: int
    mbstd_features: int
    dtype: Any = jnp.float32        # of the convolutions and the hidden dense layer

    @nn.compact
    def __call__(self, x):
        x = lrelu(EqualConv(self.channels[0], 1, dtype=self.dtype, name="fromrgb")(x))
        for i, ch in enumerate(self.channels[1:]):
            x = ResidualBlock(ch, self.dtype, name=f"block{i}")(x)
        x = minibatch_std(x, self.mbstd_group, self.mbstd_features)
        x = lrelu(EqualConv(self.channels[-1], dtype=self.dtype, name="conv4")(x))
        x = lrelu(EqualDense(self.channels[-1], dtype=self.dtype, name="fc")(
            x.reshape(x.shape[0], -1)))
        return EqualDense(1, name="out")(x)[:, 0]


# ------------------------------------------------------------------ the model
class StyleGAN:
    """The model of the module docstring. ``params = {"mapping", "synthesis",
    "discriminator", "state": {"w_avg": [w_dim]}}``."""

    def __init__(self, config: StyleGANConfig):
        self.config = c = config
        self.num_resolutions = len(c.channels)
        self.num_ws = 2 * self.num_resolutions          # the W+ space: one w per layer
        self.mapping_net = MappingNetwork(c.w_dim, c.mapping_layers, c.mapping_lr_multiplier)
        dtype = precision.compute_dtype(c.compute_dtype)
        self.synthesis_net = SynthesisNetwork(tuple(c.channels), c.image_shape[-1], c.noise,
                                              c.tanh_output, dtype)
        self.discriminator = Discriminator(tuple(c.d_channels), c.mbstd_group,
                                           c.mbstd_features, dtype)
        self.d_loss, self.g_loss = gl.losses(c.loss)
        self.capabilities = Capabilities(param_groups=True, state=True, inversion=True,
                                         sample_options=("truncation",))

    def update_rule(self) -> UpdateRule:
        return UpdateRule(
            groups={"generator": ("mapping", "synthesis"), "discriminator": ("discriminator",)},
            phases=(Phase("discriminator", self.discriminator_loss,
                          repeat=self.config.n_critic, split_batch=True),
                    Phase("generator", self.generator_loss_and_stats, with_stats=True)),
            ema_groups=("generator",))

    def init(self, rng, batch):
        """Parameters, with w_avg started at the mean of w over 256 draws of z."""
        c = self.config
        km, ks, kd, kz = jax.random.split(rng, 4)
        mapping = self.mapping_net.init(km, jnp.zeros((1, c.latent_dim)))
        ws = jnp.zeros((1, self.num_ws, c.w_dim))
        synthesis = self.synthesis_net.init(ks, ws, self.zero_noise(1))
        disc = self.discriminator.init(kd, jnp.zeros((1,) + tuple(c.image_shape)))
        z = jax.random.normal(kz, (256, c.latent_dim))
        w_avg = jnp.mean(self.mapping_net.apply(mapping, z), axis=0)
        return {"mapping": mapping, "synthesis": synthesis, "discriminator": disc,
                STATE_KEY: {"w_avg": w_avg}}

    # ---------------------------------------------------------- generator pieces
    def mapping(self, params, z: jax.Array) -> jax.Array:
        """w = mapping(z): z [B, latent_dim] -> w [B, w_dim]."""
        return self.mapping_net.apply(params["mapping"], z)

    def truncate(self, params, w: jax.Array, psi=1.0) -> jax.Array:
        """w_avg + psi (w - w_avg) with the running w_avg of ``params["state"]``."""
        return truncate(w, params[STATE_KEY]["w_avg"], psi)

    def broadcast_ws(self, w: jax.Array) -> jax.Array:
        """One w for every layer: [B, w_dim] -> [B, num_ws, w_dim]."""
        return jnp.broadcast_to(w[:, None, :], (w.shape[0], self.num_ws, w.shape[-1]))

    def _noise_shapes(self, n: int) -> list[tuple[int, ...]]:
        sizes = [4] + [4 * 2 ** r for r in range(1, self.num_resolutions) for _ in (0, 1)]
        return [(n, s, s, 1) for s in sizes]

    def draw_noise(self, rng: jax.Array, n: int) -> tuple:
        """One N(0, 1) noise image [n, h, h, 1] per convolution, cut from one draw
        [n, sum of h^2] (one random draw compiles faster than one per layer)."""
        shapes = self._noise_shapes(n)
        sizes = [s[1] * s[2] for s in shapes]
        flat = batch_draw(jax.random.normal, rng, (n, sum(sizes)))
        parts = jnp.split(flat, list(itertools.accumulate(sizes))[:-1], axis=1)
        return tuple(part.reshape(shape) for part, shape in zip(parts, shapes))

    def zero_noise(self, n: int) -> tuple:
        """Zero noise images (the noise's mean), e.g. for inversion."""
        return tuple(jnp.zeros(shape) for shape in self._noise_shapes(n))

    def synthesize(self, params, ws: jax.Array, noise) -> jax.Array:
        """ws [B, num_ws, w_dim] and noise (:meth:`draw_noise`) -> image [B, H, H, C] on
        the [-1, 1] scale (floats, not rounded)."""
        return self.synthesis_net.apply(params["synthesis"], ws, noise)

    def _to_levels(self, x: jax.Array) -> jax.Array:
        return lk.from_symmetric(x, self.config.num_levels)

    def generate(self, params, rng: jax.Array, z: jax.Array, truncation=1.0) -> jax.Array:
        """uint8 images [B, H, H, C] of latents z [B, latent_dim], noise drawn from rng."""
        w = self.truncate(params, self.mapping(params, z), truncation)
        return self._to_levels(self.synthesize(params, self.broadcast_ws(w),
                                               self.draw_noise(rng, z.shape[0])))

    def mix(self, params, rng: jax.Array, z1: jax.Array, z2: jax.Array, crossover,
            truncation=1.0) -> jax.Array:
        """Style mixing: layers l < crossover take w(z1), the rest w(z2) (coarse styles
        from z1, fine ones from z2); crossover = num_ws is the image of z1 alone, 0 that of
        z2. uint8 [B, H, H, C], noise drawn from rng."""
        if isinstance(crossover, int) and not 0 <= crossover <= self.num_ws:
            raise ValueError(f"crossover must be in 0..{self.num_ws} (the number of layers), "
                             f"got {crossover}")
        w1 = self.truncate(params, self.mapping(params, z1), truncation)
        w2 = self.truncate(params, self.mapping(params, z2), truncation)
        ws = mixed_ws(w1, w2, crossover, self.num_ws)
        return self._to_levels(self.synthesize(params, ws, self.draw_noise(rng, z1.shape[0])))

    def _fake(self, params, rng: jax.Array, n: int):
        """(fake images [n, H, H, C] on the [-1, 1] scale, the unmixed w(z1) [n, w_dim]),
        with style mixing at ``mixing_prob`` per example."""
        c = self.config
        kz, ku, kn = jax.random.split(rng, 3)
        if c.mixing_prob > 0 and self.num_ws > 1:
            z = batch_draw(jax.random.normal, kz, (n, 2, c.latent_dim))      # z1, z2
            w = self.mapping(params, z.reshape(2 * n, -1)).reshape(n, 2, -1)
            w1 = w[:, 0]
            # u_0 < p: mix; crossover 1 + floor(u_1 (num_ws - 1)), uniform in 1..num_ws-1.
            u = batch_draw(jax.random.uniform, ku, (n, 2))
            crossover = jnp.minimum(1 + jnp.floor(u[:, 1] * (self.num_ws - 1)), self.num_ws - 1)
            crossover = jnp.where(u[:, 0] < c.mixing_prob, crossover, self.num_ws)
            ws = mixed_ws(w1, w[:, 1], crossover, self.num_ws)
        else:
            w1 = self.mapping(params, batch_draw(jax.random.normal, kz, (n, c.latent_dim)))
            ws = self.broadcast_ws(w1)
        return self.synthesize(params, ws, self.draw_noise(kn, n)), w1

    # ---------------------------------------------------------- objectives
    def _real(self, batch) -> jax.Array:
        return lk.to_symmetric(batch["image"], self.config.num_levels)

    def _logits(self, params, x: jax.Array) -> jax.Array:
        """f(x) [B]; D(x) = sigmoid(f(x))."""
        return self.discriminator.apply(params["discriminator"], x)

    def discriminator_loss(self, params, batch, rng):
        """The discriminator's loss plus gamma / 2 R1 on the real images; metrics ``loss``,
        ``accuracy``, ``real_logit``, ``fake_logit`` (means), ``r1``."""
        real = self._real(batch)
        fake = jax.lax.stop_gradient(self._fake(params, rng, real.shape[0])[0])
        real_f, fake_f = self._logits(params, real), self._logits(params, fake)
        loss = self.d_loss(real_f, fake_f)
        metrics = {"accuracy": gl.discriminator_accuracy(real_f, fake_f),
                   "real_logit": jnp.mean(real_f), "fake_logit": jnp.mean(fake_f)}
        if self.config.r1_gamma:
            r1 = gl.r1_penalty(lambda x: self._logits(params, x), real)
            loss = loss + 0.5 * self.config.r1_gamma * r1
            metrics["r1"] = r1
        return loss, {"loss": loss, **metrics}

    def generator_loss_and_stats(self, params, batch, rng):
        """(loss, (metrics, stats)): the generator's loss on a batch of fakes of the
        batch's size; stats = {"w_sum": sum_b w_b [w_dim], "count": B} of the unmixed
        w's, for the running w_avg (:meth:`update_state`)."""
        n = batch["image"].shape[0]
        fake, w = self._fake(params, rng, n)
        loss = self.g_loss(self._logits(params, fake))
        stats = {"w_sum": jnp.sum(jax.lax.stop_gradient(w), axis=0),
                 "count": jnp.asarray(n, jnp.float32)}
        return loss, ({"loss": loss}, stats)

    def loss_and_stats(self, params, batch, rng):
        """Both players' losses summed (a monitor, not what either minimises), with the
        generator's stats."""
        d, d_metrics = self.discriminator_loss(params, batch, rng)
        g, (_, stats) = self.generator_loss_and_stats(params, batch, jax.random.fold_in(rng, 1))
        metrics = {"discriminator_loss": d, "generator_loss": g,
                   **{f"discriminator_{k}": v for k, v in d_metrics.items() if k != "loss"}}
        return d + g, (metrics, stats)

    def loss(self, params, batch, rng):
        loss, (metrics, _) = self.loss_and_stats(params, batch, rng)
        return loss, metrics

    def update_state(self, params, stats):
        """w_avg <- beta w_avg + (1 - beta) (sum_b w_b) / B, after the optimizer step.
        Returns (params, metrics ``w_avg_norm``)."""
        beta = self.config.w_avg_beta
        mean = stats["w_sum"] / stats["count"]
        w_avg = beta * params[STATE_KEY]["w_avg"] + (1.0 - beta) * mean
        params = dict(params, **{STATE_KEY: dict(params[STATE_KEY], w_avg=w_avg)})
        return params, {"w_avg_norm": jnp.linalg.norm(w_avg)}

    # ---------------------------------------------------------- sampling, inversion
    def sample(self, params, rng, num_samples, cond=None, truncation=1.0):
        """uint8 [N, H, H, C]; ``truncation`` is psi of w_avg + psi (w - w_avg)."""
        cnd.class_labels(cond, num_samples, 0)       # unconditional: no cond
        kz, kn = jax.random.split(rng)
        z = batch_draw(jax.random.normal, kz, (num_samples, self.config.latent_dim))
        return self.generate(params, kn, z, truncation)

    def invert(self, params, rng, images, num_steps, *, space="w+", learning_rate=0.05):
        """GAN inversion of uint8 ``images`` [B, H, H, C] by Adam from w_avg.

        ``space="w"``: one w [B, w_dim] for every layer; ``"w+"``: one per layer
        [B, num_ws, w_dim]. Noise is zero (its mean), so ``rng`` is unused and the
        reconstruction deterministic. Minimises the per-example MSE on the [-1, 1]
        scale (:func:`genjax.core.inversion.reconstruction_mse`) by ``num_steps`` steps of
        Adam, its step size decaying from ``learning_rate`` to 0 (cosine). Returns
        (latents, reconstructions uint8 [B, H, H, C]).
        """
        del rng
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        check_batch(self, {"image": images})
        target = lk.to_symmetric(images, self.config.num_levels)
        n = target.shape[0]
        noise = self.zero_noise(n)
        w_avg = params[STATE_KEY]["w_avg"]
        shape = (n, self.config.w_dim) if space == "w" else (n, self.num_ws, self.config.w_dim)
        init = jnp.broadcast_to(w_avg, shape)

        def render(latents):
            ws = self.broadcast_ws(latents) if space == "w" else latents
            return self.synthesize(params, ws, noise)

        def loss_fn(latents):
            return inversion.reconstruction_mse(target, render(latents))

        # Cosine decay of the step size to 0 (the StyleGAN projector ramps it down too):
        # Adam at a fixed rate ends oscillating around the optimum.
        schedule = optax.cosine_decay_schedule(learning_rate, max(num_steps, 1))
        latents, _ = inversion.optimize(loss_fn, init, num_steps, optax.adam(schedule))
        return latents, self._to_levels(render(latents))
