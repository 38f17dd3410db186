"""Masked and causal layers of autoregressive networks (Flax linen).

* :class:`MaskedDense`, :class:`MaskedConv`: the mask multiplies the *kernel*
  (not the output), so a masked weight never carries signal or gradient.
* :class:`PixelCNN`: a mask-A convolution, then residual blocks of mask-B
  convolutions (van den Oord et al. 2016, "Pixel Recurrent Neural Networks").
  Stacked masked k x k convolutions miss a triangle of pixels above-right of
  the current one: the *blind spot*.
* :class:`GatedPixelCNN`: vertical and horizontal stacks with gated units
  y = tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h), h a class embedding
  (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
  Decoders"). The vertical stack sees every row above, the horizontal stack
  the pixels left in the current row: no blind spot.
* :class:`WaveNet`: dilated causal 1-D convolutions (dilations 1, 2, 4, ...),
  gated activations, residual and skip connections (van den Oord et al. 2016).

Dropout (``dropout`` > 0) acts only in ``__call__(..., train=True)`` with a ``"dropout"``
rng; it multiplies hidden units elementwise, so every mask (and causality) is unchanged.

Colour ordering R -> G -> B inside a pixel follows :func:`genjax.core.masks.pixelcnn_mask`:
channels are contiguous colour groups, and every layer keeps that grouping.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.core.masks import causal_mask, center_mask, pixelcnn_mask


class MaskedDense(nn.Module):
    """y = x (W * M) + b with a constant 0/1 mask M [in, out]."""

    features: int
    mask: np.ndarray

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return x @ (kernel * jnp.asarray(self.mask, x.dtype)) + bias


class MaskedConv(nn.Module):
    """2-D convolution with kernel W * M; ``padding`` as in :class:`flax.linen.Conv`.

    ``mask`` has the kernel's shape [kh, kw, in, out]; zero taps are removed
    from the computation's dependency structure exactly.
    """

    features: int
    mask: np.ndarray
    padding: str | Sequence[tuple[int, int]] = "SAME"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw, cin, cout = self.mask.shape
        if cin != x.shape[-1] or cout != self.features:
            raise ValueError(f"mask shape {self.mask.shape} does not match in={x.shape[-1]}, "
                             f"out={self.features}")
        kernel = self.param("kernel", nn.initializers.lecun_normal(), self.mask.shape)
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        y = jax.lax.conv_general_dilated(
            x, kernel * jnp.asarray(self.mask, x.dtype), (1, 1), self.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias


def masked_conv(features, kernel_size, in_ch, mask_type, groups, name=None):
    return MaskedConv(features, pixelcnn_mask(kernel_size, in_ch, features, mask_type, groups),
                      name=name)


def masked_head(h: jax.Array, out_features: int, groups: int) -> jax.Array:
    """The output head of the PixelCNN-like networks: ReLU, 1x1 B, ReLU, 1x1 B (F -> F ->
    ``out_features``). Call it inside a compact ``__call__``: its layers belong to the
    caller."""
    f = h.shape[-1]
    h = masked_conv(f, 1, f, "B", groups)(nn.relu(h))
    return masked_conv(out_features, 1, f, "B", groups)(nn.relu(h))


class PixelCNN(nn.Module):
    """Plain PixelCNN: [B, H, W, C] in [-1, 1] -> [B, H, W, out_features].

    Layers: mask-A k0 x k0 conv, ``num_layers`` residual blocks
    (ReLU, 1x1 B, ReLU, k x k B, ReLU, [dropout], 1x1 B), then ReLU, 1x1 B, ReLU, 1x1 B.
    Output channel k belongs to colour group k * G // out_features.
    """

    out_features: int
    features: int = 64
    num_layers: int = 5
    first_kernel: int = 7
    kernel: int = 3
    num_color_groups: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        g, f = self.num_color_groups, self.features
        drop = nn.Dropout(self.dropout, deterministic=not train)
        h = masked_conv(f, self.first_kernel, x.shape[-1], "A", g)(x)
        for _ in range(self.num_layers):
            y = masked_conv(f // 2, 1, f, "B", g)(nn.relu(h))
            y = masked_conv(f // 2, self.kernel, f // 2, "B", g)(nn.relu(y))
            h = h + masked_conv(f, 1, f // 2, "B", g)(drop(nn.relu(y)))
        return masked_head(h, self.out_features, g)


def shift_down(x: jax.Array) -> jax.Array:
    """Row r of the output is row r - 1 of x (zeros in row 0)."""
    return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def _gate(x: jax.Array) -> jax.Array:
    """tanh(a) * sigmoid(b) for x = [a | b] split in two halves on the channel axis."""
    a, b = jnp.split(x, 2, axis=-1)
    return jnp.tanh(a) * nn.sigmoid(b)


def _two_halves(mask: np.ndarray) -> np.ndarray:
    """A mask for 2F outputs whose halves (tanh part, gate part) each have the F-mask."""
    return np.concatenate([mask, mask], axis=-1)


class GatedPixelCNNLayer(nn.Module):
    """One gated layer on (v, h) stacks, [B, H, W, F] each; returns the new (v, h).

    Vertical: a (k//2 + 1) x k convolution over rows r - k//2 .. r (padded on
    top), so v at row r sees rows <= r. It reaches the horizontal stack shifted
    down one row (rows < r only). Horizontal: a 1 x (k//2 + 1) convolution over
    columns c - k//2 .. c of row r whose last (centre) tap carries the colour
    mask, type A in the first layer; a residual connection except in the first
    layer. ``cond`` [B, E] (a class embedding) is added to both gates. Dropout (training)
    acts on the horizontal stack's gated units, before its 1x1 output convolution.
    """

    features: int
    kernel: int = 3
    mask_type: str = "B"
    num_color_groups: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, v, h, cond=None, train: bool = False):
        f, k, g = self.features, self.kernel, self.num_color_groups
        half = k // 2
        v_in, h_in = v.shape[-1], h.shape[-1]
        v_mask = np.ones((half + 1, k, v_in, 2 * f), np.float32)
        v_pre = MaskedConv(2 * f, v_mask, padding=((half, 0), (half, half)), name="vertical")(v)
        h_mask = np.ones((1, half + 1, h_in, 2 * f), np.float32)
        h_mask[0, half] = _two_halves(center_mask(h_in, f, self.mask_type, g))
        h_pre = MaskedConv(2 * f, h_mask, padding=((0, 0), (half, 0)), name="horizontal")(h)
        h_pre = h_pre + nn.Dense(2 * f, name="v_to_h")(shift_down(v_pre))
        if cond is not None:
            v_pre = v_pre + nn.Dense(2 * f, name="cond_v")(cond)[:, None, None, :]
            h_pre = h_pre + nn.Dense(2 * f, name="cond_h")(cond)[:, None, None, :]
        v_out = _gate(v_pre)
        gated = nn.Dropout(self.dropout, deterministic=not train)(_gate(h_pre))
        h_out = masked_conv(f, 1, f, "B", g, name="h_out")(gated)
        if self.mask_type == "B":
            h_out = h + h_out
        return v_out, h_out


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN: [B, H, W, C] in [-1, 1] (and cond [B, E]) -> [B, H, W, out_features].

    The first layer uses a k0 x k0-sized type-A horizontal mask; later layers
    type B. The head reads the horizontal stack: ReLU, 1x1 B, ReLU, 1x1 B.
    """

    out_features: int
    features: int = 64
    num_layers: int = 5
    first_kernel: int = 7
    kernel: int = 3
    num_color_groups: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        g, f = self.num_color_groups, self.features
        v, h = GatedPixelCNNLayer(f, self.first_kernel, "A", g, self.dropout)(x, x, cond, train)
        for _ in range(self.num_layers):
            v, h = GatedPixelCNNLayer(f, self.kernel, "B", g, self.dropout)(v, h, cond, train)
        return masked_head(h, self.out_features, g)


class CausalConv1D(nn.Module):
    """y_t = sum_{i<k} W_i x_{t - i d} + b: padded (k - 1) d on the left only."""

    features: int
    kernel: int = 2
    dilation: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(self.features, (self.kernel,), kernel_dilation=(self.dilation,),
                       padding=(((self.kernel - 1) * self.dilation, 0),))(x)


class WaveNet(nn.Module):
    """WaveNet over a sequence [B, T, V] -> [B, T, out_features], output t sees inputs < t.

    The input is shifted right by one step (zeros at t = 0), then a causal
    convolution and ``num_stacks`` x ``num_layers`` residual blocks with
    dilations 2^0 .. 2^(num_layers-1):

        z = tanh(W_f *_d x + V_f h) * sigmoid(W_g *_d x + V_g h)
        x <- x + W_r z,   skip += W_s z       (z after dropout, in training)

    and the head ReLU, 1x1, ReLU, 1x1 on the sum of the skips. The receptive
    field is 1 + num_stacks * (2^num_layers - 1) (kernel 2).
    """

    out_features: int
    features: int = 64
    skip_features: int = 128
    num_layers: int = 8
    num_stacks: int = 1
    kernel: int = 2
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        drop = nn.Dropout(self.dropout, deterministic=not train)
        x = jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]
        h = CausalConv1D(self.features, self.kernel)(x)
        skip = 0.0
        for _ in range(self.num_stacks):
            for i in range(self.num_layers):
                pre = CausalConv1D(2 * self.features, self.kernel, 2 ** i)(h)
                if cond is not None:
                    pre = pre + nn.Dense(2 * self.features)(cond)[:, None, :]
                z = drop(_gate(pre))
                h = h + nn.Dense(self.features)(z)
                skip = skip + nn.Dense(self.skip_features)(z)
        y = nn.Dense(self.skip_features)(nn.relu(skip))
        return nn.Dense(self.out_features)(nn.relu(y))


