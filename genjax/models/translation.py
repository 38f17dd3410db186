"""Image-to-image translation GANs: Pix2Pix (paired) and CycleGAN (unpaired).

Notation of the notes: an input image x of style X (here an edge map) is translated into an
output image y of style Y (here the digit). Images enter the networks on the [-1, 1] scale
(:func:`genjax.core.likelihoods.to_symmetric`) and leave them through tanh; outputs are
rounded back to the data's levels by :func:`~genjax.core.likelihoods.from_symmetric`.
``batch["source"]`` holds x and ``batch["image"]`` holds y, both uint8 ``[B, H, W, C]`` of
the same shape (``image_shape``).

Pix2Pix (Isola et al., 2017): training data consists of pairs (x, y). A U-Net generator G(x)
(an encoder-decoder whose decoder sees, at each resolution, the encoder's features of that
resolution: skip connections) and a PatchGAN discriminator D(x, y), which judges the channel
concatenation of x with a real y or a fake G(x), play the conditional GAN game with an L1
term:

    G* = arg min_G max_D  L_cGAN(G, D) + lambda_L1 L_L1(G),
    L_cGAN(G, D) = E_{x,y} log D(x, y) + E_x log(1 - D(x, G(x))),
    L_L1(G) = E_{x,y} |y - G(x)|_1    (the mean absolute error per sub-pixel on [-1, 1]).

As in the reference implementation, D minimises 1/2 [-log D(x, y) - log(1 - D(x, G(x)))]
(the 1/2 slows D down relative to G), G minimises the non-saturating
``adversarial_weight`` (-log D(x, G(x))) + lambda_L1 L_L1 with lambda_L1 = ``l1_weight`` =
100, and every log is averaged over the grid of patches as well as the batch.
``adversarial_weight = 0`` is the L1-only U-Net baseline: the discriminator phase is then
*dropped* from the update rule, so D stays at its initialisation (kept in params so that
checkpoints have one layout) and is never evaluated; the loss is exactly
lambda_L1 E |y - G(x)|. ``dropout`` (the reference's 0.5 in the decoder levels next to the
bottleneck) is active in training and in :meth:`Pix2Pix.sample` (as the paper does at test
time, the only source of randomness in G), never in :meth:`Pix2Pix.translate`.

CycleGAN (Zhu et al., 2017): training data is a set of images of style X and a set of style
Y, unpaired. Generators G: X -> Y and F: Y -> X, discriminators D_Y (real y vs G(x)) and
D_X (real x vs F(y)), with the least-squares GAN loss the reference uses, cycle consistency
and the identity loss:

    L(G, F, D_X, D_Y) = L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda_cyc L_cyc(G, F)
                        + lambda_id L_id(G, F),
    L_cyc = E_x |F(G(x)) - x|_1 + E_y |G(F(y)) - y|_1,
    L_id  = E_y |G(y) - y|_1 + E_x |F(x) - x|_1,

lambda_cyc = ``cycle_weight`` = 10 and lambda_id = ``identity_weight`` * lambda_cyc = 5
(the reference's lambda_identity = 0.5). D_Y minimises 1/2 E (D_Y(y) - 1)^2 + 1/2 E D_Y(y~)^2
and G minimises E (D_Y(G(x)) - 1)^2 (the reference's MSE, i.e. twice
:func:`~genjax.core.gan_losses.least_squares_generator_loss`); D_X and F likewise. Each
|.|_1 and each square is a mean over sub-pixels or patches and the batch.

Unpaired training: the edges2digits batches are paired, so the model pairs them off itself:
x_i = source_i and y_i = image_{i xor 1} (examples 0 and 1 swap their digits, 2 and 3, ...),
the digit of another example of the batch; the (per-device) batch must be even. No term of
L couples x_i with y_i anyway; the swap makes "unpaired" hold by construction, and as it
never crosses a pair of rows, one device and pmap see the same (x, y).

Image history pool (Shrivastava et al., 2017, as in the reference): D_X and D_Y see fakes
from a pool of ``pool_size`` = 50 earlier generated images per direction, kept as
non-trainable state in ``params["state"]`` (``pool_x``: F(y)'s, ``pool_y``: G(x)'s, on the
[-1, 1] scale, and ``pool_count``, the number of images written so far). Each step:

* discriminator phase: the fakes y~ fed to D_Y are half current, half history: example i of
  the (global) batch gets the current G(x_i) for even i and ``pool_y[j_i]`` for odd i, with
  j_i uniform over the filled slots 0..min(count, P) - 1 (:meth:`CycleGAN.mix_with_pool`;
  all current while the pool is empty); likewise x~ for D_X. The reference draws the coin
  per image; here exactly half are history.
* generator phase (``with_stats``): the new G(x_i) and F(y_i) go into the pools by
  :meth:`CycleGAN.update_state` as a ring buffer: example i of the global batch, for
  i < P, is written to slot (count + i) mod P, then count += min(B, P). With B >= P the pool
  then holds the previous step's fakes. The writes are sums over the batch (scatter-adds
  into zeros, the state protocol of :mod:`genjax.train.step`), so under pmap one psum gives
  each replica the whole batch's writes.

Networks: the U-Net follows the reference's (4x4 stride-2 convolutions, LeakyReLU 0.2 down,
ReLU and 4x4 transposed convolutions up, instance norm except on the outermost and innermost
levels, tanh out); the CycleGAN default is the reference's ResNet generator (7x7 conv,
stride-2 convs, residual blocks with reflection padding, transposed convs up, 7x7 conv,
tanh). The PatchGAN is the reference's with ``disc_kernel`` x ``disc_kernel`` convolutions
(padding 1): one stride-2 conv per entry of ``disc_channels``, a stride-1 conv with twice
the last width, and a stride-1 conv to one logit per patch. With n stride-2 convs of kernel
k the receptive field of a logit is 1 + (k - 1)(3 * 2^n - 1) pixels: 70 for the reference's
k = 4, n = 3 on 256x256 images, 11 here (k = 3, n = 1) on 16x16 digits, an 8x8 grid of
overlapping patches. D has no normalisation: an instance norm's spatial mean and variance
would make every logit depend on every pixel, so the patches would not be patches.

Sampling and conditioning: :meth:`sample` translates source images. ``cond``, when given,
is uint8 images x ``[num_samples, H, W, C]``; without it (``genjax train``'s sample grids,
``genjax sample``) the sources are the edge maps of the first ``num_samples`` examples of the
test split of ``sample_dataset`` (``edges2digits``), in order, cycling when there are fewer.
``capabilities.conditioning`` is ``"none"`` because the protocol has no image conditioning:
the CLI cannot pass ``--cond`` images, only the Python API can.

Evaluation (``genjax eval``, ``capabilities.split_metrics``): errors on the levels 0..L-1 of
the rounded outputs against the split's paired images, pooled over all its sub-pixels:
``*_l1`` is the mean |difference| in levels and ``*_psnr`` is 10 log10((L - 1)^2 / MSE) dB.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import gan_losses as gl
from genjax.core import likelihoods as lk
from genjax.core.metrics import psnr_from_mse
from genjax.core.random import batch_draw, device_key
from genjax.models.protocol import STATE_KEY, Capabilities, Phase, UpdateRule

NORMS = ("instance", "none")
GENERATORS = ("unet", "resnet")
DIRECTIONS = ("x2y", "y2x")


# ------------------------------------------------------------------------------- configs
@dataclasses.dataclass(frozen=True)
class _TranslationConfig:
    image_shape: tuple = (16, 16, 1)    # (H, W, C) of x (batch["source"]) and y (batch["image"])
    num_levels: int = 256               # levels per sub-pixel of both
    channels: tuple = (32, 64, 128, 128)  # U-Net: encoder widths, each level halves H and W
    norm: str = "instance"              # generator normalisation: instance | none
    disc_channels: tuple = (64,)        # PatchGAN: widths of its stride-2 convs
    disc_kernel: int = 3                # PatchGAN kernel size (the reference: 4)
    sample_dataset: str = "edges2digits"  # sample(cond=None) translates its test sources

    def _generator_downsamplings(self) -> int:
        return len(self.channels)

    def __post_init__(self):
        if len(self.image_shape) != 3:
            raise ValueError(f"model.image_shape must be (H, W, C), got {self.image_shape}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"model.channels must be positive widths, got {self.channels}")
        if not self.disc_channels or min(self.disc_channels) < 1:
            raise ValueError("model.disc_channels must hold at least one positive width (one "
                             f"stride-2 conv each), got {self.disc_channels}")
        if self.disc_kernel < 2:
            raise ValueError(f"model.disc_kernel must be >= 2, got {self.disc_kernel}")
        if self.norm not in NORMS:
            raise ValueError(f"model.norm must be one of {NORMS}, got {self.norm!r}")
        if self.num_levels < 2:
            raise ValueError(f"model.num_levels must be >= 2, got {self.num_levels}")
        scale = 2 ** self._generator_downsamplings()
        if self.image_shape[0] % scale or self.image_shape[1] % scale:
            raise ValueError(f"model.image_shape {tuple(self.image_shape[:2])} must be divisible "
                             f"by {scale}, the generator's {self._generator_downsamplings()} "
                             "stride-2 downsamplings")


@dataclasses.dataclass(frozen=True)
class Pix2PixConfig(_TranslationConfig):
    l1_weight: float = 100.0            # lambda_L1
    adversarial_weight: float = 1.0     # weight of -log D(x, G(x)); 0: the L1-only U-Net
    dropout: float = 0.0                # U-Net decoder dropout (the reference: 0.5)

    def __post_init__(self):
        super().__post_init__()
        if self.l1_weight < 0 or self.adversarial_weight < 0:
            raise ValueError("model.l1_weight and model.adversarial_weight must be >= 0, got "
                             f"{self.l1_weight} and {self.adversarial_weight}")
        if self.l1_weight == 0 and self.adversarial_weight == 0:
            raise ValueError("model.l1_weight and model.adversarial_weight are both 0: "
                             "nothing to train")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclasses.dataclass(frozen=True)
class CycleGANConfig(_TranslationConfig):
    generator: str = "resnet"           # resnet (the reference's) | unet
    channels: tuple = (32, 64, 128)     # resnet: 7x7 conv width, then one per stride-2 conv
    num_res_blocks: int = 3             # resnet: residual blocks at the coarsest level
    cycle_weight: float = 10.0          # lambda_cyc
    identity_weight: float = 0.5        # lambda_id / lambda_cyc (the reference's lambda_identity)
    pool_size: int = 50                 # P, generated images kept per direction (0: no pool)

    def _generator_downsamplings(self) -> int:
        return len(self.channels) - (self.generator == "resnet")

    def __post_init__(self):
        if self.generator not in GENERATORS:
            raise ValueError(f"model.generator must be one of {GENERATORS}, "
                             f"got {self.generator!r}")
        super().__post_init__()
        if self.generator == "resnet" and min(self.image_shape[:2]) // 2 ** (
                len(self.channels) - 1) < 2:
            raise ValueError(f"model.image_shape {tuple(self.image_shape[:2])} is too small for "
                             f"{len(self.channels) - 1} downsamplings (reflection padding needs "
                             "a coarsest level of at least 2x2)")
        for name in ("cycle_weight", "identity_weight", "pool_size", "num_res_blocks"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.{name} must be >= 0, got {getattr(self, name)}")


# ------------------------------------------------------------------------------ networks
def instance_norm(h: jax.Array, eps: float = 1e-5) -> jax.Array:
    """(h - mean) / sqrt(var + eps) over H and W, per example and channel (no affine
    parameters, as the reference's ``InstanceNorm2d``). h: [B, H, W, C]."""
    mean = jnp.mean(h, axis=(1, 2), keepdims=True)
    var = jnp.var(h, axis=(1, 2), keepdims=True)
    return (h - mean) * jax.lax.rsqrt(var + eps)


def _conv(features: int, kernel: int, stride: int = 1, padding=1, name=None) -> nn.Conv:
    pad = ((padding, padding), (padding, padding)) if isinstance(padding, int) else padding
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=pad, name=name)


