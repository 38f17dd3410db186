"""CLIP's symmetric InfoNCE: a numpy loop, log N for uninformative scores, the temperature cap,
the large-batch limit against Monte Carlo batches, and its minimiser, the pointwise mutual
information up to a constant (the notes' claim), found by L-BFGS over a free score table."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.core import contrastive as con

# A 3 x 4 joint p(x, c) with unequal marginals and one impossible pair.
JOINT = np.array([[0.20, 0.05, 0.00, 0.05],
                  [0.02, 0.18, 0.10, 0.05],
                  [0.05, 0.05, 0.05, 0.20]])


def _numpy_loss(scores):
    """The two cross-entropies by explicit loops over rows and columns."""
    n = scores.shape[0]
    total = 0.0
    for i in range(n):
        row = sum(math.exp(scores[i, k]) for k in range(n))
        col = sum(math.exp(scores[k, i]) for k in range(n))
        total += -math.log(math.exp(scores[i, i]) / row) - math.log(math.exp(scores[i, i]) / col)
    return total / (2 * n)


@pytest.mark.parametrize("n,seed", [(1, 0), (2, 1), (5, 2), (9, 3)])
def test_symmetric_info_nce_matches_a_numpy_loop(n, seed):
    scores = np.random.default_rng(seed).normal(0, 3, (n, n))
    np.testing.assert_allclose(con.symmetric_info_nce(jnp.asarray(scores)), _numpy_loss(scores),
                               rtol=1e-5, atol=1e-6)


def test_clip_loss_normalises_and_scales_before_the_numpy_loss():
    rng = np.random.default_rng(4)
    u, v = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    t = 1.3
    cos = (u / np.linalg.norm(u, axis=1, keepdims=True)) @ (
        v / np.linalg.norm(v, axis=1, keepdims=True)).T
    got = con.clip_loss(jnp.asarray(u), jnp.asarray(v), jnp.asarray(t))
    np.testing.assert_allclose(got, _numpy_loss(np.exp(t) * cos), rtol=1e-5)
    # the embeddings' lengths do not matter, only their directions
    scaled = con.clip_loss(jnp.asarray(u * rng.uniform(0.1, 9, (6, 1))),
                           jnp.asarray(v * rng.uniform(0.1, 9, (6, 1))), jnp.asarray(t))
    np.testing.assert_allclose(scaled, got, rtol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_uninformative_scores_cost_log_n(n):
    values = jnp.array([0.0, -3.5, 40.0])[:, None, None] * jnp.ones((n, n))
    np.testing.assert_allclose(jax.vmap(con.symmetric_info_nce)(values), math.log(n),
                               rtol=1e-6, atol=1e-6)
    # and so do embeddings that all point the same way, at any temperature
    u = jnp.ones((n, 4))
    np.testing.assert_allclose(con.clip_loss(u, 2 * u, jnp.asarray(3.0)), math.log(n),
                               rtol=1e-5, atol=1e-6)


def test_the_log_temperature_is_clipped_at_log_100():
    rng = np.random.default_rng(5)
    u, v = jnp.asarray(rng.normal(size=(4, 3))), jnp.asarray(rng.normal(size=(4, 3)))
    capped = con.clip_logits(u, v, jnp.asarray(9.0))
    np.testing.assert_allclose(capped, con.clip_logits(u, v, jnp.asarray(math.log(100.0))),
                               rtol=1e-6)
    assert float(jnp.max(jnp.abs(capped))) <= 100.0 + 1e-4
    grad = jax.grad(lambda t: con.clip_loss(u, v, t))
    assert float(grad(jnp.asarray(9.0))) == 0.0
    assert float(grad(jnp.asarray(1.0))) != 0.0
    np.testing.assert_allclose(con.logit_scale(jnp.asarray(con.INIT_LOG_SCALE)), 1 / 0.07,
                               rtol=1e-6)


def _pmi(joint):
    px, pc = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.log(joint) - np.log(px) - np.log(pc)


def _mutual_information(joint):
    pmi = _pmi(joint)
    return float(np.sum(np.where(joint > 0, joint * np.where(joint > 0, pmi, 0.0), 0.0)))


def test_population_objective_is_the_large_batch_limit():
    """L_N - log N, averaged over 8 batches of N = 1000 pairs drawn from the table, is
    L_inf(s) (one batch's value has a standard deviation of about 0.027 here)."""
    rng = np.random.default_rng(6)
    scores = rng.normal(0, 1.5, JOINT.shape)
    n, batches = 1000, 8
    flat = rng.choice(JOINT.size, size=(batches, n), p=JOINT.ravel())
    x, c = np.unravel_index(flat, JOINT.shape)
    losses = jax.vmap(lambda xi, ci: con.symmetric_info_nce(
        jnp.asarray(scores)[xi[:, None], ci[None, :]]))(jnp.asarray(x), jnp.asarray(c))
    limit = con.population_info_nce(jnp.asarray(scores), jnp.asarray(JOINT))
    np.testing.assert_allclose(float(jnp.mean(losses)) - math.log(n), float(limit), atol=0.04)


def test_the_minimiser_is_the_pointwise_mutual_information_up_to_a_constant():
    """L-BFGS on a free 3 x 4 table of scores (the impossible pair's score is free: it
    only enters the normalisers, where it is pushed to -inf) lands on log p(x,c) - log p(x)
    - log p(c) + const wherever p(x, c) > 0, at the value -I(X; C)."""
    joint = jnp.asarray(JOINT)
    objective = jax.jit(lambda s: con.population_info_nce(s, joint))
    pmi, mi = _pmi(JOINT), _mutual_information(JOINT)
    finite = JOINT > 0
    # At the PMI (the impossible pair at -inf, here -1e4) the value is -I and the gradient 0.
    at_pmi = jnp.asarray(np.where(finite, pmi, -1e4))
    np.testing.assert_allclose(objective(at_pmi), -mi, rtol=1e-5)
    np.testing.assert_allclose(jax.grad(objective)(at_pmi), 0.0, atol=1e-6)
    # ... and so for PMI + 7: the objective only sees differences of scores
    np.testing.assert_allclose(objective(at_pmi + 7.0), -mi, rtol=1e-5)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)
    scores = jnp.asarray(np.random.default_rng(7).normal(0, 2, JOINT.shape))
    state = solver.init(scores)

    @jax.jit
    def step(scores, state):
        value, grad = value_and_grad(scores, state=state)
        updates, state = solver.update(grad, state, scores, value=value, grad=grad,
                                       value_fn=objective)
        return optax.apply_updates(scores, updates), state

    for _ in range(300):
        scores, state = step(scores, state)
    scores = np.asarray(scores)
    np.testing.assert_allclose(float(objective(jnp.asarray(scores))), -mi, atol=1e-6)
    offset = scores[finite] - pmi[finite]
    np.testing.assert_allclose(offset, offset.mean(), atol=2e-3)
    assert scores[~finite].max() < scores[finite].min() - 3.0
    # A different table (no impossible pair) has a different minimiser: not a fixed point.
    other = np.full(JOINT.shape, 1 / JOINT.size)
    assert float(jnp.max(jnp.abs(jax.grad(lambda s: con.population_info_nce(
        s, jnp.asarray(other)))(jnp.asarray(scores))))) > 1e-3


def test_recall_at_k_on_hand_made_scores():
    scores = jnp.array([[0.9, 0.1, 0.5, 0.0],     # best 0, then 2, 1, 3
                        [0.2, 0.3, 0.8, 0.7],     # best 2, then 3, 1, 0
                        [0.0, 0.0, 0.0, 0.0]])    # all tied: index order 0, 1, 2, 3
    match = jnp.array([[True, False, False, False],
                       [True, False, False, False],
                       [False, False, False, True]])
    np.testing.assert_array_equal(con.recall_at_k(scores, match, 1), [True, False, False])
    np.testing.assert_array_equal(con.recall_at_k(scores, match, 3), [True, False, False])
    np.testing.assert_array_equal(con.recall_at_k(scores, match, 4), [True, True, True])
    # k beyond the gallery is the whole gallery
    np.testing.assert_array_equal(con.recall_at_k(scores, match, 10), [True, True, True])
    # two matches: either counts
    two = match.at[1, 3].set(True)
    np.testing.assert_array_equal(con.recall_at_k(scores, two, 2), [True, True, False])