class MADENetwork(nn.Module):
    """MADE: dense layers with masks ``masks[l]`` [fan_in, fan_out] passed at call time
    (so an ensemble of orderings shares one set of weights and picks its masks by index).

    x [B, D] -> [B, D, out_per_dim]; the last mask [H_L, D] is repeated for the
    ``out_per_dim`` parameters of each output. Dropout (training) acts on every hidden layer.
    """

    hidden_dims: Sequence[int]
    out_per_dim: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, masks: Sequence[jax.Array],
                 train: bool = False) -> jax.Array:
        d = x.shape[-1]
        h = x
        for i, size in enumerate(self.hidden_dims):
            kernel = self.param(f"kernel_{i}", nn.initializers.lecun_normal(), (h.shape[-1], size))
            bias = self.param(f"bias_{i}", nn.initializers.zeros, (size,))
            h = nn.relu(h @ (kernel * masks[i]) + bias)
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        p = self.out_per_dim
        kernel = self.param("kernel_out", nn.initializers.lecun_normal(), (h.shape[-1], d * p))
        bias = self.param("bias_out", nn.initializers.zeros, (d * p,))
        out = h @ (kernel * jnp.repeat(masks[-1], p, axis=1)) + bias
        return out.reshape(x.shape[:-1] + (d, p))


