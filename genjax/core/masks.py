"""Connectivity masks of autoregressive models (constants, built with numpy).

An autoregressive model factorises by the chain rule over a fixed ordering,

    p(x) = prod_i p(x_i | x_<i),

and a network computes every conditional in one pass when its connectivity
forbids any path from x_j (j >= i) to the output for x_i. Each mask below is
multiplied into a weight matrix or kernel, so the forbidden weights are exactly
zero and stay zero under any gradient step.

* :func:`made_masks`: MADE (Germain et al. 2015). Every unit k of layer l gets a
  degree m_l(k); inputs have degrees 1..D from the ordering. A hidden weight
  k -> k' is kept iff m_l(k') >= m_{l-1}(k), an output weight iff
  m_out(d) > m_L(k), so output d sees only inputs of degree < m_0(d).
* :func:`pixelcnn_mask`: PixelCNN masked convolutions (van den Oord et al. 2016)
  over a raster scan with colour ordering R -> G -> B inside a pixel. Channels
  are split into ``num_color_groups`` contiguous groups (channel k of n is in
  group k * G // n). Kernel taps above the centre row and left of the centre are
  kept; at the centre, type ``"A"`` (first layer) connects input group g to
  output group g' iff g < g', type ``"B"`` (later layers) iff g <= g'.
* :func:`causal_mask`: the attention mask M of a causal transformer, position i
  attends to j iff j <= i.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def made_degrees(
    input_dim: int,
    hidden_dims: Sequence[int],
    *,
    ordering: str | Sequence[int] = "natural",
    hidden_degrees: str = "random",
    seed: int = 0,
) -> list[np.ndarray]:
    """Degrees [m_0, m_1, ..., m_L] of the input and hidden units of a MADE.

    Args:
      input_dim: D, the number of inputs (and outputs).
      hidden_dims: sizes of the hidden layers.
      ordering: ``"natural"`` (m_0(d) = d + 1), ``"random"`` (a permutation
        drawn from ``seed``), or an explicit permutation of 0..D-1 giving the
        position of each input in the ordering.
      hidden_degrees: ``"random"`` (uniform on [min m_{l-1}, D - 1], as in the
        paper) or ``"equal"`` (cycled evenly, deterministic).
      seed: numpy seed for the random choices.

    Returns:
      A list of int arrays: ``m_0`` of shape [D], then one per hidden layer.
    """
    rng = np.random.RandomState(seed)
    if isinstance(ordering, str):
        if ordering == "natural":
            m0 = np.arange(1, input_dim + 1)
        elif ordering == "random":
            m0 = rng.permutation(input_dim) + 1
        else:
            raise ValueError(f"ordering must be 'natural', 'random' or a permutation, "
                             f"got {ordering!r}")
    else:
        order = np.asarray(ordering)
        if sorted(order.tolist()) != list(range(input_dim)):
            raise ValueError(f"ordering must be a permutation of 0..{input_dim - 1}")
        m0 = order + 1
    degrees = [m0]
    for size in hidden_dims:
        low = min(int(degrees[-1].min()), input_dim - 1)
        if hidden_degrees == "random":
            m = rng.randint(low, input_dim, size=size)
        elif hidden_degrees == "equal":
            m = low + np.arange(size) % max(input_dim - low, 1)
        else:
            raise ValueError(f"hidden_degrees must be 'random' or 'equal', got {hidden_degrees!r}")
        degrees.append(m)
    return degrees


def made_masks(
    input_dim: int,
    hidden_dims: Sequence[int],
    *,
    ordering: str | Sequence[int] = "natural",
    hidden_degrees: str = "random",
    seed: int = 0,
) -> tuple[list[np.ndarray], np.ndarray]:
    """MADE masks for dense layers D -> hidden_dims... -> D.

    Returns:
      ``(masks, order)``: ``masks[l]`` is a float32 array [fan_in, fan_out] for
      the kernel of layer l (the last one maps to the D outputs, to be repeated
      along the output's parameter axis by the caller), and ``order`` [D] is
      the position of each input in the ordering (0-based), so output d depends
      on exactly the inputs j with ``order[j] < order[d]``.
    """
    degrees = made_degrees(input_dim, hidden_dims, ordering=ordering,
                           hidden_degrees=hidden_degrees, seed=seed)
    masks = [(d_out[None, :] >= d_in[:, None]).astype(np.float32)
             for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append((degrees[0][None, :] > degrees[-1][:, None]).astype(np.float32))
    return masks, degrees[0] - 1


def color_groups(num_channels: int, num_groups: int) -> np.ndarray:
    """Group of each of ``num_channels`` channels: channel k is in group k * G // n."""
    if num_channels < num_groups:
        raise ValueError(f"{num_channels} channels cannot be split into {num_groups} colour "
                         "groups")
    return np.arange(num_channels) * num_groups // num_channels


def center_mask(in_ch: int, out_ch: int, mask_type: str, num_color_groups: int = 3) -> np.ndarray:
    """The [in_ch, out_ch] connectivity of the centre tap: g_in < g_out (A) or <= (B)."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    g_in = color_groups(in_ch, num_color_groups)[:, None]
    g_out = color_groups(out_ch, num_color_groups)[None, :]
    keep = g_in < g_out if mask_type == "A" else g_in <= g_out
    return keep.astype(np.float32)


def pixelcnn_mask(
    kernel_size: int | tuple[int, int],
    in_ch: int,
    out_ch: int,
    mask_type: str = "B",
    num_color_groups: int = 3,
) -> np.ndarray:
    """PixelCNN kernel mask of shape [kh, kw, in_ch, out_ch] (float32 0/1).

    Rows above the centre: all taps kept. Centre row: taps left of the centre
    kept, right of it dropped. Centre tap: :func:`center_mask`. Rows below:
    dropped. With ``num_color_groups=1`` type A drops the centre entirely and
    type B keeps it.
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {(kh, kw)}")
    mask = np.zeros((kh, kw, in_ch, out_ch), np.float32)
    ch, cw = kh // 2, kw // 2
    mask[:ch] = 1.0
    mask[ch, :cw] = 1.0
    mask[ch, cw] = center_mask(in_ch, out_ch, mask_type, num_color_groups)
    return mask


def causal_mask(length: int, *, strict: bool = False) -> np.ndarray:
    """bool [T, T]: entry (i, j) is True iff position i may see position j: j <= i (a
    causal transformer's attention), or j < i with ``strict`` (a fully visible sigmoid
    belief net's weights, where x_i must not see itself)."""
    return np.tril(np.ones((length, length), dtype=bool), -1 if strict else 0)
