"""Autoregressive image models: FVSBN, NADE, MADE, PixelCNN, Gated PixelCNN, WaveNet,
and a causal transformer over pixels (ImageGPT-like).

Every model factorises the image by the chain rule over a raster scan, with
the colours of a pixel in the order R -> G -> B (notation of the notes):

    p(x) = prod_{i=1}^{D} p(x_i | x_<i),      D = H * W * C,

and computes all D conditionals in one pass on the data (teacher forcing), so
``log_prob`` is the *exact* log-likelihood in nats and ``loss`` its mean per
dimension. Sampling is sequential: one ``lax.fori_loop`` over the positions
inside one jitted function, each step re-running the network on the canvas
(the transformer instead decodes one position at a time from a key/value
cache, and PixelCNN, Gated PixelCNN and WaveNet compute one position per layer
from caches of their activations, :mod:`genjax.nn.cached`). ``complete``
samples the rest of an image below its known top rows.

Regularisation: ``dropout`` > 0 (MADE, PixelCNN, Gated PixelCNN, WaveNet, the
transformer, PixelRNN) drops hidden units in the training loss only; ``log_prob`` and the
samplers run the exact, deterministic network. Weight decay is the optimizer's
(``optimizer.name = "adamw"``, ``optimizer.weight_decay``).

Output distributions (``output`` in the config), on the data's L levels:

* ``auto``: Bernoulli (one logit) when L = 2, else ``categorical``.
* ``categorical``: an L-way softmax per sub-pixel.
* ``mixture`` (PixelCNN and Gated PixelCNN): the PixelCNN++ discretized
  logistic mixture per *pixel*, channels coupled linearly
  (:func:`genjax.core.likelihoods.pixel_mixture_log_prob`); the network then
  sees only the pixels before, not the earlier colours of the same pixel.

The models:

* ``fvsbn``: one logistic regression per position on the positions before it.
* ``nade``: a hidden layer shared by all conditionals, O(H D) to evaluate.
* ``made``: a masked autoencoder; ``num_orderings`` > 1 trains an ensemble of
  orderings (and connectivities) with shared weights, one drawn per step; its
  ``log_prob`` is the exact log-density of the uniform mixture of the M
  orderings, log (1/M) sum_m p_m(x).
* ``pixelcnn``: mask-A then mask-B convolutions (has a blind spot).
* ``gated_pixelcnn``: vertical + horizontal stacks (no blind spot), class-conditional.
* ``wavenet``: dilated causal 1-D convolutions over the raster sequence.
* ``pixel_transformer``: a decoder-only transformer over the raster sequence.
* ``row_lstm``: PixelRNN's Row LSTM, rows top to bottom (a triangular receptive field).
* ``diagonal_bilstm``: PixelRNN's Diagonal BiLSTM, both diagonal directions (no blind spot).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from genjax.core import conditioning as cnd
from genjax.core import likelihoods as lk
from genjax.core.masks import made_masks
from genjax.core.random import device_key, init_key
from genjax.nn import cached, precision
from genjax.nn.masked import (FVSBNNetwork, GatedPixelCNN, MADENetwork, NADENetwork, PixelCNN,
                              WaveNet)
from genjax.models.protocol import Capabilities, check_batch
from genjax.nn.pixelrnn import PixelRNN
from genjax.nn.transformer import CausalTransformer

_OUTPUTS = ("auto", "categorical", "mixture")


@dataclasses.dataclass(frozen=True)
class AutoregressiveConfig:
    image_shape: tuple[int, int, int] = (16, 16, 1)  # (H, W, C) of the data
    num_levels: int = 2            # levels per sub-pixel (2: binarized)
    num_classes: int = 0           # > 0: class-conditional (gated_pixelcnn, wavenet, transformer)
    output: str = "auto"           # auto | categorical | mixture (PixelCNN++ logistic mixture)
    num_mixtures: int = 5          # components of the mixture output
    dropout: float = 0.0           # dropout rate in training (the loss only; not fvsbn/nade)

    _conditional = False
    _mixture = False
    _dropout = True

    def __post_init__(self):
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape}")
        if self.num_levels < 2:
            raise ValueError(f"num_levels must be >= 2, got {self.num_levels}")
        if self.output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {self.output!r}")
        if self.output == "mixture" and not self._mixture:
            raise ValueError("output='mixture' is available for pixelcnn and gated_pixelcnn")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.dropout and not self._dropout:
            raise ValueError("dropout is available for made, pixelcnn, gated_pixelcnn, wavenet, "
                             "pixel_transformer, row_lstm and diagonal_bilstm")
        if self.num_classes and not self._conditional:
            raise ValueError("this model is not class-conditional: set num_classes=0 (use "
                             "gated_pixelcnn, wavenet or pixel_transformer)")


@dataclasses.dataclass(frozen=True)
class FVSBNConfig(AutoregressiveConfig):
    _dropout = False


@dataclasses.dataclass(frozen=True)
class NADEConfig(AutoregressiveConfig):
    hidden_dim: int = 500
    activation: str = "sigmoid"    # sigmoid (Larochelle & Murray 2011) | relu (Uria et al. 2016)
    _dropout = False

    def __post_init__(self):
        super().__post_init__()
        if self.activation not in ("sigmoid", "relu"):
            raise ValueError(f"activation must be sigmoid or relu, got {self.activation!r}")


@dataclasses.dataclass(frozen=True)
class MADEConfig(AutoregressiveConfig):
    hidden_dims: tuple[int, ...] = (500, 500)
    ordering: str = "natural"      # natural | random (of the first ordering)
    num_orderings: int = 1         # > 1: an ensemble of random orderings, shared weights
    hidden_degrees: str = "random"  # random | equal
    mask_seed: int = 0


@dataclasses.dataclass(frozen=True)
class PixelCNNConfig(AutoregressiveConfig):
    features: int = 64
    num_layers: int = 5            # residual (PixelCNN) or gated (Gated PixelCNN) layers
    first_kernel: int = 7          # mask-A kernel
    kernel: int = 3                # mask-B kernels
    _mixture = True


@dataclasses.dataclass(frozen=True)
class GatedPixelCNNConfig(PixelCNNConfig):
    _conditional = True


@dataclasses.dataclass(frozen=True)
class WaveNetConfig(AutoregressiveConfig):
    features: int = 64
    skip_features: int = 128
    num_layers: int = 8            # dilations 1 .. 2^(num_layers - 1) per stack
    num_stacks: int = 1
    _conditional = True


@dataclasses.dataclass(frozen=True)
class TransformerConfig(AutoregressiveConfig):
    dim: int = 128
    num_layers: int = 4
    num_heads: int = 4
    compute_dtype: str = "float32"  # transformer computation dtype (bfloat16 on accelerators)
    remat: bool = False            # recompute block activations in the backward pass (memory)
    _conditional = True

    def __post_init__(self):
        super().__post_init__()
        precision.compute_dtype(self.compute_dtype)     # a clear error for an unknown name


class _Autoregressive:
    """Shared machinery: distributions over *units* (sub-pixels, or pixels for the
    mixture), likelihood, sampler and completion.

    A subclass sets ``self.net`` and implements ``_inputs(levels) -> network
    input`` and ``_apply(params, inputs, label) -> [B, U, P]``, the parameters of
    the U conditionals (unit u in raster order), where output u may depend only
    on units before u.
    """

    def __init__(self, config: AutoregressiveConfig):
        self.capabilities = Capabilities(
            likelihood="exact", likelihood_kind="exact",
            conditioning="class" if config.num_classes else "none",
            num_classes=config.num_classes)
        self.config = c = config
        h, w, ch = c.image_shape
        self.num_dims = h * w * ch
        if c.output == "mixture":
            self.head = "mixture"
            self.unit_size = ch                    # a unit is a whole pixel
            self.num_params = c.num_mixtures * (1 + 2 * ch + ch * (ch - 1) // 2)
        else:
            self.head = "bernoulli" if c.num_levels == 2 and c.output == "auto" else "categorical"
            self.unit_size = 1                     # a unit is one sub-pixel
            self.num_params = 1 if self.head == "bernoulli" else c.num_levels
        self.num_units = self.num_dims // self.unit_size

    # ------------------------------------------------------------ subclass API
    def _inputs(self, levels: jax.Array) -> jax.Array:
        raise NotImplementedError

    def _apply(self, params, inputs: jax.Array, label=None, *, rng=None) -> jax.Array:
        """The conditionals' parameters [B, U, P]; ``rng``: a dropout key (training), None
        for the exact, deterministic network."""
        raise NotImplementedError

    @staticmethod
    def _train_args(rng) -> dict:
        """Keyword arguments of ``net.apply`` that turn dropout on with key ``rng``."""
        return {} if rng is None else dict(train=True, rngs={"dropout": rng})

    def _init_net(self, rng, inputs, label):
        raise NotImplementedError

    # ------------------------------------------------------------ protocol
    def init(self, rng: jax.Array, batch: dict):
        levels = jnp.asarray(batch["image"]).astype(jnp.int32)
        return {"net": self._init_net(init_key(rng), self._inputs(levels), self._label(batch))}

    def _label(self, batch_or_cond, n: int | None = None):
        """Labels of a class-conditional model: a batch's, or the ``cond`` of n samples."""
        return cnd.labels_of(batch_or_cond, n, self.config.num_classes)

    def _units(self, levels: jax.Array) -> jax.Array:
        """uint8 [B, H, W, C] -> int32 [B, U, unit_size]."""
        return levels.astype(jnp.int32).reshape(levels.shape[0], self.num_units, self.unit_size)

    def _image(self, units: jax.Array) -> jax.Array:
        return units.reshape((units.shape[0],) + tuple(self.config.image_shape))

    def unit_log_probs(self, out: jax.Array, units: jax.Array) -> jax.Array:
        """log p(unit_u | units_<u) [B, U] from the network output [B, U, P]."""
        L = self.config.num_levels
        if self.head == "bernoulli":
            return lk.bernoulli_log_prob(units[..., 0].astype(out.dtype), out[..., 0])
        if self.head == "categorical":
            logp = jax.nn.log_softmax(out, axis=-1)
            return jnp.take_along_axis(logp, units, axis=-1)[..., 0]
        return lk.pixel_mixture_log_prob(lk.to_symmetric(units, L), *self._mixture_params(out),
                                         num_levels=L)

    def _mixture_params(self, out):
        m, c = self.config.num_mixtures, self.unit_size
        logits, means, log_scales, coeffs = jnp.split(out, np.cumsum([m, c * m, c * m]), -1)
        shape = out.shape[:-1]
        means = means.reshape(shape + (c, m))
        log_scales = jnp.maximum(log_scales.reshape(shape + (c, m)), -7.0)
        coeffs = jnp.tanh(coeffs.reshape(shape + (c * (c - 1) // 2, m)))
        return logits, means, log_scales, coeffs

    def sample_unit(self, rng: jax.Array, out: jax.Array) -> jax.Array:
        """Draw units [B, unit_size] int32 from their conditionals' parameters [B, P]."""
        L = self.config.num_levels
        if self.head == "bernoulli":
            return jax.random.bernoulli(rng, jax.nn.sigmoid(out)).astype(jnp.int32)
        if self.head == "categorical":
            return jax.random.categorical(rng, out, axis=-1)[:, None].astype(jnp.int32)
        x = lk.pixel_mixture_sample(rng, *self._mixture_params(out), num_levels=L)
        return lk.from_symmetric(x, L).astype(jnp.int32)

    def log_prob(self, params, batch: dict, rng: jax.Array | None = None) -> jax.Array:
        """Exact log p(x) in nats per example [B] (``rng`` is unused)."""
        check_batch(self, batch)
        levels = jnp.asarray(batch["image"])
        out = self._apply(params, self._inputs(levels.astype(jnp.int32)), self._label(batch))
        return jnp.sum(self.unit_log_probs(out, self._units(levels)), axis=-1)

    def _nll(self, params, batch, rng):
        """-log p(x) [B] as trained: with dropout drawn from ``rng`` when ``dropout`` > 0
        (``log_prob`` never drops)."""
        if not self.config.dropout:
            return -self.log_prob(params, batch, rng)
        check_batch(self, batch)
        levels = jnp.asarray(batch["image"])
        out = self._apply(params, self._inputs(levels.astype(jnp.int32)), self._label(batch),
                          rng=device_key(rng))
        return -jnp.sum(self.unit_log_probs(out, self._units(levels)), axis=-1)

    def loss(self, params, batch: dict, rng: jax.Array):
        """Mean negative log-likelihood per dimension (nats); metrics ``nll`` (nats per
        example) and ``bpd``."""
        nll = jnp.mean(self._nll(params, batch, rng))
        loss = nll / self.num_dims
        return loss, {"loss": loss, "nll": nll, "bpd": lk.bits_per_dim(nll, self.num_dims)}

    # ------------------------------------------------------------ sampling
    def _sample_loop(self, params, rng, units, known, label, *, apply=None, order=None):
        """Fill the units not ``known`` [U] (int32 units [B, U, unit_size]) one at a time,
        re-running the network on the whole canvas each step; ``order`` [U] is the
        sequence of units to visit (default: raster order, starting after the known
        prefix)."""
        apply = apply or self._apply
        if order is None:
            order = jnp.arange(self.num_units)
            start = jnp.where(jnp.all(known), self.num_units, jnp.argmin(known))
        else:
            start = 0

        def body(t, units):
            u = order[t]
            out = apply(params, self._inputs(self._image(units)), label)
            new = self.sample_unit(jax.random.fold_in(rng, t), jnp.take(out, u, axis=1))
            new = jnp.where(known[u], units[:, u], new)
            return jax.lax.dynamic_update_index_in_dim(units, new, u, axis=1)

        return jax.lax.fori_loop(start, self.num_units, body, units)

    def sample(self, params, rng: jax.Array, num_samples: int, cond=None) -> jax.Array:
        """Ancestral samples x_i ~ p(x_i | x_<i), uint8 [N, H, W, C]; ``cond``: labels [N]
        or an int, for class-conditional models (None: the classes in turn)."""
        units = jnp.zeros((num_samples, self.num_units, self.unit_size), jnp.int32)
        known = jnp.zeros((self.num_units,), bool)
        units = self._sample_loop(params, rng, units, known, self._label(cond, num_samples))
        return self._image(units).astype(jnp.uint8)

    def complete(self, params, rng: jax.Array, image: jax.Array, num_known_rows,
                 cond=None) -> jax.Array:
        """Keep the first ``num_known_rows`` rows of ``image`` uint8 [N, H, W, C] and sample
        the rest from p(x_rest | x_known): uint8 [N, H, W, C] (exact for raster orders)."""
        image = jnp.asarray(image)
        h, w, c = self.config.image_shape
        row_of_unit = jnp.arange(self.num_dims).reshape(self.num_units, self.unit_size)[:, 0]
        known = row_of_unit // (w * c) < num_known_rows
        units = self._units(image) * known[None, :, None]
        units = self._sample_loop(params, rng, units, known, self._label(cond, image.shape[0]))
        return self._image(units).astype(jnp.uint8)


# ---------------------------------------------------------------------------- families


class _Dense(_Autoregressive):
    """Models on the flattened image x in [-1, 1]^D."""

    def _inputs(self, levels):
        x = lk.to_symmetric(levels, self.config.num_levels)
        return x.reshape(x.shape[0], -1)

    def _init_net(self, rng, inputs, label):
        return self.net.init(rng, inputs)

    def _apply(self, params, inputs, label=None, *, rng=None):
        return self.net.apply(params["net"], inputs)


class FVSBN(_Dense):
    """Fully visible sigmoid belief network: p(x_d | x_<d) = sigma(b_d + sum_{j<d} W_dj x_j)
    (a softmax regression for L > 2 levels)."""

    def __init__(self, config: FVSBNConfig):
        super().__init__(config)
        self.net = FVSBNNetwork(self.num_params)


class NADE(_Dense):
    """NADE: h_d = g(c + W_{:,<d} x_<d), p(x_d | x_<d) from b_d + V_d h_d (g: sigmoid or
    ReLU)."""

    def __init__(self, config: NADEConfig):
        super().__init__(config)
        self.net = NADENetwork(config.hidden_dim, self.num_params, config.activation)


class MADE(_Dense):
    """MADE with an optional ensemble of ``num_orderings`` orderings sharing weights."""

    def __init__(self, config: MADEConfig):
        super().__init__(config)
        c = config
        if c.num_orderings < 1:
            raise ValueError(f"num_orderings must be >= 1, got {c.num_orderings}")
        masks, positions = [], []
        for m in range(c.num_orderings):
            ordering = c.ordering if m == 0 else "random"
            layer_masks, pos = made_masks(self.num_dims, c.hidden_dims, ordering=ordering,
                                          hidden_degrees=c.hidden_degrees, seed=c.mask_seed + m)
            masks.append(layer_masks)
            positions.append(pos)
        self.masks = [np.stack(layer) for layer in zip(*masks)]     # each [M, fan_in, fan_out]
        self.positions = np.stack(positions)                        # [M, D]: position of dim d
        self.orders = np.argsort(self.positions, axis=1)            # [M, D]: dim visited at t
        self.net = MADENetwork(c.hidden_dims, self.num_params, dropout=c.dropout)

    def _masks(self, m):
        return [jnp.asarray(stack)[m] for stack in self.masks]

    def _init_net(self, rng, inputs, label):
        return self.net.init(rng, inputs, self._masks(0))

    def _apply(self, params, inputs, label=None, ordering=0, *, rng=None):
        return self.net.apply(params["net"], inputs, self._masks(ordering),
                              **self._train_args(rng))

    def log_prob(self, params, batch, rng=None):
        """Exact log p(x) [B]: with M orderings, log (1/M) sum_m p_m(x)."""
        check_batch(self, batch)
        levels = jnp.asarray(batch["image"])
        inputs, units = self._inputs(levels.astype(jnp.int32)), self._units(levels)

        def one(m):
            return jnp.sum(self.unit_log_probs(self._apply(params, inputs, None, m), units), -1)

        per_ordering = jax.lax.map(one, jnp.arange(self.config.num_orderings))   # [M, B]
        return jax.nn.logsumexp(per_ordering, axis=0) - math.log(self.config.num_orderings)

    def _nll(self, params, batch, rng):
        """Training draws one ordering per step (order-agnostic training), and dropout
        masks when ``dropout`` > 0."""
        m = jax.random.randint(rng, (), 0, self.config.num_orderings)
        drop = device_key(jax.random.fold_in(rng, 1)) if self.config.dropout else None
        levels = jnp.asarray(batch["image"])
        out = self._apply(params, self._inputs(levels.astype(jnp.int32)), None, m, rng=drop)
        return -jnp.sum(self.unit_log_probs(out, self._units(levels)), axis=-1)

    def _sample_loop(self, params, rng, units, known, label, **unused):
        """Samples from the mixture (1/M) sum_m p_m: each sample draws its own ordering m_i.
        The chain runs once per ordering over the whole batch (M runs; M is small) and
        sample i keeps the run of its m_i, so the samples of one call are independent
        draws from the mixture (not all from one drawn p_m)."""
        num = self.config.num_orderings
        natural = num == 1 and self.config.ordering == "natural"

        def run(m):
            return super(MADE, self)._sample_loop(
                params, rng, units, known, label,
                apply=lambda p, x, lab: self._apply(p, x, lab, m),
                order=None if natural else jnp.asarray(self.orders)[m])

        if num == 1:
            return run(0)
        runs = jax.lax.map(run, jnp.arange(num))                      # [M, N, ...]
        pick = jax.random.randint(jax.random.fold_in(rng, self.num_units), (units.shape[0],),
                                  0, num)
        return runs[pick, jnp.arange(units.shape[0])]


class _Conv(_Autoregressive):
    """PixelCNN family on x in [-1, 1]^{H x W x C}."""

    def __init__(self, config):
        super().__init__(config)
        c = config
        ch = c.image_shape[-1]
        groups = 1 if self.head == "mixture" else ch
        out = self.num_params * (1 if self.head == "mixture" else ch)
        kwargs = dict(features=c.features, num_layers=c.num_layers, first_kernel=c.first_kernel,
                      kernel=c.kernel, num_color_groups=groups, dropout=c.dropout)
        self.net = self._network(out, kwargs)

    def _inputs(self, levels):
        return lk.to_symmetric(levels, self.config.num_levels)

    def _cond(self, label):
        if label is None:
            return ()
        return (jax.nn.one_hot(label, self.config.num_classes),)

    def _init_net(self, rng, inputs, label):
        return self.net.init(rng, inputs, *self._cond(label))

    def _apply(self, params, inputs, label=None, *, rng=None):
        out = self.net.apply(params["net"], inputs, *self._cond(label), **self._train_args(rng))
        return out.reshape(out.shape[0], self.num_units, self.num_params)


class _KeepsCache:
    """Samplers with a cache: ``sample(..., use_cache=False)`` re-runs the whole network per
    unit instead (the same samples, slower: a check of the cache)."""

    def sample(self, params, rng, num_samples: int, cond=None, *, use_cache: bool = True):
        """Samples uint8 [N, H, W, C]; ``cond``: labels [N] or an int, for
        class-conditional models (None: the classes in turn)."""
        units = jnp.zeros((num_samples, self.num_units, self.unit_size), jnp.int32)
        known = jnp.zeros((self.num_units,), bool)
        units = self._sample_loop(params, rng, units, known, self._label(cond, num_samples),
                                  use_cache=use_cache)
        return self._image(units).astype(jnp.uint8)


class _ActivationCache(_KeepsCache):
    """Sampling from caches of every layer's activations (:mod:`genjax.nn.cached`): each
    unit computes one position per layer instead of re-running the network on the
    canvas. A subclass gives ``_steps()``, the cached form of its network."""

    def _sample_loop(self, params, rng, units, known, label, *, use_cache: bool = True):
        """The same keys (fold_in(rng, t) for unit t) and the same samples as the re-run
        loop, up to float rounding of the conditionals; known units are kept and written
        into the caches."""
        if not use_cache:
            return super()._sample_loop(params, rng, units, known, label)
        return cached.sample_units(
            self._steps(), params["net"], units, known, *(self._cond(label) or (None,)),
            draw=lambda t, out: self.sample_unit(jax.random.fold_in(rng, t), out),
            encode=self._inputs)


class PixelCNNModel(_ActivationCache, _Conv):
    """PixelCNN: masked convolutions A then B (residual blocks)."""

    def _network(self, out, kwargs):
        return PixelCNN(out, **kwargs)

    def _steps(self):
        c = self.config
        return cached.PixelCNNSteps(tuple(c.image_shape), self.unit_size, c.num_layers,
                                    c.first_kernel, c.kernel)


class GatedPixelCNNModel(_ActivationCache, _Conv):
    """Gated PixelCNN: vertical/horizontal stacks, gated units, optional class conditioning."""

    def _network(self, out, kwargs):
        return GatedPixelCNN(out, **kwargs)

    def _steps(self):
        c = self.config
        return cached.GatedPixelCNNSteps(tuple(c.image_shape), self.unit_size, c.num_layers,
                                         c.first_kernel, c.kernel)


class _Sequence(_Autoregressive):
    """Models on the raster sequence of one-hot levels [B, D, L]."""

    def _inputs(self, levels):
        seq = levels.reshape(levels.shape[0], -1)
        return jax.nn.one_hot(seq, self.config.num_levels)

    def _cond(self, label):
        return ()

    def _init_net(self, rng, inputs, label):
        return self.net.init(rng, inputs, *self._cond(label))

    def _apply(self, params, inputs, label=None, *, rng=None):
        return self.net.apply(params["net"], inputs, *self._cond(label), **self._train_args(rng))


class WaveNetModel(_ActivationCache, _Sequence):
    """WaveNet on the raster-scan sequence of sub-pixels (global class conditioning)."""

    def __init__(self, config: WaveNetConfig):
        super().__init__(config)
        c = config
        self.net = WaveNet(self.num_params, c.features, c.skip_features, c.num_layers,
                           c.num_stacks, dropout=c.dropout)

    def _cond(self, label):
        return () if label is None else (jax.nn.one_hot(label, self.config.num_classes),)

    def _steps(self):
        c = self.config
        return cached.WaveNetSteps(tuple(c.image_shape), self.unit_size, c.num_layers,
                                   c.num_stacks)


class PixelTransformer(_KeepsCache, _Sequence):
    """ImageGPT-like causal transformer over sub-pixels; samples from a key/value cache."""

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        c = config
        self.net = CausalTransformer(c.num_levels, self.num_params, self.num_dims, c.dim,
                                     c.num_layers, c.num_heads, c.num_classes,
                                     dropout=c.dropout,
                                     dtype=precision.compute_dtype(c.compute_dtype),
                                     remat=c.remat)

    def _cond(self, label):
        return () if label is None else (label,)

    def _sample_loop(self, params, rng, units, known, label, *, use_cache: bool = True):
        """One decode step per position from the key/value cache (known units are fed in
        unchanged, which also fills the cache with them)."""
        if not use_cache:
            return super()._sample_loop(params, rng, units, known, label)
        n = units.shape[0]
        cache = self.net.init_cache(n)

        def body(t, carry):
            units, cache = carry
            prev = jnp.take(units, jnp.maximum(t - 1, 0), axis=1)[:, 0]
            out, cache = self.net.apply(params["net"], prev, t, cache, label,
                                        method=CausalTransformer.decode)
            new = self.sample_unit(jax.random.fold_in(rng, t), out)
            new = jnp.where(known[t], units[:, t], new)
            return jax.lax.dynamic_update_index_in_dim(units, new, t, axis=1), cache

        units, _ = jax.lax.fori_loop(0, self.num_units, body, (units, cache))
        return units


@dataclasses.dataclass(frozen=True)
class PixelRNNConfig(PixelCNNConfig):
    features: int = 32             # channels between layers (the LSTMs have features / 2)
    num_layers: int = 2            # residual Row LSTM / Diagonal BiLSTM layers
    kernel: int = 3                # Row LSTM input-to-state width (Diagonal BiLSTM: 1x1)


class RowLSTMModel(_Conv):
    """PixelRNN with Row LSTM layers: an LSTM over the rows, top to bottom, whose state
    at (r, c) reads the current row left of c (masked 1 x k convolution) and the previous
    row's states at c - 1 .. c + 1."""

    def _network(self, out, kwargs):
        return PixelRNN(out, kind="row_lstm", **kwargs)


class DiagonalBiLSTMModel(_Conv):
    """PixelRNN with Diagonal BiLSTM layers: LSTMs along the diagonals of the skewed map in
    both directions, the right-to-left one shifted down a row; output (r, c) sees the
    rows above and the pixels left of c: no blind spot (only the last pixel of row
    r - 1, which a feature map can carry no further than row r, is out of the first
    convolution's reach when c + first_kernel // 2 < W - 1)."""

    def _network(self, out, kwargs):
        return PixelRNN(out, kind="diagonal_bilstm", **kwargs)