class FVSBNNetwork(nn.Module):
    """FVSBN: one logistic (softmax) regression per dimension on the dimensions before it,

        f_d(x) = b_d + sum_{j<d} W_{d,j} x_j,

    x [B, D] -> [B, D, out_per_dim]; W is masked strictly lower-triangular. O(D^2) weights.
    """

    out_per_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d, p = x.shape[-1], self.out_per_dim
        w = self.param("kernel", nn.initializers.zeros, (d, d, p))
        b = self.param("bias", nn.initializers.zeros, (d, p))
        mask = jnp.asarray(causal_mask(d, strict=True), x.dtype)[..., None]
        return jnp.einsum("...j,djp->...dp", x, w * mask) + b


class NADENetwork(nn.Module):
    """NADE (Larochelle & Murray 2011) with weights shared across conditionals:

        a_d = c + sum_{j<d} W_{:,j} x_j,   h_d = g(a_d),   f_d = b_d + V_d h_d,

    with g the sigmoid (Larochelle & Murray 2011) or ReLU (Uria et al. 2016, "Neural
    Autoregressive Distribution Estimation"), computed for all d at once by an exclusive
    cumulative sum over j: O(H D) per example, not O(H D^2). x [B, D] -> [B, D, out_per_dim].
    """

    hidden_dim: int
    out_per_dim: int
    activation: str = "sigmoid"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d, h, p = x.shape[-1], self.hidden_dim, self.out_per_dim
        w = self.param("W", nn.initializers.normal(1.0 / np.sqrt(d)), (d, h))
        c = self.param("c", nn.initializers.zeros, (h,))
        v = self.param("V", nn.initializers.normal(1.0 / np.sqrt(h)), (d, h, p))
        b = self.param("b", nn.initializers.zeros, (d, p))
        shifted = jnp.concatenate([jnp.zeros_like(x[..., :1]), x[..., :-1]], axis=-1)
        contrib = shifted[..., :, None] * jnp.concatenate([jnp.zeros_like(w[:1]), w[:-1]])
        a = c + jnp.cumsum(contrib, axis=-2)            # [B, D, H]: sum over j < d only
        g = nn.relu if self.activation == "relu" else nn.sigmoid
        return jnp.einsum("...dh,dhp->...dp", g(a), v) + b
