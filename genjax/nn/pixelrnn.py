"""PixelRNN layers (van den Oord et al. 2016, "Pixel Recurrent Neural Networks"), Flax linen.

The image is generated pixel by pixel in raster order, the colours of a pixel in the order
R -> G -> B (notation of the notes):

    p(x) = prod_{i=1}^{N} p(x_i | x_1, ..., x_{i-1}),

and PixelRNN computes every conditional in one pass with LSTMs laid over the image so
that their recurrences never reach a later pixel. One LSTM step maps the pre-activations
z = [z_i | z_f | z_o | z_g] (four blocks of F channels) and the previous cell state to

    i = sigma(z_i),  f = sigma(z_f),  o = sigma(z_o),  g = tanh(z_g),
    c = f * c_prev + i * g,           h = o * tanh(c),

where z = K^is (*) x + K^ss (*) h_prev + b is an *input-to-state* convolution of the
layer's input x and a *state-to-state* convolution of the previous hidden state.

* :class:`RowLSTMLayer`: processes the image row by row, top to bottom (a ``lax.scan``
  over rows). K^is is a 1 x k convolution over the current row, masked to the pixels
  left of the centre and the centre itself (colour mask B); K^ss is a 1-D convolution
  of width 3 over the previous row's hidden state h_{r-1}. Hidden state (r, c) thus sees
  the input at (r, c - k//2 .. c) and the states (r - 1, c - 1 .. c + 1): a triangle
  above the pixel, which misses part of the context (a blind spot, like PixelCNN's).
* :class:`DiagonalBiLSTMLayer`: *skews* the input (row r shifted right by r), so that
  each anti-diagonal of the image becomes a column, and runs an LSTM column by column
  (a ``lax.scan`` over the W + H - 1 columns): K^is is 1 x 1 (colour mask B), K^ss a
  2 x 1 convolution over the previous column, so state (r, c) is computed from the
  states of (r, c - 1), the left pixel, and (r - 1, c), the pixel above: it sees the
  whole quadrant above-left. The second direction runs on the horizontally flipped
  map and sees the quadrant above-right, *including the pixels right of (r, c) in row
  r*, which come later; its output is therefore shifted down one row before the two
  are added, so (r, c) reads the right-to-left state of (r - 1, c). Together they cover
  every row above and the pixels left in the current row: no blind spot. (A feature
  at (r', c') may depend only on pixels before (r', c'), so the last pixel of row r - 1
  reaches (r, c) only through the first, mask-A k0 x k0 convolution: it is seen iff
  c + k0 // 2 >= W - 1. Every other pixel before (r, c) is.)
* :class:`PixelRNN`: a mask-A k0 x k0 convolution, ``num_layers`` recurrent layers with
  residual connections (the LSTM's F/2-channel output is mapped back to F channels by a
  1 x 1 mask-B convolution and added to its input), then ReLU, 1 x 1 B, ReLU, 1 x 1 B.

Colour ordering as in :func:`genjax.core.masks.pixelcnn_mask`: every channel axis is
split into contiguous colour groups (channel k of n in group k * G // n), each of the
four gate blocks and the state separately, so gate and state channels of one group
meet elementwise. Every tap that reads the current pixel carries the colour mask; the
state-to-state kernels are colour-masked too (type B: group g reads groups <= g), so
that *every* feature of group g depends only on inputs that group g may see.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.core.masks import center_mask, pixelcnn_mask
from genjax.nn.masked import masked_conv, masked_head, shift_down

KINDS = ("row_lstm", "diagonal_bilstm")


def _four_blocks(mask: np.ndarray) -> np.ndarray:
    """A mask for the 4F gate pre-activations [i | f | o | g], each block with the F-mask."""
    return np.concatenate([mask] * 4, axis=-1)


def _gate_bias(key, shape, dtype=jnp.float32):
    """Zero biases except the forget gate's, 1 (the cell remembers at initialisation)."""
    f = shape[-1] // 4
    return jnp.zeros(shape, dtype).at[f:2 * f].set(1.0)


