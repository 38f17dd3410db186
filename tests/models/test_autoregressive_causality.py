"""Causality of every autoregressive model by Jacobian: output i has zero derivative w.r.t.
every input at positions >= i (and later colours), non-zero for its predecessors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.test_autoregressive import TINY, _init, build


def _dependence(model, params, shape, levels, label=None):
    """bool [U, D]: does output unit u depend on input sub-pixel d (over 8 random inputs)."""
    imgs = jax.random.randint(jax.random.key(7), (8,) + shape, 0, levels)
    inputs = model._inputs(imgs).astype(jnp.float32)
    if inputs.ndim == 2:
        inputs = inputs + 0.1 * jax.random.normal(jax.random.key(8), inputs.shape)
    y = None if label is None else jnp.full((1,), label)

    def f(x):
        return model._apply(params, x[None], y)[0]              # [U, P]

    jac = jax.jit(jax.vmap(jax.jacrev(f)))(inputs)                        # [3, U, P, *input]
    jac = np.abs(np.asarray(jac)).sum(axis=(0, 2))
    d = int(np.prod(shape))
    jac = jac.reshape(jac.shape[0], d, -1).sum(-1)               # one-hot axis summed
    return jac > 0


def _must_see(model, shape, d):
    """Sub-pixels that output sub-pixel d must depend on: the previous colour of the same
    pixel, else the pixel to the left and the one above (convolutions: the raster
    predecessor at a row start lies outside the kernel) or the raster predecessor."""
    h, w, c = shape
    i, j, ch = np.unravel_index(d, shape)
    if ch > 0 and model.unit_size == 1:
        return [d - 1]
    if hasattr(model.net, "first_kernel"):
        return ([np.ravel_multi_index((i, j - 1, c - 1), shape)] if j else []) + \
               ([np.ravel_multi_index((i - 1, j, c - 1), shape)] if i else [])
    return [d - 1] if d else []


def _check_causal(model, dep, shape, positions=None):
    """Output unit u depends on no input at or after u in the ordering (for a pixel unit:
    none of its own channels), and on its immediate predecessors."""
    d = dep.shape[1]
    natural = positions is None
    positions = np.arange(d) if natural else positions            # position of sub-pixel
    unit_pos = positions.reshape(model.num_units, model.unit_size).min(1)
    allowed = positions[None, :] < unit_pos[:, None]
    assert not np.any(dep & ~allowed), "an output depends on a later (or its own) input"
    order = np.argsort(positions)
    for u in range(model.num_units):
        if unit_pos[u] == 0:
            continue
        needed = (_must_see(model, shape, u * model.unit_size) if natural
                  else [order[unit_pos[u] - 1]])
        for q in needed:
            assert dep[u, q], f"unit {u} does not see its predecessor {q}"


# Every model on a 2x3 binary image; colour groups (R -> G -> B) where the network has
# them; the per-pixel mixture; the class-conditional gated network.
CASES = [(name, (2, 3, 1), 2, {}) for name in TINY] + [
    ("made", (1, 2, 3), 3, {}),
    ("pixelcnn", (2, 2, 3), 3, {}),
    ("row_lstm", (2, 2, 3), 3, {}),
    ("diagonal_bilstm", (2, 2, 3), 3, {}),
    ("gated_pixelcnn", (2, 2, 3), 3, dict(num_classes=3)),
    ("gated_pixelcnn", (2, 2, 3), 4, dict(output="mixture", num_mixtures=2)),
]


# The PixelRNNs' colour cases (a scan per layer, slow to differentiate) run in the slow tier.
@pytest.mark.parametrize("name,shape,levels,kw",
                         [pytest.param(*c, marks=pytest.mark.slow)
                          if c[0] in ("row_lstm", "diagonal_bilstm") and c[1][-1] == 3 else c
                          for c in CASES],
                         ids=[f"{c[0]}-{'x'.join(map(str, c[1]))}-L{c[2]}"
                              + ("-" + "-".join(c[3]) if c[3] else "") for c in CASES])
def test_causality_by_jacobian(name, shape, levels, kw):
    model = build(name, shape, levels, **kw)
    label = 1 if kw.get("num_classes") else None
    params = _init(model, shape, label=label)
    dep = _dependence(model, params, shape, levels, label)
    positions = None
    if name == "made":   # the first ordering is a random permutation
        positions = model.positions[0]
    _check_causal(model, dep, shape, positions)


def _receptive_field(name, shape=(3, 5, 1)):
    """bool [H, W, H, W]: does output pixel (r, c) depend on input pixel (r', c')."""
    model = build(name, shape)
    dep = _dependence(model, _init(model, shape), shape, 2)
    return dep.reshape(shape[:2] + shape[:2])


def test_diagonal_bilstm_sees_every_pixel_before_it():
    """One Diagonal BiLSTM layer after a 3x3 mask-A convolution: output (r, c) depends on
    exactly the pixels before it, except the last one of row r - 1 when c + 1 < W - 1
    (the only pixel a feature map cannot carry to (r, c), see genjax/nn/pixelrnn.py)."""
    h, w = 3, 5
    dep = _receptive_field("diagonal_bilstm", (h, w, 1))
    for r, c in np.ndindex(h, w):
        expect = np.arange(h * w).reshape(h, w) < r * w + c
        if r and c + 1 < w - 1:
            expect[r - 1, w - 1] = False
        np.testing.assert_array_equal(dep[r, c], expect, err_msg=f"output {(r, c)}")


@pytest.mark.slow
def test_pixelcnn_of_the_same_size_has_a_blind_spot():
    """The contrast to the test above: a PixelCNN (3x3 mask A, one 3x3 mask-B block) misses
    (r - 1, c + 2), which the Diagonal BiLSTM sees."""
    dep = _receptive_field("pixelcnn", (3, 5, 1))
    assert not dep[1, 0, 0, 2] and not dep[2, 1, 1, 3]
    assert dep[1, 0, 0, 1] and dep[2, 1, 1, 2]


def test_row_lstm_sees_a_triangle_above():
    """One Row LSTM layer (input-to-state width 3, state-to-state width 3) after a 3x3
    mask-A convolution: the state at row r reads the inputs at c - 1 .. c and the states
    of row r - 1 at c - 1 .. c + 1, so output (r, c) sees row r - d at columns
    c - d - 2 .. c + d for d >= 1 and row r at c - 2 .. c - 1: a triangle above."""
    h, w = 3, 5
    dep = _receptive_field("row_lstm", (h, w, 1))
    for r, c in np.ndindex(h, w):
        expect = np.zeros((h, w), bool)
        expect[r, max(c - 2, 0):c] = True
        for d in range(1, r + 1):
            expect[r - d, max(c - d - 2, 0):c + d + 1] = True
        np.testing.assert_array_equal(dep[r, c], expect, err_msg=f"output {(r, c)}")