class UNetGenerator(nn.Module):
    """G(x): x [B, H, W, C_in] on [-1, 1] -> [B, H, W, out_channels] in (-1, 1).

    Encoder level i (``down_i``): [LeakyReLU 0.2 (i > 0)], 4x4 stride-2 conv to
    ``channels[i]``, instance norm (not on the outermost i = 0 nor the innermost level).
    Decoder level i (``up_i``, innermost first): ReLU, 4x4 stride-2 transposed conv to
    ``channels[i - 1]`` (``out_channels`` at i = 0), instance norm and, next to the bottleneck,
    dropout, then the concatenation with the encoder's output of level i - 1 (the skip
    connection); the outermost ends in tanh."""

    channels: tuple
    out_channels: int
    dropout: float = 0.0
    norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        n = len(self.channels)
        skips, h = [], x
        for i, width in enumerate(self.channels):
            if i:
                h = nn.leaky_relu(h, 0.2)
            h = _conv(width, 4, 2, name=f"down_{i}")(h)
            if self.norm and 0 < i < n - 1:
                h = instance_norm(h)
            skips.append(h)
        for i in reversed(range(n)):
            width = self.out_channels if i == 0 else self.channels[i - 1]
            h = nn.ConvTranspose(width, (4, 4), strides=(2, 2), padding="SAME",
                                 name=f"up_{i}")(nn.relu(h))
            if i == 0:
                return jnp.tanh(h)
            if self.norm:
                h = instance_norm(h)
            if self.dropout and n - 4 <= i < n - 1:   # three levels next to the bottleneck
                h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
            h = jnp.concatenate([h, skips[i - 1]], axis=-1)


