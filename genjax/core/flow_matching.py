"""Flow matching and rectified flow (Lipman et al., 2023; Liu et al., 2023), as pure functions.

Time runs from noise at t = 0 to data at t = 1 (the convention of both papers). A pair
(x_0, x_1), noise x_0 ~ N(0, I) and data x_1, defines the conditional path

    x_t = (1 - (1 - sigma_min) t) x_0 + t x_1,    u_t = x_1 - (1 - sigma_min) x_0,

the straight line of rectified flow for sigma_min = 0 and the conditional optimal-transport
path of flow matching otherwise. Regressing a velocity field v(x, t) on u_t,

    L(v) = E_{t ~ U(0, 1), (x_0, x_1)} |v(x_t, t) - u_t|^2,

is minimised by the marginal velocity u(x, t) = E[u_t | x_t = x], whose ODE
dx/dt = u(x, t) carries N(0, I) to the data law. Samples: integrate from t = 0 to 1
(:mod:`genjax.core.ode`); the log-likelihood of data runs the same ODE backwards with the
divergence. Reflow (rectified flow's second round) retrains on the pairs (x_0, ODE(x_0))
that a trained model produces, which straightens the paths so that few steps suffice.

Minibatch optimal transport (Tong et al., 2023; Pooladian et al., 2023) couples the pairs
within a batch instead of drawing them independently: the B noise draws are permuted by

    sigma* = argmin_sigma sum_i |x_1^i - x_0^{sigma(i)}|^2,

an exact assignment (:mod:`genjax.core.assignment`). The batch coupling approximates the
optimal-transport plan between N(0, I) and the data law, so the marginal paths cross less
and are straighter (lower-variance regression targets, fewer ODE steps).
"""

from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp

from genjax.core import ode
from genjax.core.assignment import linear_sum_assignment
from genjax.core.batch import per_example, sum_event
from genjax.core.likelihoods import gaussian_log_prob

Velocity = Callable[[jax.Array, jax.Array], jax.Array]    # (x [B, ...], t [B]) -> [B, ...]


def conditional_path(x0: jax.Array, x1: jax.Array, t: jax.Array, sigma_min: float = 0.0):
    """(x_t, u_t) of the pair (x_0 noise, x_1 data) at times t [B]."""
    tb = per_example(t, x0)
    x_t = (1.0 - (1.0 - sigma_min) * tb) * x0 + tb * x1
    return x_t, x1 - (1.0 - sigma_min) * x0


def flow_matching_loss(velocity_fn: Velocity, x1: jax.Array, rng: jax.Array | None, *,
                       sigma_min: float = 0.0, x0: jax.Array | None = None,
                       t: jax.Array | None = None) -> jax.Array:
    """|v(x_t, t) - u_t|^2 per example [B], t ~ U(0, 1), x_0 ~ N(0, I) unless given (reflow
    passes the noise that produced x_1).

    Drawn from ``rng`` as ``k_t, k_0 = jax.random.split(rng)``, ``t = jax.random.uniform(k_t,
    (B,), x1.dtype)``, ``x0 = jax.random.normal(k_0, x1.shape, x1.dtype)``; each one given
    (``t``, ``x0``) is used in place of its draw (a model draws them through
    :func:`genjax.core.random.batch_draw`, so that they do not depend on how the batch is
    split over devices); with both given ``rng`` may be None."""
    if t is None or x0 is None:
        k_t, k_0 = jax.random.split(rng)
        if t is None:
            t = jax.random.uniform(k_t, (x1.shape[0],), x1.dtype)
        if x0 is None:
            x0 = jax.random.normal(k_0, x1.shape, x1.dtype)
    x_t, u_t = conditional_path(x0, x1, t, sigma_min)
    return sum_event((velocity_fn(x_t, t) - u_t) ** 2)


def ot_coupling(x0: jax.Array, x1: jax.Array) -> jax.Array:
    """x0 [B, ...] permuted so that the pairs (x0[sigma(i)], x1[i]) minimise
    sum_i |x1_i - x0_sigma(i)|^2 over the permutations sigma of the batch (event dims
    flattened): the minibatch OT coupling of noise and data.

    Since sum_i |x1_i - x0_sigma(i)|^2 = sum_i |x1_i|^2 + sum_j |x0_j|^2
    - 2 sum_i <x1_i, x0_sigma(i)>, the assignment runs on the cost -<x1_i, x0_j> [B, B]
    (one matmul, no [B, B, D] differences). No gradient flows through sigma."""
    chex.assert_equal_shape([x0, x1])
    a = jax.lax.stop_gradient(x1.reshape(x1.shape[0], -1))
    b = jax.lax.stop_gradient(x0.reshape(x0.shape[0], -1))
    cost = -jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
    return x0[linear_sum_assignment(cost)]


def _scalar_time(velocity_fn: Velocity):
    return lambda x, t: velocity_fn(x, jnp.full(x.shape[:1], t, x.dtype))


def sample(velocity_fn: Velocity, x0: jax.Array, *, num_steps: int | jax.Array,
           method: str = "heun", after_step=None) -> jax.Array:
    """x_1 from noise x_0 along dx/dt = v(x, t), t from 0 to 1 (``method`` euler or heun;
    ``num_steps`` may be traced; ``after_step`` as in :func:`genjax.core.ode.heun`)."""
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    integrate = ode.heun if method == "heun" else ode.euler
    return integrate(_scalar_time(velocity_fn), x0, 0.0, 1.0, num_steps, after_step=after_step)


def reflow_pairs(velocity_fn: Velocity, rng: jax.Array, shape: tuple, *,
                 num_steps: int) -> tuple[jax.Array, jax.Array]:
    """(x_0, x_1 = ODE(x_0)): the coupling a trained flow defines, to train the next one on."""
    x0 = jax.random.normal(rng, shape)
    return x0, sample(velocity_fn, x0, num_steps=num_steps)


def log_prob_with_stats(velocity_fn: Velocity, x: jax.Array, rng=None, *,
                        trace: str = "exact", num_steps: int | jax.Array = 100,
                        solver: str = "rk4", rtol: float = 1e-5,
                        atol: float = 1e-5) -> tuple[jax.Array, dict]:
    """(log p_1(x) [B] in nats, {"nfe": int32 [B]}): the ODE from t = 1 back to 0 with the
    divergence, and the standard normal density of the noise it reaches; ``solver`` "rk4"
    (``num_steps`` fixed steps) or adaptive "tsit5" / "dopri5" (``rtol``, ``atol``), as
    :func:`genjax.core.ode.log_prob_with_stats`."""
    def normal_logp(z):
        return sum_event(gaussian_log_prob(z, 0.0, 0.0))

    return ode.log_prob_with_stats(_scalar_time(velocity_fn), x, 1.0, 0.0, normal_logp, rng,
                                   trace=trace, num_steps=num_steps, solver=solver,
                                   rtol=rtol, atol=atol)


def log_prob(velocity_fn: Velocity, x: jax.Array, rng=None, *, trace: str = "exact",
             num_steps: int | jax.Array = 100, solver: str = "rk4", rtol: float = 1e-5,
             atol: float = 1e-5) -> jax.Array:
    """log p_1(x) [B] in nats: the first output of :func:`log_prob_with_stats`."""
    return log_prob_with_stats(velocity_fn, x, rng, trace=trace, num_steps=num_steps,
                               solver=solver, rtol=rtol, atol=atol)[0]
