"""Conditioning: labels in turn, label checks, condition dropout and classifier-free guidance.

(The fixed-value rules are in tests/models/test_conditioning_rule.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from genjax.core import conditioning as cnd

# --------------------------------------------------------------------------------------
# Properties (hypothesis)
# --------------------------------------------------------------------------------------

_floats = st.floats(-10, 10, width=32, allow_subnormal=False)   # XLA flushes subnormals
_pairs = hnp.arrays(np.float32, st.sampled_from([(5,), (2, 3), (2, 2, 2)]), elements=_floats)


@given(c=_pairs, data=st.data(), w=st.floats(-1, 10))
def test_guidance_is_the_affine_extrapolation(c, data, w):
    """eps~ = (1 + w) eps_c - w eps_u: w = 0 gives eps_c, w = -1 eps_u, eps_c = eps_u is a
    fixed point, and eps~ = eps_c + w (eps_c - eps_u)."""
    u = data.draw(hnp.arrays(np.float32, c.shape, elements=_floats), label="u")
    np.testing.assert_array_equal(cnd.guided(c, u, 0.0), c)
    np.testing.assert_array_equal(cnd.guided(c, u, -1.0), u)
    size = 1e-6 * (1 + abs(w)) * (np.abs(c) + np.abs(u)) + 1e-6
    np.testing.assert_array_less(np.abs(cnd.guided(c, c, w) - c), size)
    expected = np.float64(c) + w * (np.float64(c) - np.float64(u))
    np.testing.assert_array_less(np.abs(cnd.guided(c, u, w) - expected), 2 * size)


@given(logits=hnp.arrays(np.float32, (2, 2, 6), elements=_floats), w=st.floats(-1, 5),
       shift=st.floats(-50, 50))
def test_guided_logits_give_the_tilted_distribution(logits, w, shift):
    """softmax((1 + w) log p_c - w log p_u) = p_c^{1+w} p_u^{-w} / Z, unchanged by adding a
    constant to either log-probability."""
    log_p_c, log_p_u = (jax.nn.log_softmax(v, -1) for v in logits)
    p_c, p_u = (np.exp(np.float64(v)) for v in (log_p_c, log_p_u))
    tilted = p_c ** (1 + w) * p_u ** (-w)
    guided = jax.nn.softmax(cnd.guided_logits(log_p_c, log_p_u, w), -1)
    np.testing.assert_allclose(guided, tilted / tilted.sum(-1, keepdims=True), atol=2e-5)
    shifted = cnd.guided_logits(log_p_c + shift, log_p_u - shift, w)
    np.testing.assert_allclose(jax.nn.softmax(shifted, -1), guided, atol=2e-5 * (1 + abs(w)))


@given(shape=st.sampled_from([(6,), (5, 3), (4, 2, 2)]), seed=st.integers(0, 2**32 - 1),
       p1=st.floats(0, 1), p2=st.floats(0, 1))
def test_condition_dropout_is_per_row_and_monotone_in_p(shape, seed, p1, p2):
    """p = 0 keeps every row, p = 1 nulls every row; a row is either kept or all null; with
    one key, the rows dropped at p1 <= p2 are also dropped at p2."""
    key = jax.random.key(seed % 1000)
    cond = jnp.asarray(np.random.default_rng(seed).integers(0, 10, shape), jnp.int32)
    null = -1

    def dropped(p):
        out = np.asarray(cnd.drop_condition(key, cond, null, p)).reshape(shape[0], -1)
        rows_null = np.all(out == null, axis=1)
        np.testing.assert_array_equal(out[~rows_null], np.asarray(cond).reshape(shape[0], -1)
                                      [~rows_null])
        return rows_null

    assert not dropped(0.0).any() and dropped(1.0).all()
    low, high = sorted((p1, p2))
    assert np.all(dropped(high)[dropped(low)])


@given(n=st.sampled_from([0, 1, 5, 12, 37, 100]), num_classes=st.integers(1, 12))
def test_cycle_labels_take_every_class_in_turn(n, num_classes):
    """y_i in 0..K-1, y_i = i for i < K, y_{i+K} = y_i; counts differ by at most one; the
    class_labels of cond=None."""
    labels = np.asarray(cnd.cycle_labels(n, num_classes))
    assert labels.shape == (n,) and labels.dtype == np.int32
    assert np.all((labels >= 0) & (labels < num_classes))
    np.testing.assert_array_equal(labels[:num_classes], np.arange(min(n, num_classes)))
    np.testing.assert_array_equal(labels[num_classes:], labels[:max(n - num_classes, 0)])
    counts = np.bincount(labels, minlength=num_classes)
    assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(cnd.class_labels(None, n, num_classes), labels)
    np.testing.assert_array_equal(cnd.null_labels(n, num_classes), np.full(n, num_classes))


@given(labels=hnp.arrays(st.sampled_from([np.int32, np.int64]),
                         hnp.array_shapes(min_dims=0, max_dims=2, max_side=4),
                         elements=st.integers(-3, 15)),
       num_classes=st.integers(-1, 12))
def test_check_labels_raises_iff_a_label_is_out_of_range(labels, num_classes):
    """check_labels accepts integer labels in 0..K-1 (K >= 1) and raises ValueError otherwise;
    float labels are always refused."""
    valid = num_classes > 0 and bool(np.all((labels >= 0) & (labels < num_classes)))
    if valid:
        cnd.check_labels(labels, num_classes)
        if labels.ndim == 0:
            np.testing.assert_array_equal(cnd.class_labels(labels, 3, num_classes),
                                          np.full(3, labels))
    else:
        with pytest.raises(ValueError):
            cnd.check_labels(labels, num_classes)
    with pytest.raises(ValueError):
        cnd.check_labels(labels.astype(np.float32), max(num_classes, 1))
