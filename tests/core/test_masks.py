"""MADE, PixelCNN and causal masks: the connectivity they allow is exactly the ordering."""

import numpy as np
import pytest

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
