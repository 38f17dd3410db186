"""Fixed-step ODE integration for continuous flows: samplers and the instantaneous change of
variables, shared by the probability-flow ODE of score SDEs and by flow matching.

For dx/dt = v(x, t), the density along a trajectory obeys d log p_t(x_t) / dt = -div v(x_t, t)
(Chen et al., 2018), so for a flow that carries data (at t_data) to noise (at t_noise)

    log p_data(x) = log p_noise(x_noise) + int_{t_data}^{t_noise} div v(x_t, t) dt.

The divergence is exact (the trace of the forward-mode Jacobian, one pass per dimension:
small D) or Hutchinson's estimate e^T (dv/dx) e with one Rademacher probe e per example,
held fixed along the path (an unbiased estimate of the same integral). Integration is RK4
with ``num_steps`` equal steps in one ``lax.scan``; no host callbacks.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Velocity = Callable[[jax.Array, jax.Array], jax.Array]    # (x [B, ...], scalar t) -> [B, ...]


def heun(velocity: Velocity, x: jax.Array, t_start: float, t_end: float,
         num_steps: int) -> jax.Array:
    """x(t_end) from x(t_start) by Heun's method (2 evaluations a step)."""
    dt = (t_end - t_start) / num_steps

    def step(x, t):
        k1 = velocity(x, t)
        k2 = velocity(x + dt * k1, t + dt)
        return x + 0.5 * dt * (k1 + k2), None

    x, _ = jax.lax.scan(step, x, t_start + dt * jnp.arange(num_steps))
    return x


def euler(velocity: Velocity, x: jax.Array, t_start: float, t_end: float,
          num_steps: int) -> jax.Array:
    """x(t_end) from x(t_start) by Euler's method (1 evaluation a step)."""
    dt = (t_end - t_start) / num_steps

    def step(x, t):
        return x + dt * velocity(x, t), None

    x, _ = jax.lax.scan(step, x, t_start + dt * jnp.arange(num_steps))
    return x


def _divergence_fn(velocity: Velocity, x: jax.Array, trace: str, rng):
    shape = x.shape[1:]

    def v_single(xi, t):
        return velocity(xi[None], t)[0]

    if trace == "exact":
        def divergence(xb, t):
            def one(xi):
                jac = jax.jacfwd(lambda y: v_single(y.reshape(shape), t).ravel())(xi.ravel())
                return jnp.trace(jac)
            return jax.vmap(one)(xb)
        return divergence
    if trace == "hutchinson":
        if rng is None:
            raise ValueError("the Hutchinson estimator needs rng")
        probe = jax.random.rademacher(rng, x.shape, x.dtype)

        def divergence(xb, t):
            def one(xi, e):
                _, jv = jax.jvp(lambda y: v_single(y, t), (xi,), (e,))
                return jnp.sum(jv * e)
            return jax.vmap(one)(xb, probe)
        return divergence
    raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")


def integrate_with_divergence(velocity: Velocity, x: jax.Array, t_start: float, t_end: float,
                              *, trace: str = "exact", rng=None, num_steps: int = 100):
    """(x(t_end), int_{t_start}^{t_end} div v(x_t, t) dt [B]) by RK4."""
    divergence = _divergence_fn(velocity, x, trace, rng)
    dt = (t_end - t_start) / num_steps

    def dynamics(state, t):
        return velocity(state[0], t), divergence(state[0], t)

    def shifted(state, k, h):
        return state[0] + h * k[0], state[1] + h * k[1]

    def rk4(state, t):
        k1 = dynamics(state, t)
        k2 = dynamics(shifted(state, k1, 0.5 * dt), t + 0.5 * dt)
        k3 = dynamics(shifted(state, k2, 0.5 * dt), t + 0.5 * dt)
        k4 = dynamics(shifted(state, k3, dt), t + dt)
        return tuple(s + dt / 6 * (a + 2 * b + 2 * c + d)
                     for s, a, b, c, d in zip(state, k1, k2, k3, k4)), None

    init = (x, jnp.zeros(x.shape[0], x.dtype))
    (x_end, integral), _ = jax.lax.scan(rk4, init, t_start + dt * jnp.arange(num_steps))
    return x_end, integral


def log_prob(velocity: Velocity, x: jax.Array, t_data: float, t_noise: float,
             noise_logp: Callable[[jax.Array], jax.Array], rng=None, *, trace: str = "exact",
             num_steps: int = 100) -> jax.Array:
    """log p_data(x) [B] = log p_noise(x_noise) + int_{t_data}^{t_noise} div v dt."""
    x_noise, integral = integrate_with_divergence(velocity, x, t_data, t_noise, trace=trace,
                                                  rng=rng, num_steps=num_steps)
    return noise_logp(x_noise) + integral
