"""The linear assignment problem, solved exactly in JAX.

Given a square cost matrix c [n, n], find the permutation sigma that minimises

    sum_i c_{i, sigma(i)}.

Its linear-programming dual asks for potentials u [n] (rows) and v [n] (columns) with

    maximise  sum_i u_i + sum_j v_j    subject to  u_i + v_j <= c_ij  for all i, j;

the reduced costs c_ij - u_i - v_j are >= 0, and a permutation is optimal exactly when a
feasible (u, v) has zero reduced cost on each of its pairs (complementary slackness: then
sum_i c_{i, sigma(i)} = sum_i u_i + sum_j v_j, which bounds every other permutation's cost
from below).

Algorithm: the Hungarian method in its shortest-augmenting-path form (Jonker & Volgenant
1987; the O(n^3) version of Kuhn-Munkres). Rows enter one at a time. For a new row, a
Dijkstra search over the columns on the reduced costs grows a tree of alternating paths;
``minv[j]`` is the reduced length of the shortest path found so far to column j and
``way[j]`` the column before j on it. Each step adds the nearest unreached column, with
distance delta, and shifts the potentials by delta (u up on the rows of the tree, v down
on its columns), which keeps every reduced cost >= 0 and makes the tree's edges tight.
When the nearest column is free, the path to it is flipped (augmentation): one more row is
matched, on tight edges only. After n rows the assignment and the potentials satisfy
complementary slackness, so the assignment is optimal.

Each row costs at most n + 1 search steps of O(n) vector work: O(n^3) in all, written
as ``lax.fori_loop`` over rows around ``lax.while_loop`` searches, so the function jits
for a static n and vmaps over a batch of matrices.

Float arithmetic: the distance updates subtract the minimum delta of the very vector it
is taken from, so the chosen column's distance is exactly 0 and no other goes negative;
ties (equal costs, integer costs) are broken by the lowest column index, and the result
is a permutation whatever the ties. Costs must be finite; they are computed in at least
float32 (float64 under ``jax_enable_x64`` with float64 costs), so integer costs are exact
up to 2^24.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
from jax import lax


class _Potentials(NamedTuple):
    """Row potentials u [n + 1], column potentials v [n + 1], and p [n + 1], the row
    matched to each column (0: none). Index 0 is a dummy row/column (1-based below)."""
    u: jax.Array
    v: jax.Array
    p: jax.Array


class _Search(NamedTuple):
    """State of the shortest-path search from one new row."""
    j0: jax.Array        # the column last added to the tree
    minv: jax.Array      # [n + 1] shortest reduced distance found so far to each column
    way: jax.Array       # [n + 1] the column before j on that path
    used: jax.Array      # [n + 1] bool, columns in the tree
    rows: jax.Array      # [n + 1] bool, rows in the tree (matched to its columns)
    steps: jax.Array     # search steps taken (at most n + 1 for finite costs)
    pot: _Potentials


def assignment_with_potentials(cost: jax.Array):
    """(perm [n] int32, u [n], v [n]): the optimal assignment perm (row i to column perm[i])
    of the square cost [n, n], and dual potentials with u_i + v_j <= cost_ij, equality on
    the assigned pairs. See the module docstring."""
    cost = jnp.asarray(cost)
    chex.assert_rank(cost, 2)
    n, m = cost.shape
    if n != m:
        raise ValueError(f"linear_sum_assignment needs a square cost matrix, got {cost.shape}")
    dtype = jnp.promote_types(cost.dtype, jnp.float32)
    if n == 0:
        return jnp.zeros((0,), jnp.int32), jnp.zeros((0,), dtype), jnp.zeros((0,), dtype)
    c = jnp.zeros((n + 1, n + 1), dtype).at[1:, 1:].set(cost.astype(dtype))
    inf = jnp.array(jnp.inf, dtype)

    def search_step(s: _Search) -> _Search:
        u, v, p = s.pot
        used = s.used.at[s.j0].set(True)
        i0 = p[s.j0]
        rows = s.rows.at[i0].set(True)
        reduced = c[i0] - u[i0] - v                   # reduced costs from row i0
        better = ~used & (reduced < s.minv)
        minv = jnp.where(better, reduced, s.minv)
        way = jnp.where(better, s.j0, s.way)
        candidates = jnp.where(used, inf, minv)
        j1 = jnp.argmin(candidates).astype(jnp.int32)  # nearest unreached column
        delta = candidates[j1]
        # the tree's rows go up by delta, its columns down, the other distances shrink
        u = jnp.where(rows, u + delta, u)
        v = jnp.where(used, v - delta, v)
        minv = jnp.where(used, minv, minv - delta)
        return _Search(j1, minv, way, used, rows, s.steps + 1, _Potentials(u, v, p))

    def searching(s: _Search):
        return (s.pot.p[s.j0] != 0) & (s.steps <= n)

    def add_row(i, pot: _Potentials) -> _Potentials:
        pot = pot._replace(p=pot.p.at[0].set(i))
        start = _Search(jnp.zeros((), jnp.int32), jnp.full((n + 1,), inf),
                        jnp.zeros((n + 1,), jnp.int32), jnp.zeros((n + 1,), bool),
                        jnp.zeros((n + 1,), bool), jnp.zeros((), jnp.int32), pot)
        s = lax.while_loop(searching, search_step, start)

        def flip(carry):                              # augment along way back to column 0
            j0, p, steps = carry
            j1 = s.way[j0]
            return j1, p.at[j0].set(p[j1]), steps + 1

        _, p, _ = lax.while_loop(lambda carry: (carry[0] != 0) & (carry[2] <= n), flip,
                                 (s.j0, s.pot.p, jnp.zeros((), jnp.int32)))
        return s.pot._replace(p=p)

    zeros = jnp.zeros((n + 1,), dtype)
    pot = lax.fori_loop(1, n + 1, add_row, _Potentials(zeros, zeros,
                                                       jnp.zeros((n + 1,), jnp.int32)))
    perm = jnp.zeros((n,), jnp.int32).at[pot.p[1:] - 1].set(jnp.arange(n, dtype=jnp.int32))
    return perm, pot.u[1:], pot.v[1:]


def linear_sum_assignment(cost: jax.Array) -> jax.Array:
    """perm [n] int32 minimising sum_i cost[i, perm[i]] over permutations, for a square
    finite cost [n, n] (exact; Hungarian / Jonker-Volgenant, module docstring). Jittable
    (n static) and vmappable; no gradient flows through the (piecewise constant) result."""
    return assignment_with_potentials(lax.stop_gradient(cost))[0]