def lstm_step(z: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One LSTM update from pre-activations z [..., 4F] = [i | f | o | g] and the cell
    state c [..., F]: returns (h, c)."""
    zi, zf, zo, zg = jnp.split(z, 4, axis=-1)
    c = nn.sigmoid(zf) * c + nn.sigmoid(zi) * jnp.tanh(zg)
    return nn.sigmoid(zo) * jnp.tanh(c), c


def skew(x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, H, W + H - 1, C] with out[:, r, r + c] = x[:, r, c], zeros
    elsewhere (each row padded with H zeros on the right, re-cut H - 1 columns wider)."""
    b, h, w, ch = x.shape
    flat = jnp.pad(x, ((0, 0), (0, 0), (0, h), (0, 0))).reshape(b, h * (w + h), ch)
    return flat[:, :h * (w + h - 1)].reshape(b, h, w + h - 1, ch)


def unskew(x: jax.Array, width: int) -> jax.Array:
    """The inverse of :func:`skew`: [B, H, W + H - 1, C] -> [B, H, W, C]."""
    b, h, t, ch = x.shape
    flat = jnp.pad(x.reshape(b, h * t, ch), ((0, 0), (0, h), (0, 0)))
    return flat.reshape(b, h, t + 1, ch)[:, :, :width]


def _conv2d(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


class RowLSTMLayer(nn.Module):
    """Row LSTM: [B, H, W, C] -> hidden states [B, H, W, features].

    z_r = K^is (*) x_r + K^ss (*) h_{r-1} + b for each row r (h_{-1} = c_{-1} = 0), with
    K^is a 1 x ``kernel`` convolution over row r masked to columns c - kernel//2 .. c
    (centre: colour mask B) and K^ss a 1-D convolution of width ``state_kernel`` over the
    whole previous row (every tap colour-masked, type B). The input-to-state part is
    computed for the whole map at once; the rows are a ``lax.scan``.
    """

    features: int
    kernel: int = 3
    state_kernel: int = 3
    num_color_groups: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, _, w, cin = x.shape
        f, g = self.features, self.num_color_groups
        is_mask = _four_blocks(pixelcnn_mask((1, self.kernel), cin, f, "B", g))
        ss_mask = np.broadcast_to(_four_blocks(center_mask(f, f, "B", g)),
                                  (self.state_kernel, f, 4 * f))
        k_is = self.param("input_to_state", nn.initializers.lecun_normal(), is_mask.shape)
        k_ss = self.param("state_to_state", nn.initializers.lecun_normal(), ss_mask.shape)
        bias = self.param("bias", _gate_bias, (4 * f,))
        z_in = _conv2d(x, k_is * jnp.asarray(is_mask, x.dtype)) + bias      # [B, H, W, 4F]
        s, half = self.state_kernel, self.state_kernel // 2
        k_ss = (k_ss * jnp.asarray(ss_mask, x.dtype)).reshape(s * f, 4 * f)

        def row(carry, z_row):                                            # z_row [B, W, 4F]
            # The width-s convolution of h_{r-1} as one matmul of its s shifted copies
            # (tap t reads column c + t - s//2; XLA:CPU runs this far faster in a loop).
            h, c = carry
            padded = jnp.pad(h, ((0, 0), (half, half), (0, 0)))
            taps = jnp.concatenate([padded[:, t:t + w] for t in range(s)], axis=-1)
            h, c = lstm_step(z_row + taps @ k_ss, c)
            return (h, c), h

        zeros = jnp.zeros((b, w, f), x.dtype)
        _, hs = jax.lax.scan(row, (zeros, zeros), jnp.moveaxis(z_in, 1, 0))
        return jnp.moveaxis(hs, 0, 1)


class DiagonalLSTM(nn.Module):
    """One direction of the Diagonal BiLSTM on input-to-state pre-activations
    z [B, H, W, 4F] -> hidden states [B, H, W, F].

    On the skewed map (column t holds the pixels (r, t - r)), column t is computed from
    column t - 1 by the 2 x 1 state-to-state convolution

        z_{r,t} = z^is_{r,t} + K_above h_{r-1,t-1} + K_same h_{r,t-1},

    i.e. from the states of the pixel above (r - 1, c) and the pixel left (r, c - 1);
    both kernels colour-masked (type B). The skewed padding before a row's first pixel
    depends on nothing, and a state never reads the padding after its row's end.
    """

    features: int
    num_color_groups: int = 1

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        b, h, w, _ = z.shape
        f = self.features
        mask = _four_blocks(center_mask(f, f, "B", self.num_color_groups))
        mask = jnp.asarray(np.stack([mask, mask]), z.dtype)                # [above, same]
        k_ss = self.param("state_to_state", nn.initializers.lecun_normal(), (2, f, 4 * f))
        k_ss = (k_ss * mask).reshape(2 * f, 4 * f)

        def column(carry, z_col):                                         # z_col [B, H, 4F]
            hid, c = carry
            above = jnp.pad(hid, ((0, 0), (1, 0), (0, 0)))[:, :-1]
            hid, c = lstm_step(z_col + jnp.concatenate([above, hid], -1) @ k_ss, c)
            return (hid, c), hid

        zeros = jnp.zeros((b, h, f), z.dtype)
        _, hs = jax.lax.scan(column, (zeros, zeros), jnp.moveaxis(skew(z), 2, 0))
        return unskew(jnp.moveaxis(hs, 0, 2), w)


class DiagonalBiLSTMLayer(nn.Module):
    """Diagonal BiLSTM: [B, H, W, C] -> [B, H, W, features].

    Each direction has its own 1 x 1 input-to-state convolution (colour mask B) and
    :class:`DiagonalLSTM`; the right-to-left one runs on the flipped map (c -> W - 1 - c)
    and is flipped back, so its state at (r, c) sees rows <= r, columns >= c. The output
    is h^lr_{r,c} + h^rl_{r-1,c} (zero for r = 0): the shift keeps the later pixels of
    row r out.
    """

    features: int
    num_color_groups: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        f, g = self.features, self.num_color_groups
        mask = _four_blocks(pixelcnn_mask(1, x.shape[-1], f, "B", g))

        def direction(name, x):
            k_is = self.param(f"{name}_input_to_state", nn.initializers.lecun_normal(),
                              mask.shape)
            bias = self.param(f"{name}_bias", _gate_bias, (4 * f,))
            z = _conv2d(x, k_is * jnp.asarray(mask, x.dtype)) + bias
            return DiagonalLSTM(f, g, name=f"{name}_lstm")(z)

        left_to_right = direction("left_to_right", x)
        right_to_left = direction("right_to_left", x[:, :, ::-1])[:, :, ::-1]
        return left_to_right + shift_down(right_to_left)


class PixelRNN(nn.Module):
    """PixelRNN: [B, H, W, C] in [-1, 1] -> [B, H, W, out_features].

    Layers: mask-A k0 x k0 conv to ``features`` channels; ``num_layers`` residual
    recurrent layers h <- h + W_1x1 LSTM(h) (``kind``: ``row_lstm`` or
    ``diagonal_bilstm``, features/2 hidden channels, W_1x1 mask B); then ReLU, 1x1 B,
    ReLU, 1x1 B. ``kernel`` is the Row LSTM's input-to-state width (the Diagonal BiLSTM's
    input-to-state is 1 x 1). Output channel k belongs to colour group
    k * G // out_features. Dropout (``train=True``, a ``"dropout"`` rng) acts on each
    LSTM's output before its 1 x 1 convolution.
    """

    out_features: int
    features: int = 32
    num_layers: int = 2
    kind: str = "row_lstm"
    first_kernel: int = 7
    kernel: int = 3
    num_color_groups: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        g, f = self.num_color_groups, self.features
        h = masked_conv(f, self.first_kernel, x.shape[-1], "A", g)(x)
        for _ in range(self.num_layers):
            if self.kind == "row_lstm":
                y = RowLSTMLayer(f // 2, self.kernel, num_color_groups=g)(h)
            else:
                y = DiagonalBiLSTMLayer(f // 2, g)(h)
            y = nn.Dropout(self.dropout, deterministic=not train)(y)
            h = h + masked_conv(f, 1, f // 2, "B", g)(y)
        return masked_head(h, self.out_features, g)
