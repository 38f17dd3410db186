"""Cached one-position passes of the convolutional autoregressive networks (fast sampling).

Sampling an autoregressive network by re-running it on the canvas costs a whole
forward pass per unit, O(D) work for each of the D units. But a new unit changes
only the activations that depend on it, and a convolution at position p reads
only a small window of its input around p. Keeping every layer's input
activations in a cache, as in Ramachandran et al. (2017), "Fast generation for
convolutional autoregressive models", and in WaveNet's queue-based generation,
each new unit computes one position per layer from that cache: O(1) work per
unit (per layer), and the same outputs as the full network up to float rounding.

Each network below is described by a small frozen dataclass of hyperparameters
that reads the network's Flax parameter tree (``params["params"]`` as built by
:mod:`genjax.nn.masked`, so it holds for any module that keeps those parameters)
and implements

* ``weights(params)``: the masked kernels, flattened for one position (computed
  once per sampling call, outside the loop);
* ``init(weights, batch, cond)``: the empty caches (zeros, which are also the
  networks' zero padding) and the class-conditioning terms;
* ``start_row(weights, state, r)``: work done once per image row, before its
  first unit (the Gated PixelCNN's vertical stack of the row above);
* ``step(weights, state, t) -> (out [B, P], state)``: the output parameters of
  unit t from the units < t already written, writing the activations of the
  current position into the caches;
* ``write(weights, state, t, x)``: the network inputs x of unit t once drawn.

A *unit* is a sub-pixel (``unit_size`` = 1, C units per pixel with the colour
groups R -> G -> B) or a whole pixel (``unit_size`` = C, the mixture output), in
raster order. Within a pixel the step recomputes the whole pixel's activations at
each of its units; a colour group's activations depend on the earlier groups
only, so the last recomputation leaves the cache exact. :func:`sample_units`
runs the ancestral sampler in one jitted loop (rows, then the units of a row),
:func:`teacher_forced` the outputs of every unit on given data (a check of the
cache against the network's single pass).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax.core.masks import center_mask, pixelcnn_mask


def _gate(x: jax.Array) -> jax.Array:
    """tanh(a) * sigmoid(b) for x = [a | b] split in halves on the last axis."""
    a, b = jnp.split(x, 2, axis=-1)
    return jnp.tanh(a) * jax.nn.sigmoid(b)


def _masked(layer: dict, mask: np.ndarray) -> tuple[jax.Array, jax.Array]:
    kernel = layer["kernel"]
    return kernel * jnp.asarray(mask, kernel.dtype), layer["bias"]


def _dense(x: jax.Array, layer: tuple[jax.Array, jax.Array]) -> jax.Array:
    kernel, bias = layer
    return x @ kernel + bias


def _position(t, units_per_pixel: int, width: int):
    """Row, column and unit-within-pixel of unit t (raster order)."""
    pixel, sub = jnp.divmod(t, units_per_pixel)
    row, col = jnp.divmod(pixel, width)
    return row, col, sub


def _window(cache: jax.Array, start: tuple, size: tuple) -> jax.Array:
    """The window of ``cache`` [B, ...] at ``start`` flattened to [B, prod(size)]."""
    b = cache.shape[0]
    return jax.lax.dynamic_slice(cache, (0,) + tuple(start), (b,) + tuple(size)).reshape(b, -1)


def _put(cache: jax.Array, value: jax.Array, start: tuple) -> jax.Array:
    """Write ``value`` [B, ...] (reshaped to a block of ``cache``'s rank) at ``start``."""
    shape = (value.shape[0],) + (1,) * (cache.ndim - 2) + (value.shape[-1],)
    return jax.lax.dynamic_update_slice(cache, value.reshape(shape), (0,) + tuple(start))


@dataclasses.dataclass(frozen=True)
class _Steps:
    """Shared shape bookkeeping: ``image_shape`` (H, W, C) and ``unit_size``."""

    image_shape: tuple[int, int, int]
    unit_size: int

    @property
    def units_per_pixel(self) -> int:
        return self.image_shape[2] // self.unit_size

    @property
    def num_units(self) -> int:
        h, w, _ = self.image_shape
        return h * w * self.units_per_pixel

    def start_row(self, weights: dict, state: dict, r) -> dict:
        """Work done once per image row r, before its first unit (none here)."""
        return state

    @staticmethod
    def _head(weights: dict, h: jax.Array) -> jax.Array:
        """The output head of every network here: ReLU, 1x1, ReLU, 1x1."""
        w1, w2 = weights["head"]
        return _dense(jax.nn.relu(_dense(jax.nn.relu(h), w1)), w2)

    def _unit_output(self, out: jax.Array, sub) -> jax.Array:
        """The output parameters [B, P] of unit ``sub`` of a pixel's outputs [B, upp * P]."""
        out = out.reshape(out.shape[0], self.units_per_pixel, -1)
        return jax.lax.dynamic_index_in_dim(out, sub, axis=1, keepdims=False)


@dataclasses.dataclass(frozen=True)
class _ImageSteps(_Steps):
    """The image networks (PixelCNN, Gated PixelCNN): their sizes, the zero-padded image
    cache ``x`` [B, H + k0//2, W + 2 (k0//2), C] that :meth:`write` fills."""

    num_layers: int = 5
    first_kernel: int = 7
    kernel: int = 3

    def write(self, weights: dict, state: dict, t, x: jax.Array) -> dict:
        p0 = self.first_kernel // 2
        r, col, sub = _position(t, self.units_per_pixel, self.image_shape[1])
        return dict(state, x=_put(state["x"], x, (r + p0, col + p0, sub * self.unit_size)))


@dataclasses.dataclass(frozen=True)
class PixelCNNSteps(_ImageSteps):
    """Cached :class:`genjax.nn.masked.PixelCNN` (``num_layers`` residual blocks).

    The 1x1 convolutions act on one position. Each k x k masked convolution (the
    mask-A input layer and the middle convolution of every block) keeps its input
    in a zero-padded cache [B, H + k//2, W + 2 (k//2), F_in] and reads the rows
    r - k//2 .. r and columns c - k//2 .. c + k//2 around position (r, c) as one
    dot product with the kernel's upper k//2 + 1 rows (the taps its mask drops
    have weight exactly zero, whatever the cache holds there).
    """

    def weights(self, params: dict) -> dict:
        g = self.units_per_pixel

        def conv(i, mask_type):
            layer = params[f"MaskedConv_{i}"]
            k, _, cin, cout = layer["kernel"].shape
            kernel, bias = _masked(layer, pixelcnn_mask(k, cin, cout, mask_type, g))
            return kernel[:k // 2 + 1].reshape(-1, cout), bias

        n = 3 * self.num_layers
        return {"first": conv(0, "A"),
                "blocks": [tuple(conv(1 + 3 * j + i, "B") for i in range(3))
                           for j in range(self.num_layers)],
                "head": (conv(n + 1, "B"), conv(n + 2, "B"))}

    def init(self, weights: dict, batch: int, cond=None) -> dict:
        h, w, c = self.image_shape
        p0, p = self.first_kernel // 2, self.kernel // 2
        return {"x": jnp.zeros((batch, h + p0, w + 2 * p0, c)),
                "blocks": [jnp.zeros((batch, h + p, w + 2 * p, w1[0].shape[1]))
                           for w1, _, _ in weights["blocks"]]}

    def step(self, weights: dict, state: dict, t) -> tuple[jax.Array, dict]:
        _, width, c = self.image_shape
        k0, k = self.first_kernel, self.kernel
        r, col, sub = _position(t, self.units_per_pixel, width)
        h = _dense(_window(state["x"], (r, col, 0), (k0 // 2 + 1, k0, c)), weights["first"])
        caches = []
        for cache, (w1, w2, w3) in zip(state["blocks"], weights["blocks"]):
            y = jax.nn.relu(_dense(jax.nn.relu(h), w1))
            cache = _put(cache, y, (r + k // 2, col + k // 2, 0))
            y = _dense(_window(cache, (r, col, 0), (k // 2 + 1, k, y.shape[-1])), w2)
            h = h + _dense(jax.nn.relu(y), w3)
            caches.append(cache)
        return self._unit_output(self._head(weights, h), sub), dict(state, blocks=caches)


@dataclasses.dataclass(frozen=True)
class GatedPixelCNNSteps(_ImageSteps):
    """Cached :class:`genjax.nn.masked.GatedPixelCNN` (``num_layers`` + 1 gated layers).

    The vertical stack at row r depends on the whole row r of the image, and the
    horizontal stack reads it only through a one-row shift (row r - 1 at row r).
    So when a row q is complete (at the first unit of row q + 1) every layer's
    vertical stack is computed for row q at once, a (k//2 + 1) x k convolution of
    the rows q - k//2 .. q of that layer's vertical input (the image, or a buffer
    of the last k//2 + 1 rows, shifted up by one row each time); that gives the
    next layer's vertical input for row q and the term V (v_pre) that every
    position of row q + 1 adds to its horizontal stack. The horizontal stack is
    computed one position at a time from the current row's inputs of each layer
    (a row buffer [B, W + k//2, F], columns c - k//2 .. c; the first layer reads
    the image itself).
    """

    @property
    def kernels(self) -> list[int]:
        return [self.first_kernel] + [self.kernel] * self.num_layers

    def weights(self, params: dict) -> dict:
        g = self.units_per_pixel

        def plain(layer):
            return layer["kernel"], layer["bias"]

        def pointwise(layer):
            cin, cout = layer["kernel"].shape[2:]
            kernel, bias = _masked(layer, pixelcnn_mask(1, cin, cout, "B", g))
            return kernel[0, 0], bias

        layers = []
        for i, k in enumerate(self.kernels):
            p = params[f"GatedPixelCNNLayer_{i}"]
            _, _, cin, out2 = p["horizontal"]["kernel"].shape
            centre = center_mask(cin, out2 // 2, "A" if i == 0 else "B", g)
            mask = np.ones((1, k // 2 + 1, cin, out2), np.float32)
            mask[0, k // 2] = np.concatenate([centre, centre], axis=-1)
            kernel, bias = _masked(p["horizontal"], mask)
            layer = {"vertical": plain(p["vertical"]),
                     "horizontal": (kernel.reshape(-1, out2), bias),
                     "v_to_h": plain(p["v_to_h"]), "h_out": pointwise(p["h_out"])}
            if "cond_v" in p:
                layer.update(cond_v=plain(p["cond_v"]), cond_h=plain(p["cond_h"]))
            layers.append(layer)
        return {"layers": layers,
                "head": (pointwise(params["MaskedConv_0"]), pointwise(params["MaskedConv_1"]))}

    def init(self, weights: dict, batch: int, cond=None) -> dict:
        h, w, c = self.image_shape
        f = weights["layers"][0]["h_out"][0].shape[0]
        pads = [k // 2 for k in self.kernels]
        state = {
            # the image, zero-padded: layer 0's vertical and horizontal input
            "x": jnp.zeros((batch, h + pads[0], w + 2 * pads[0], c)),
            # the last k//2 + 1 rows of the vertical inputs of layers >= 1, zero-padded
            "v": [jnp.zeros((batch, p + 1, w + 2 * p, f)) for p in pads[1:]],
            # horizontal inputs of layers >= 1 in the current row, padded on the left
            "h": [jnp.zeros((batch, w + p, f)) for p in pads[1:]],
            # V (shifted v_pre) for the current row: the bias alone in row 0
            "vh": [jnp.broadcast_to(layer["v_to_h"][1], (batch, w, 2 * f))
                   for layer in weights["layers"]]}
        if cond is not None:
            state["cond_v"] = [_dense(cond, layer["cond_v"]) for layer in weights["layers"]]
            state["cond_h"] = [_dense(cond, layer["cond_h"]) for layer in weights["layers"]]
        return state

    def start_row(self, weights: dict, state: dict, r) -> dict:
        """Row r - 1 is complete: its vertical stack (nothing to do in row 0)."""
        return jax.lax.cond(r > 0, lambda s: self._vertical_row(weights, s, r - 1),
                            lambda s: s, state)

    def _vertical_row(self, weights: dict, state: dict, q) -> dict:
        """Every layer's vertical stack at row q (complete): the next layers' vertical
        inputs and the horizontal stack's V term for row q + 1."""
        v, vh = list(state["v"]), []
        pads = [k // 2 for k in self.kernels]
        x = state["x"]
        rows = jax.lax.dynamic_slice(x, (0, q, 0, 0), (x.shape[0], pads[0] + 1) + x.shape[2:])
        for i, layer in enumerate(weights["layers"]):
            kernel, bias = layer["vertical"]
            pre = jax.lax.conv_general_dilated(rows, kernel, (1, 1), "VALID",
                                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
            pre = pre[:, 0] + bias                                      # [B, W, 2F]
            vh.append(_dense(pre, layer["v_to_h"]))
            if i < len(v):
                if "cond_v" in state:
                    pre = pre + state["cond_v"][i][:, None, :]
                p = pads[i + 1]
                new = jnp.pad(_gate(pre), ((0, 0), (p, p), (0, 0)))[:, None]
                rows = v[i] = jnp.concatenate([v[i][:, 1:], new], axis=1)
        return dict(state, v=v, vh=vh)

    def step(self, weights: dict, state: dict, t) -> tuple[jax.Array, dict]:
        r, col, sub = _position(t, self.units_per_pixel, self.image_shape[1])
        rows, h = list(state["h"]), None
        for i, (layer, k) in enumerate(zip(weights["layers"], self.kernels)):
            p = k // 2
            if i == 0:
                x = state["x"]
                window = _window(x, (r + p, col, 0), (1, p + 1, x.shape[-1]))
            else:
                rows[i - 1] = _put(rows[i - 1], h, (col + p, 0))
                window = _window(rows[i - 1], (col, 0), (p + 1, h.shape[-1]))
            pre = _dense(window, layer["horizontal"])
            pre = pre + jax.lax.dynamic_index_in_dim(state["vh"][i], col, 1, keepdims=False)
            if "cond_h" in state:
                pre = pre + state["cond_h"][i]
            out = _dense(_gate(pre), layer["h_out"])
            h = out if i == 0 else h + out
        return self._unit_output(self._head(weights, h), sub), dict(state, h=rows)


@dataclasses.dataclass(frozen=True)
class WaveNetSteps(_Steps):
    """Cached :class:`genjax.nn.masked.WaveNet` over the raster sequence (unit_size 1).

    A causal convolution with kernel k and dilation d reads its input at t, t - d,
    ..., t - (k - 1) d: each one keeps a queue of its last (k - 1) d + 1 inputs, a
    circular buffer [B, (k - 1) d + 1, F] where the input of step t goes to slot
    t mod ((k - 1) d + 1) before the k taps are read (writing first and reading
    after lets the loop update the buffer in place). Step t sees the network input
    shifted by one, the unit t - 1 written last (zeros at t = 0).
    """

    num_layers: int = 8
    num_stacks: int = 1
    kernel: int = 2

    @property
    def dilations(self) -> list[int]:
        return [2 ** i for _ in range(self.num_stacks) for i in range(self.num_layers)]

    def weights(self, params: dict) -> dict:
        def conv(i):
            layer = params[f"CausalConv1D_{i}"]["Conv_0"]
            return layer["kernel"].reshape(-1, layer["kernel"].shape[-1]), layer["bias"]

        def dense(i):
            return params[f"Dense_{i}"]["kernel"], params[f"Dense_{i}"]["bias"]

        n = len(self.dilations)
        per = (sum(name.startswith("Dense_") for name in params) - 2) // n   # 3 with cond
        layers = []
        for j in range(n):
            layer = {"conv": conv(j + 1), "res": dense(per * j + per - 2),
                     "skip": dense(per * j + per - 1)}
            if per == 3:
                layer["cond"] = dense(per * j)
            layers.append(layer)
        return {"input": conv(0), "layers": layers, "head": (dense(per * n), dense(per * n + 1))}

    def init(self, weights: dict, batch: int, cond=None) -> dict:
        k = self.kernel
        kernel = weights["input"][0]
        f, vocab = kernel.shape[1], kernel.shape[0] // k
        state = {"last": jnp.zeros((batch, vocab)),
                 "queues": [jnp.zeros((batch, k, vocab))]
                 + [jnp.zeros((batch, (k - 1) * d + 1, f)) for d in self.dilations]}
        if cond is not None:
            state["cond"] = [_dense(cond, layer["cond"]) for layer in weights["layers"]]
        return state

    def _causal(self, conv, queue, x, t, d):
        """One output of a causal convolution with dilation d at step t (input x), and
        the queue with x in."""
        size = queue.shape[1]
        queue = jax.lax.dynamic_update_index_in_dim(queue, x, t % size, axis=1)
        taps = [jax.lax.dynamic_index_in_dim(queue, (t - m * d) % size, 1, keepdims=False)
                for m in range(self.kernel - 1, -1, -1)]
        return _dense(jnp.concatenate(taps, axis=-1), conv), queue

    def step(self, weights: dict, state: dict, t) -> tuple[jax.Array, dict]:
        queues = list(state["queues"])
        h, queues[0] = self._causal(weights["input"], queues[0], state["last"], t, 1)
        skip = 0.0
        for j, (layer, d) in enumerate(zip(weights["layers"], self.dilations)):
            pre, queues[j + 1] = self._causal(layer["conv"], queues[j + 1], h, t, d)
            if "cond" in state:
                pre = pre + state["cond"][j]
            z = _gate(pre)
            h = h + _dense(z, layer["res"])
            skip = skip + _dense(z, layer["skip"])
        return self._head(weights, skip), dict(state, queues=queues)

    def write(self, weights: dict, state: dict, t, x: jax.Array) -> dict:
        return dict(state, last=x.reshape(x.shape[0], -1).astype(state["last"].dtype))


def sample_units(steps: _Steps, params: dict, units: jax.Array, known: jax.Array,
                 cond: jax.Array | None, draw: Callable, encode: Callable) -> jax.Array:
    """Ancestral sampling from the caches in one jitted loop over the image rows, each a
    ``lax.fori_loop`` over the row's units.

    Args:
      steps: the cached network (:class:`PixelCNNSteps`, ...).
      params: its Flax parameters (``{"params": ...}``).
      units: int32 [B, U, unit_size], the known units filled in.
      known: bool [U]: units kept as they are (still written into the caches, so
        the others are drawn given them).
      cond: the network's conditioning input [B, E], or None.
      draw: ``draw(t, out)`` -> int32 [B, unit_size], unit t drawn from its
        conditional's parameters ``out`` [B, P].
      encode: int32 [B, unit_size] -> the network's inputs for that unit.

    Returns:
      int32 [B, U, unit_size].
    """
    weights = steps.weights(params["params"])
    per_row = steps.num_units // steps.image_shape[0]

    def unit(t, carry):
        units, state = carry
        out, state = steps.step(weights, state, t)
        new = jnp.where(known[t], units[:, t], draw(t, out))
        state = steps.write(weights, state, t, encode(new))
        return jax.lax.dynamic_update_index_in_dim(units, new, t, axis=1), state

    def row(r, carry):
        units, state = carry
        state = steps.start_row(weights, state, r)
        return jax.lax.fori_loop(r * per_row, (r + 1) * per_row, unit, (units, state))

    state = steps.init(weights, units.shape[0], cond)
    units, _ = jax.lax.fori_loop(0, steps.image_shape[0], row, (units, state))
    return units


def teacher_forced(steps: _Steps, params: dict, units: jax.Array, cond: jax.Array | None,
                   encode: Callable) -> jax.Array:
    """The output parameters [B, U, P] of every unit given the units before it (int32
    [B, U, unit_size]), one step at a time from the caches: what the full network
    computes in one pass, up to float rounding."""
    weights = steps.weights(params["params"])
    height = steps.image_shape[0]
    per_row = steps.num_units // height

    def unit(state, t):
        out, state = steps.step(weights, state, t)
        return steps.write(weights, state, t, encode(units[:, t])), out

    def row(state, r):
        state = steps.start_row(weights, state, r)
        return jax.lax.scan(unit, state, r * per_row + jnp.arange(per_row))

    _, outs = jax.lax.scan(row, steps.init(weights, units.shape[0], cond), jnp.arange(height))
    return jnp.moveaxis(outs.reshape((steps.num_units,) + outs.shape[2:]), 0, 1)
