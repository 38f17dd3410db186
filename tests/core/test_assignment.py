"""The exact linear assignment against scipy's optimum and brute force over all permutations,
with the dual certificate of the module docstring: u_i + v_j <= c_ij everywhere, equality on
the assigned pairs, so sum u + sum v equals the assignment's cost (complementary slackness)."""

import itertools

import jax
import numpy as np
import pytest
from scipy import optimize

from genjax.core.assignment import assignment_with_potentials, linear_sum_assignment

# one compile per size, shared by the tests below (a vmapped compile costs ~3x more)
SOLVE = jax.jit(assignment_with_potentials)


def _cost(c, perm):
    return c[np.arange(len(c)), perm].sum(-1)


def _batch(n, seed):
    """Float costs, integer costs with many ties, all-equal costs, and the first matrix with
    a constant added to row 0: [4, n, n] float32."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(n, n))
    ties = rng.integers(0, 4, (n, n)).astype(np.float64)
    shifted = normal.copy()
    shifted[0] += 7.0
    return np.stack([normal, ties, np.full((n, n), 2.0), shifted]).astype(np.float32)


def _check_certificate(c, perm, u, v, atol):
    reduced = c - u[:, None] - v[None, :]
    assert reduced.min() >= -atol                                   # dual feasible
    np.testing.assert_allclose(reduced[np.arange(len(c)), perm], 0.0, atol=atol)
    np.testing.assert_allclose(u.sum() + v.sum(), _cost(c, perm), atol=atol * len(c))


@pytest.mark.parametrize("n", [1, 2, 5, 17, 64])
def test_assignment_is_a_permutation_with_scipys_optimal_cost(n):
    costs = _batch(n, seed=n)
    perms, us, vs = (np.stack(a) for a in zip(*(jax.device_get(SOLVE(c)) for c in costs)))
    assert perms.dtype == np.int32
    for c, perm, u, v in zip(costs, perms, us, vs):
        assert sorted(perm) == list(range(n))
        rows, cols = optimize.linear_sum_assignment(c)
        np.testing.assert_allclose(_cost(c, perm), c[rows, cols].sum(), rtol=1e-5, atol=1e-4)
        _check_certificate(c.astype(np.float64), perm, u, v, atol=1e-4)
    # integer costs are exact in float32
    assert _cost(costs[1], perms[1]) == costs[1][optimize.linear_sum_assignment(costs[1])].sum()
    # a constant on a row moves the optimum by that constant, not the optimal permutation
    np.testing.assert_allclose(_cost(costs[3], perms[3]), _cost(costs[0], perms[0]) + 7.0,
                               rtol=1e-5)
    np.testing.assert_array_equal(perms[3], perms[0])


@pytest.mark.parametrize("n", [2, 5, 6])
def test_assignment_matches_brute_force_over_all_permutations(n):
    for c in _batch(n, seed=10 + n):
        perm = np.asarray(SOLVE(c)[0])
        best = min(_cost(c, np.array(p)) for p in itertools.permutations(range(n)))
        np.testing.assert_allclose(_cost(c, perm), best, rtol=1e-6, atol=1e-6)


def test_vmapped_batch_solves_each_matrix():
    """vmap over a batch [4, 5, 5] with an anti-diagonal of zeros among ones (the unique
    optimum) in it: each row of the result is the assignment of its own matrix."""
    costs = _batch(5, seed=3)
    costs[2] = 1.0 - np.eye(5, dtype=np.float32)[::-1]
    perms = np.asarray(jax.jit(jax.vmap(linear_sum_assignment))(costs))
    np.testing.assert_array_equal(perms[2], [4, 3, 2, 1, 0])
    for c, perm in zip(costs, perms):
        np.testing.assert_array_equal(perm, SOLVE(c)[0])


def test_non_square_cost_fails():
    with pytest.raises(ValueError, match="square"):
        linear_sum_assignment(np.zeros((2, 3), np.float32))
