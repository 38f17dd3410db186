"""MADE, PixelCNN and causal masks: the connectivity they allow is exactly the ordering."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genjax.core.masks import causal_mask, color_groups, made_masks, pixelcnn_mask


def _connectivity(masks):
    """[D_in, D_out] bool: is there any path from input j to output d."""
    path = masks[0]
    for m in masks[1:]:
        path = (path @ m) > 0
    return path


@pytest.mark.parametrize("ordering", ["natural", "random", [2, 0, 4, 1, 3]])
def test_made_masks_respect_the_ordering(ordering):
    masks, order = made_masks(5, [16, 16], ordering=ordering, seed=3)
    assert sorted(order.tolist()) == list(range(5))
    if not isinstance(ordering, str):
        np.testing.assert_array_equal(order, ordering)
    allowed = order[:, None] < order[None, :]          # input j may reach output d
    reach = _connectivity(masks)
    assert not np.any(reach & ~allowed)
    # With "equal" degrees and enough units, every allowed path exists.
    masks, order = made_masks(5, [32], ordering=ordering, hidden_degrees="equal", seed=3)
    np.testing.assert_array_equal(_connectivity(masks), order[:, None] < order[None, :])


def test_made_masks_shapes_and_bad_ordering():
    masks, _ = made_masks(6, [8, 7])
    assert [m.shape for m in masks] == [(6, 8), (8, 7), (7, 6)]
    with pytest.raises(ValueError, match="permutation"):
        made_masks(3, [4], ordering=[0, 0, 1])


def test_pixelcnn_mask_spatial_layout():
    for kind in "AB":
        m = pixelcnn_mask(5, 1, 1, kind, num_color_groups=1)[..., 0, 0]
        assert m[:2].all() and m[2, :2].all()             # rows above, left of the centre
        assert not m[3:].any() and not m[2, 3:].any()     # rows below, right of the centre
        assert m[2, 2] == (kind == "B")


def test_pixelcnn_mask_colour_groups():
    # Input: one channel per colour; output: two channels per colour (R R G G B B).
    a = pixelcnn_mask(3, 3, 6, "A", 3)[1, 1]              # centre tap [in, out]
    b = pixelcnn_mask(3, 3, 6, "B", 3)[1, 1]
    np.testing.assert_array_equal(color_groups(6, 3), [0, 0, 1, 1, 2, 2])
    expect_a = np.array([[0, 0, 1, 1, 1, 1],     # R feeds G and B outputs
                         [0, 0, 0, 0, 1, 1],     # G feeds B
                         [0, 0, 0, 0, 0, 0]])    # B feeds nothing at the centre
    np.testing.assert_array_equal(a, expect_a)
    np.testing.assert_array_equal(b, expect_a + np.repeat(np.eye(3), 2, axis=1))
    with pytest.raises(ValueError):
        pixelcnn_mask(2, 3, 3, "A")
    with pytest.raises(ValueError):
        pixelcnn_mask(3, 3, 3, "C")


def test_causal_mask():
    m = causal_mask(4)
    assert m.dtype == bool
    np.testing.assert_array_equal(m, np.arange(4)[None, :] <= np.arange(4)[:, None])
    strict = causal_mask(4, strict=True)
    np.testing.assert_array_equal(strict, np.arange(4)[None, :] < np.arange(4)[:, None])


# --------------------------------------------------------------------------------------
# Properties (hypothesis)
# --------------------------------------------------------------------------------------


@given(input_dim=st.integers(1, 8), hidden=st.lists(st.integers(1, 12), min_size=1, max_size=3),
       ordering=st.sampled_from(["natural", "random", "explicit"]),
       hidden_degrees=st.sampled_from(["random", "equal"]), seed=st.integers(0, 2**32 - 1))
def test_made_paths_follow_the_ordering(input_dim, hidden, ordering, hidden_degrees, seed):
    """A path x_j -> output d exists only if order(j) < order(d); with equal degrees and
    >= D - 1 units per hidden layer, every such path exists."""
    if ordering == "explicit":
        ordering = np.random.default_rng(seed).permutation(input_dim).tolist()
    masks, order = made_masks(input_dim, hidden, ordering=ordering,
                              hidden_degrees=hidden_degrees, seed=seed)
    sizes = [input_dim, *hidden, input_dim]
    assert [m.shape for m in masks] == list(zip(sizes[:-1], sizes[1:]))
    assert all(m.dtype == np.float32 and set(np.unique(m)) <= {0.0, 1.0} for m in masks)
    assert sorted(order.tolist()) == list(range(input_dim))
    if not isinstance(ordering, str):
        np.testing.assert_array_equal(order, ordering)
    allowed = order[:, None] < order[None, :]
    reach = _connectivity(masks)
    assert not np.any(reach & ~allowed)
    if hidden_degrees == "equal" and min(hidden) >= input_dim - 1:
        np.testing.assert_array_equal(reach, allowed)


_odd = st.sampled_from([1, 3, 5, 7])


def _groups(num_channels, num_groups):
    """Contiguous equal colour groups of channels divisible by the number of groups."""
    return np.arange(num_channels) // (num_channels // num_groups)


@given(kh=_odd, kw=_odd, num_groups=st.sampled_from([1, 3]), in_mult=st.integers(1, 4),
       out_mult=st.integers(1, 4), mask_type=st.sampled_from("AB"))
def test_pixelcnn_mask_is_exactly_the_raster_and_colour_order(kh, kw, num_groups, in_mult,
                                                              out_mult, mask_type):
    """Tap (i, j), input channel c -> output c' is kept iff the tap is above the centre, or
    left of it on its row, or the centre itself with g(c) < g(c') (A) or <= (B)."""
    in_ch, out_ch = num_groups * in_mult, num_groups * out_mult
    kernel = kh if kh == kw else (kh, kw)
    mask = pixelcnn_mask(kernel, in_ch, out_ch, mask_type, num_groups)
    assert mask.shape == (kh, kw, in_ch, out_ch) and mask.dtype == np.float32
    g_in, g_out = _groups(in_ch, num_groups), _groups(out_ch, num_groups)
    for i, j, c, c_out in np.ndindex(mask.shape):
        di, dj = i - kh // 2, j - kw // 2
        if (di, dj) == (0, 0):
            keep = g_in[c] < g_out[c_out] if mask_type == "A" else g_in[c] <= g_out[c_out]
        else:
            keep = di < 0 or (di == 0 and dj < 0)
        assert mask[i, j, c, c_out] == keep, (i, j, c, c_out)


def _masked_conv_reach(reach, mask):
    """Which inputs each unit sees after a 'same' cross-correlation with kernel ``mask``
    [kh, kw, C_in, C_out] (tap (i, j) reads (y + i - kh // 2, x + j - kw // 2)):
    reach [H, W, C_in, N] bool -> [H, W, C_out, N]."""
    h, w = reach.shape[:2]
    kh, kw = mask.shape[:2]
    out = np.zeros((h, w, mask.shape[3], reach.shape[3]), np.int64)
    padded = np.pad(reach, ((kh // 2,) * 2, (kw // 2,) * 2, (0, 0), (0, 0))).astype(np.int64)
    for i, j in np.ndindex(kh, kw):
        out += np.einsum("yxcn,co->yxon", padded[i:i + h, j:j + w], mask[i, j].astype(np.int64))
    return out > 0


@given(kernels=st.lists(st.tuples(_odd, _odd), min_size=1, max_size=3),
       num_groups=st.sampled_from([1, 3]), widths=st.lists(st.integers(1, 3), min_size=3,
                                                           max_size=3))
def test_pixelcnn_stack_is_causal(kernels, num_groups, widths):
    """An A layer then B layers: output (p, c') sees input (q, c) only if q precedes p in the
    raster scan, or q = p and g(c) < g(c')."""
    size = 5
    channels = [num_groups] + [num_groups * w for w in widths[:len(kernels)]]
    n = size * size * num_groups
    reach = np.eye(n, dtype=bool).reshape(size, size, num_groups, n)
    for layer, ((kh, kw), c_in, c_out) in enumerate(zip(kernels, channels, channels[1:])):
        mask = pixelcnn_mask((kh, kw), c_in, c_out, "A" if layer == 0 else "B", num_groups)
        reach = _masked_conv_reach(reach, mask)
    pos = np.arange(size * size).reshape(size, size)
    g_out = _groups(channels[-1], num_groups)
    src_pos = np.repeat(np.arange(size * size), num_groups)        # inputs (y, x, c) flat
    src_group = np.tile(np.arange(num_groups), size * size)
    allowed = ((src_pos[None, None, None, :] < pos[:, :, None, None])
               | ((src_pos[None, None, None, :] == pos[:, :, None, None])
                  & (src_group[None, None, None, :] < g_out[None, None, :, None])))
    assert not np.any(reach & ~allowed)


@given(length=st.integers(1, 64), strict=st.booleans())
def test_causal_mask_matches_brute_force(length, strict):
    """M[i, j] = [j <= i] (or [j < i] when strict), boolean [T, T]."""
    m = causal_mask(length, strict=strict)
    assert m.dtype == bool and m.shape == (length, length)
    for i, j in np.ndindex(length, length):
        assert m[i, j] == (j < i if strict else j <= i)


@given(num_groups=st.integers(1, 6), extra=st.integers(0, 20))
def test_colour_groups_are_contiguous_and_balanced(num_groups, extra):
    """Channel groups are 0..G-1 in order, each non-empty, sizes differing by at most one."""
    groups = color_groups(num_groups + extra, num_groups)
    assert groups[0] == 0 and groups[-1] == num_groups - 1 and np.all(np.diff(groups) >= 0)
    sizes = np.bincount(groups, minlength=num_groups)
    assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1
    if num_groups > 1:
        with pytest.raises(ValueError):
            color_groups(num_groups - 1, num_groups)