def _reflect(h: jax.Array, pad: int) -> jax.Array:
    return jnp.pad(h, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class ResNetGenerator(nn.Module):
    """The reference CycleGAN generator: x [B, H, W, C_in] -> [B, H, W, out_channels] in (-1, 1).

    Reflection pad 3, 7x7 conv to ``channels[0]``, norm, ReLU; per further width a 3x3
    stride-2 conv, norm, ReLU; ``num_res_blocks`` residual blocks h + [pad 1, conv 3x3, norm,
    ReLU, pad 1, conv 3x3, norm](h); back up by 3x3 stride-2 transposed convs (norm, ReLU);
    reflection pad 3, 7x7 conv to ``out_channels``, tanh."""

    channels: tuple
    out_channels: int
    num_res_blocks: int
    norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        del deterministic                   # no dropout
        norm = instance_norm if self.norm else (lambda h: h)
        h = nn.relu(norm(_conv(self.channels[0], 7, padding=0)(_reflect(x, 3))))
        for width in self.channels[1:]:
            h = nn.relu(norm(_conv(width, 3, 2)(h)))
        for _ in range(self.num_res_blocks):
            r = nn.relu(norm(_conv(self.channels[-1], 3, padding=0)(_reflect(h, 1))))
            h = h + norm(_conv(self.channels[-1], 3, padding=0)(_reflect(r, 1)))
        for width in reversed(self.channels[:-1]):
            h = nn.ConvTranspose(width, (3, 3), strides=(2, 2), padding="SAME")(h)
            h = nn.relu(norm(h))
        return jnp.tanh(_conv(self.out_channels, 7, padding=0)(_reflect(h, 3)))


class PatchDiscriminator(nn.Module):
    """PatchGAN: images [B, H, W, C] -> one logit per patch [B, h, w].

    k x k convs, padding 1: a stride-2 conv per entry of ``channels`` and a stride-1 conv of
    twice the last width (each followed by LeakyReLU 0.2), then a stride-1 conv to one channel.
    No normalisation, so each logit depends on its receptive field alone (module docstring)."""

    channels: tuple
    kernel: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for width in self.channels:
            h = nn.leaky_relu(_conv(width, self.kernel, 2)(h), 0.2)
        h = nn.leaky_relu(_conv(2 * self.channels[-1], self.kernel, 1)(h), 0.2)
        return _conv(1, self.kernel, 1)(h)[..., 0]


# ------------------------------------------------------------------------------- helpers
def _global_rows(n: int) -> jax.Array:
    """Index of each of the n local rows in the global batch [n] (int32): the row itself on
    one device, and under pmap this device's rows of the global index (through
    :func:`batch_draw`, which hands the sampler the global shape)."""
    return batch_draw(lambda _, shape: jnp.arange(shape[0], dtype=jnp.int32), None, (n,))


@functools.lru_cache(maxsize=None)
def _test_sources(dataset: str) -> np.ndarray:
    """Every ``source`` image of the test split of ``dataset``, in order: uint8 [N, H, W, C]."""
    from genjax import data as gdata

    batches, _ = gdata.load(dataset, "test", 512, shuffle=False, num_epochs=1,
                            drop_remainder=False)
    batches = list(batches)
    if not batches or "source" not in batches[0]:
        raise ValueError(f"dataset {dataset!r} has no 'source' images to translate: pass cond "
                         "(uint8 source images) to sample, or set model.sample_dataset")
    return np.concatenate([b["source"] for b in batches])


class _Errors:
    """Sums of |a - b| and (a - b)^2 over uint8 levels, for L1 and PSNR over a split."""

    def __init__(self, num_levels: int):
        self.peak, self.abs, self.sq, self.count = num_levels - 1, 0.0, 0.0, 0

    def add(self, output, target) -> None:
        diff = np.asarray(output, np.float64) - np.asarray(target, np.float64)
        self.abs += float(np.sum(np.abs(diff)))
        self.sq += float(np.sum(diff ** 2))
        self.count += diff.size

    def metrics(self, prefix: str) -> dict:
        return {f"{prefix}_l1": self.abs / self.count,
                f"{prefix}_psnr": float(psnr_from_mse(self.sq / self.count, self.peak))}


class _Translation:
    """What both families share: scaling, the PatchGAN, sources for sampling."""

    config: _TranslationConfig

    def _scale(self, images) -> jax.Array:
        return lk.to_symmetric(images, self.config.num_levels)

    def _levels(self, values) -> jax.Array:
        return lk.from_symmetric(values, self.config.num_levels)

    def _pair(self, batch) -> tuple[jax.Array, jax.Array]:
        """(x, y) on [-1, 1] from batch["source"] and batch["image"]."""
        if "source" not in batch:
            raise ValueError("image-to-image models need batch['source'] (the input x) beside "
                             "batch['image'] (the target y): train on a paired dataset such "
                             "as edges2digits")
        source, image = batch["source"], batch["image"]
        shape = tuple(self.config.image_shape)
        if tuple(source.shape[1:]) != shape or tuple(image.shape[1:]) != shape:
            raise ValueError(f"batch['source'] {tuple(source.shape)} and batch['image'] "
                             f"{tuple(image.shape)} must both be [B, *{shape}]")
        return self._scale(source), self._scale(image)

    def _sources(self, num_samples: int, cond) -> jax.Array:
        """uint8 sources [num_samples, H, W, C]: ``cond``, or the test split's (cycled)."""
        if cond is None:
            sources = _test_sources(self.config.sample_dataset)
            return jnp.asarray(sources[np.arange(num_samples) % len(sources)])
        shape = (num_samples,) + tuple(self.config.image_shape)
        if tuple(cond.shape) != shape:
            raise ValueError(f"cond must be uint8 source images of shape {shape}, got "
                             f"{tuple(cond.shape)}")
        return jnp.asarray(cond)

    def _init_input(self) -> jax.Array:
        return jnp.zeros((1,) + tuple(self.config.image_shape), jnp.float32)

    def _discriminator_module(self) -> PatchDiscriminator:
        return PatchDiscriminator(tuple(self.config.disc_channels), self.config.disc_kernel)


# ------------------------------------------------------------------------------ Pix2Pix
class Pix2Pix(_Translation):
    """Pix2Pix: paired translation x -> y (see the module docstring).

    params = {"generator": G, "discriminator": D}; D judges [x; y] (channel concatenation).
    """

    def __init__(self, config: Pix2PixConfig):
        self.config = c = config
        self.generator = UNetGenerator(tuple(c.channels), c.image_shape[-1], c.dropout,
                                       c.norm == "instance")
        self.discriminator = self._discriminator_module()
        self.capabilities = Capabilities(param_groups=True, split_metrics=True)

    def update_rule(self) -> UpdateRule:
        """A discriminator phase then a generator phase; with ``adversarial_weight = 0`` the
        generator phase alone (D is never updated). The EMA follows G."""
        phases = (Phase("generator", self.generator_loss),)
        if self.config.adversarial_weight:
            phases = (Phase("discriminator", self.discriminator_loss),) + phases
        return UpdateRule(groups={"generator": ("generator",),
                                  "discriminator": ("discriminator",)},
                          phases=phases, ema_groups=("generator",))

    def init(self, rng, batch):
        g, d = jax.random.split(rng)
        x = self._init_input()
        return {"generator": self.generator.init(g, x),
                "discriminator": self.discriminator.init(d, jnp.concatenate([x, x], -1))}

    def generate(self, params, x: jax.Array, rng=None) -> jax.Array:
        """G(x) on [-1, 1], [B, H, W, C]; dropout (if any) with ``rng``, none without."""
        if rng is None or not self.config.dropout:
            return self.generator.apply(params["generator"], x)
        return self.generator.apply(params["generator"], x, False,
                                    rngs={"dropout": device_key(rng)})

    def logits(self, params, x: jax.Array, y: jax.Array) -> jax.Array:
        """D(x, y) logits per patch [B, h, w]."""
        return self.discriminator.apply(params["discriminator"], jnp.concatenate([x, y], -1))

    def discriminator_loss(self, params, batch, rng):
        """1/2 [E -log D(x, y) + E -log(1 - D(x, G(x)))], each a mean over patches and batch."""
        x, y = self._pair(batch)
        fake = jax.lax.stop_gradient(self.generate(params, x, rng))
        real_f = self.logits(params, x, y).reshape(-1)
        fake_f = self.logits(params, x, fake).reshape(-1)
        loss = 0.5 * gl.minimax_discriminator_loss(real_f, fake_f)
        return loss, {"loss": loss, "accuracy": gl.discriminator_accuracy(real_f, fake_f)}

    def generator_loss(self, params, batch, rng):
        """``adversarial_weight`` E -log D(x, G(x)) + lambda_L1 E |y - G(x)|; metrics ``l1``
        and ``psnr`` (dB, on [-1, 1], peak-to-peak 2) of this batch's G(x)."""
        c = self.config
        x, y = self._pair(batch)
        fake = self.generate(params, x, rng)
        l1 = jnp.mean(jnp.abs(y - fake))
        loss = c.l1_weight * l1
        metrics = {"l1": l1, "psnr": psnr_from_mse(jnp.mean(jnp.square(y - fake)), 2.0)}
        if c.adversarial_weight:
            adversarial = gl.nonsaturating_generator_loss(self.logits(params, x, fake).reshape(-1))
            loss = loss + c.adversarial_weight * adversarial
            metrics["adversarial"] = adversarial
        return loss, {"loss": loss, **metrics}

    def loss(self, params, batch, rng):
        """Protocol form: the two players' losses summed (the generator's alone when
        ``adversarial_weight = 0``), for evaluation; training runs the phases."""
        g, metrics = self.generator_loss(params, batch, rng)
        if not self.config.adversarial_weight:
            return g, metrics
        d, _ = self.discriminator_loss(params, batch, rng)
        return d + g, {"discriminator_loss": d, "generator_loss": g, "l1": metrics["l1"]}

    def translate(self, params, sources) -> jax.Array:
        """G(x) without dropout: uint8 sources [B, H, W, C] -> uint8 [B, H, W, C]."""
        return self._levels(self.generate(params, self._scale(sources)))

    def sample(self, params, rng, num_samples, cond=None):
        """uint8 [num_samples, H, W, C]: G(x) of ``cond`` (uint8 sources), or of the test
        split's sources (module docstring), with dropout noise from ``rng`` when
        ``dropout > 0``."""
        x = self._scale(self._sources(num_samples, cond))
        return self._levels(self.generate(params, x, rng))

    def split_metrics(self, params, batches) -> dict:
        """Over a split: ``translation_l1`` (mean |G(x) - y| in levels) and
        ``translation_psnr`` (dB) of the rounded G(x) against the paired y, pooled over all
        sub-pixels, and ``num_examples``."""
        translate = jax.jit(self.translate)
        errors, count = _Errors(self.config.num_levels), 0
        for batch in batches:
            errors.add(translate(params, batch["source"]), batch["image"])
            count += len(batch["image"])
        return {**errors.metrics("translation"), "num_examples": count}


# ----------------------------------------------------------------------------- CycleGAN
class CycleGAN(_Translation):
    """CycleGAN: unpaired translation between X and Y (see the module docstring).

    params = {"G": X -> Y, "F": Y -> X, "D_X", "D_Y", "state": {"pool_x", "pool_y",
    "pool_count"}}; groups ``generator`` (G, F, with an EMA) and ``discriminator`` (D_X, D_Y).
    """

    def __init__(self, config: CycleGANConfig):
        self.config = c = config
        out, norm = c.image_shape[-1], c.norm == "instance"
        if c.generator == "unet":
            self.net = UNetGenerator(tuple(c.channels), out, 0.0, norm)
        else:
            self.net = ResNetGenerator(tuple(c.channels), out, c.num_res_blocks, norm)
        self.discriminator = self._discriminator_module()
        self.capabilities = Capabilities(param_groups=True, state=True, split_metrics=True)

    def update_rule(self) -> UpdateRule:
        return UpdateRule(groups={"generator": ("G", "F"), "discriminator": ("D_X", "D_Y")},
                          phases=(Phase("discriminator", self.discriminator_loss),
                                  Phase("generator", self.generator_loss, with_stats=True)),
                          ema_groups=("generator",))

    def init(self, rng, batch):
        kg, kf, kx, ky = jax.random.split(rng, 4)
        x = self._init_input()
        pool = jnp.zeros((self.config.pool_size,) + tuple(self.config.image_shape), jnp.float32)
        return {"G": self.net.init(kg, x), "F": self.net.init(kf, x),
                "D_X": self.discriminator.init(kx, x), "D_Y": self.discriminator.init(ky, x),
                STATE_KEY: {"pool_x": pool, "pool_y": pool,
                            "pool_count": jnp.zeros((), jnp.int32)}}

    # ------------------------------------------------------------------ pieces
    def G(self, params, x):
        """G: X -> Y on [-1, 1]."""
        return self.net.apply(params["G"], x)

    def F(self, params, y):
        """F: Y -> X on [-1, 1]."""
        return self.net.apply(params["F"], y)

    def _unpaired(self, batch) -> tuple[jax.Array, jax.Array]:
        """x_i = source_i, y_i = image_{i xor 1}: never an example's own pair."""
        x, y = self._pair(batch)
        if x.shape[0] % 2:
            raise ValueError(f"CycleGAN pairs each source with a neighbouring example's image: "
                             f"it needs an even (per-device) batch, got {x.shape[0]}")
        return x, y[jnp.arange(y.shape[0]) ^ 1]

    def mix_with_pool(self, current: jax.Array, pool: jax.Array, count: jax.Array,
                      rng: jax.Array) -> jax.Array:
        """D's fakes: current [B, H, W, C] with every odd row (of the global batch) replaced
        by ``pool[j]``, j uniform over the filled slots 0..min(count, P) - 1; ``current`` as
        it is while the pool is empty."""
        size = pool.shape[0]
        if size == 0:
            return current
        n = current.shape[0]
        filled = jnp.minimum(count, size)
        j = batch_draw(jax.random.randint, rng, (n,), 0, jnp.maximum(filled, 1))
        history = (_global_rows(n) % 2 == 1) & (filled > 0)
        return jnp.where(history[:, None, None, None], pool[j], current)

    def pool_stats(self, params, fake_x: jax.Array, fake_y: jax.Array) -> dict:
        """The pool writes of this batch as sums over it: example i of the global batch
        (i < P) goes to slot (count + i) mod P. ``x``, ``y`` [P, H, W, C]: the images written
        to each slot (zero elsewhere), ``hits`` [P]: 1 where written, ``written``: how many."""
        size = self.config.pool_size
        n = fake_x.shape[0]
        rows = _global_rows(n)
        keep = rows < size
        slot = jnp.where(keep, (params[STATE_KEY]["pool_count"] + rows) % max(size, 1), size)

        def scatter(values):
            return jnp.zeros((size,) + values.shape[1:], values.dtype).at[slot].add(
                values, mode="drop")

        return {"x": scatter(fake_x), "y": scatter(fake_y),
                "hits": scatter(jnp.ones((n,), jnp.float32)),
                "written": jnp.sum(keep.astype(jnp.int32))}

    def update_state(self, params, stats):
        """Write the generator phase's fakes into the pools (:meth:`pool_stats`); metric
        ``pool_filled``, the number of filled slots."""
        state = params[STATE_KEY]
        hit = (stats["hits"] > 0)[:, None, None, None]
        count = state["pool_count"] + stats["written"]
        new = {"pool_x": jnp.where(hit, stats["x"], state["pool_x"]),
               "pool_y": jnp.where(hit, stats["y"], state["pool_y"]),
               "pool_count": count.astype(jnp.int32)}
        filled = jnp.minimum(count, self.config.pool_size).astype(jnp.float32)
        return dict(params, **{STATE_KEY: new}), {"pool_filled": filled}

    # ------------------------------------------------------------------ losses
    def discriminator_loss(self, params, batch, rng):
        """Least squares for D_Y and D_X: 1/2 E (D_Y(y) - 1)^2 + 1/2 E D_Y(y~)^2 + the same for
        D_X on x and x~, where y~ = G(x) and x~ = F(y) mixed with the pools (keys
        ``k_x, k_y = split(rng)``)."""
        x, y = self._unpaired(batch)
        state = params[STATE_KEY]
        k_x, k_y = jax.random.split(rng)
        fake_y = jax.lax.stop_gradient(self.G(params, x))
        fake_x = jax.lax.stop_gradient(self.F(params, y))
        fake_y = self.mix_with_pool(fake_y, state["pool_y"], state["pool_count"], k_y)
        fake_x = self.mix_with_pool(fake_x, state["pool_x"], state["pool_count"], k_x)
        d_y = gl.least_squares_discriminator_loss(
            self.discriminator.apply(params["D_Y"], y),
            self.discriminator.apply(params["D_Y"], fake_y))
        d_x = gl.least_squares_discriminator_loss(
            self.discriminator.apply(params["D_X"], x),
            self.discriminator.apply(params["D_X"], fake_x))
        return d_y + d_x, {"loss": d_y + d_x, "loss_y": d_y, "loss_x": d_x}

    def generator_loss(self, params, batch, rng):
        """(L, (metrics, stats)): L of the module docstring for G and F; ``stats`` the pool
        writes of this batch's G(x) and F(y) (:meth:`pool_stats`)."""
        del rng
        c = self.config
        x, y = self._unpaired(batch)
        n = x.shape[0]
        fake_y, fake_x = self.G(params, x), self.F(params, y)
        # One pass per network: G([F(y); y]) = [G(F(y)); G(y)], F([G(x); x]) = [F(G(x)); F(x)].
        g_out = self.G(params, jnp.concatenate([fake_x, y]))
        f_out = self.F(params, jnp.concatenate([fake_y, x]))
        rec_y, idt_y, rec_x, idt_x = g_out[:n], g_out[n:], f_out[:n], f_out[n:]
        adv_g = 2.0 * gl.least_squares_generator_loss(
            self.discriminator.apply(params["D_Y"], fake_y))
        adv_f = 2.0 * gl.least_squares_generator_loss(
            self.discriminator.apply(params["D_X"], fake_x))
        cycle = jnp.mean(jnp.abs(rec_x - x)) + jnp.mean(jnp.abs(rec_y - y))
        identity = jnp.mean(jnp.abs(idt_y - y)) + jnp.mean(jnp.abs(idt_x - x))
        loss = (adv_g + adv_f + c.cycle_weight * cycle
                + c.identity_weight * c.cycle_weight * identity)
        metrics = {"loss": loss, "adversarial_g": adv_g, "adversarial_f": adv_f,
                   "cycle": cycle, "identity": identity}
        stats = self.pool_stats(params, jax.lax.stop_gradient(fake_x),
                                jax.lax.stop_gradient(fake_y))
        return loss, (metrics, stats)

    def loss_and_stats(self, params, batch, rng):
        """The state protocol's form of :meth:`loss`: (D's + G's loss, (metrics, the
        generator phase's pool writes)); training runs the phases."""
        d, _ = self.discriminator_loss(params, batch, rng)
        g, (metrics, stats) = self.generator_loss(params, batch, rng)
        metrics = {"discriminator_loss": d, "generator_loss": g, "cycle": metrics["cycle"]}
        return d + g, (metrics, stats)

    def loss(self, params, batch, rng):
        """Protocol form: the two phases' losses summed, metrics ``discriminator_loss``,
        ``generator_loss`` and ``cycle``."""
        loss, (metrics, _) = self.loss_and_stats(params, batch, rng)
        return loss, metrics

    # -------------------------------------------------------------- translation
    def _net(self, direction: str):
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        return (self.G, self.F) if direction == "x2y" else (self.F, self.G)

    def translate(self, params, images, direction: str = "x2y") -> jax.Array:
        """G(x) (``"x2y"``) or F(y) (``"y2x"``): uint8 [B, H, W, C] -> uint8 [B, H, W, C]."""
        forward, _ = self._net(direction)
        return self._levels(forward(params, self._scale(images)))

    def reconstruct(self, params, images, direction: str = "x2y") -> jax.Array:
        """The cycle F(G(x)) (``"x2y"``) or G(F(y)) (``"y2x"``), unrounded in between: uint8
        [B, H, W, C] -> uint8 [B, H, W, C]."""
        forward, backward = self._net(direction)
        return self._levels(backward(params, forward(params, self._scale(images))))

    def sample(self, params, rng, num_samples, cond=None):
        """G(x), uint8 [num_samples, H, W, C], of ``cond`` (uint8 images of style X) or of
        the test split's sources (module docstring); deterministic (``rng`` unused)."""
        del rng
        return self.translate(params, self._sources(num_samples, cond))

    def split_metrics(self, params, batches) -> dict:
        """Over a split of paired (x, y), on rounded levels (L1 in levels, PSNR in dB):
        ``cycle_x_*`` F(G(x)) vs x, ``cycle_y_*`` G(F(y)) vs y, ``translation_*`` G(x) vs
        the paired y, ``translation_y2x_*`` F(y) vs x; and ``num_examples``."""

        @jax.jit
        def outputs(params, source, image):
            x, y = self._scale(source), self._scale(image)
            fake_y, fake_x = self.G(params, x), self.F(params, y)
            return tuple(map(self._levels, (self.F(params, fake_y), self.G(params, fake_x),
                                            fake_y, fake_x)))

        names = ("cycle_x", "cycle_y", "translation", "translation_y2x")
        errors = {name: _Errors(self.config.num_levels) for name in names}
        count = 0
        for batch in batches:
            rec_x, rec_y, fake_y, fake_x = outputs(params, batch["source"], batch["image"])
            for name, out, target in zip(names, (rec_x, rec_y, fake_y, fake_x),
                                         ("source", "image", "image", "source")):
                errors[name].add(out, batch[target])
            count += len(batch["image"])
        out = {}
        for name in names:
            out.update(errors[name].metrics(name))
        return {**out, "num_examples": count}
