"""ODE integration for continuous flows: samplers and the instantaneous change of variables,
shared by the probability-flow ODE of score SDEs and by flow matching.

For dx/dt = v(x, t), the density along a trajectory obeys d log p_t(x_t) / dt = -div v(x_t, t)
(Chen et al., 2018), so for a flow that carries data (at t_data) to noise (at t_noise)

    log p_data(x) = log p_noise(x_noise) + int_{t_data}^{t_noise} div v(x_t, t) dt.

The divergence is exact (the trace of the forward-mode Jacobian, one pass per dimension:
small D) or Hutchinson's estimate e^T (dv/dx) e with one Rademacher probe e per example,
held fixed along the path (an unbiased estimate of the same integral).

Fixed steps. ``euler``, ``heun`` and RK4 (the likelihood's ``solver = "rk4"``) take
``num_steps`` equal steps dt = (t_end - t_start) / num_steps at the times
t_i = t_start + i dt, i = 0 .. num_steps - 1, in one ``lax.fori_loop``; ``num_steps`` may be a
traced integer, so one compiled function serves every step count (a Python int gives a scan,
which reverse-mode differentiation can go through; a traced one a while loop, which it cannot).

Adaptive steps (the likelihood only, ``solver = "tsit5"`` or ``"dopri5"``, through the
optional ``diffrax``: ``pip install genjax[ode]``). Each example's augmented state
(x, int div v dt) is integrated on its own (``vmap``), so its steps and result do not depend
on the rest of the batch, by an embedded Runge-Kutta pair of order 5(4) whose step h is
accepted when the error estimate err satisfies |err_j| <= atol + rtol max(|y_j|, |y'_j|)
(RMS norm over the state) and resized by a PID controller (``diffrax.PIDController``). Both
pairs have 7 stages and reuse the last one as the next step's first (FSAL), so a solve of n
attempted steps (accepted or rejected) makes nfe = 1 + 6 n evaluations of the augmented
field (each one forward-mode pass that gives v and its divergence). At most ``MAX_STEPS``
steps: an example that needs more gets NaN. No host callbacks in either mode.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Velocity = Callable[[jax.Array, jax.Array], jax.Array]    # (x [B, ...], scalar t) -> [B, ...]

SOLVERS = ("rk4", "tsit5", "dopri5")      # the likelihood's: fixed-step RK4 | adaptive 5(4)
MAX_STEPS = 4096                          # adaptive: most steps per example before NaN
_FSAL_STAGES = {"tsit5": 6, "dopri5": 6}  # new evaluations per attempted step


AfterStep = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]   # (x, t_next, i) -> x


def _after(after_step: AfterStep | None, x, t_next, i):
    return x if after_step is None else after_step(x, t_next, i)


def heun(velocity: Velocity, x: jax.Array, t_start: float, t_end: float,
         num_steps: int | jax.Array, *, after_step: AfterStep | None = None) -> jax.Array:
    """x(t_end) from x(t_start) by Heun's method (2 evaluations a step); ``num_steps`` may be
    traced. ``after_step(x, t_next, i)``, if given, maps the state after step i (at time
    t_next = t_start + (i + 1) dt) to the state the next step starts from (conditional
    sampling replaces a known part there)."""
    dt = (t_end - t_start) / num_steps

    def step(i, x):
        t = t_start + i * dt
        k1 = velocity(x, t)
        k2 = velocity(x + dt * k1, t + dt)
        return _after(after_step, x + 0.5 * dt * (k1 + k2), t + dt, i)

    return jax.lax.fori_loop(0, num_steps, step, x)


def euler(velocity: Velocity, x: jax.Array, t_start: float, t_end: float,
          num_steps: int | jax.Array, *, after_step: AfterStep | None = None) -> jax.Array:
    """x(t_end) from x(t_start) by Euler's method (1 evaluation a step); ``num_steps`` may be
    traced; ``after_step`` as in :func:`heun`."""
    dt = (t_end - t_start) / num_steps

    def step(i, x):
        t = t_start + i * dt
        return _after(after_step, x + dt * velocity(x, t), t + dt, i)

    return jax.lax.fori_loop(0, num_steps, step, x)


def _field_fn(velocity: Velocity, x: jax.Array, trace: str, rng):
    """(field, probe): field(xb [b, ...], t, eb) -> (v [b, ...], div [b]), the velocity and
    the exact trace of dv/dx ("exact", eb None) or e^T (dv/dx) e with the probes eb [b, ...]
    ("hutchinson"), from one linearization of v per example (v is the primal of the same
    forward-mode pass, not a second call); probe is None or one Rademacher e per example of
    x, drawn once from ``rng``."""
    shape = x.shape[1:]

    def v_single(xi, t):
        return velocity(xi[None], t)[0]

    if trace == "exact":
        def field(xb, t, eb):
            def one(xi):
                flat = xi.ravel()
                v, jvp = jax.linearize(lambda y: v_single(y.reshape(shape), t).ravel(), flat)
                jac = jax.vmap(jvp)(jnp.eye(flat.size, dtype=flat.dtype))   # rows: J e_k
                return v.reshape(shape), jnp.trace(jac)
            return jax.vmap(one)(xb)
        return field, None
    if trace == "hutchinson":
        if rng is None:
            raise ValueError("the Hutchinson estimator needs rng")

        def field(xb, t, eb):
            def one(xi, e):
                v, jv = jax.jvp(lambda y: v_single(y, t), (xi,), (e,))
                return v, jnp.sum(jv * e)
            return jax.vmap(one)(xb, eb)
        return field, jax.random.rademacher(rng, x.shape, x.dtype)
    raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")


def _rk4(field, probe, x, t_start, t_end, num_steps):
    """(x(t_end), int div v dt [B]) by RK4 with ``num_steps`` (maybe traced) equal steps."""
    dt = (t_end - t_start) / num_steps

    def dynamics(state, t):
        return field(state[0], t, probe)

    def shifted(state, k, h):
        return state[0] + h * k[0], state[1] + h * k[1]

    def rk4(i, state):
        t = t_start + i * dt
        k1 = dynamics(state, t)
        k2 = dynamics(shifted(state, k1, 0.5 * dt), t + 0.5 * dt)
        k3 = dynamics(shifted(state, k2, 0.5 * dt), t + 0.5 * dt)
        k4 = dynamics(shifted(state, k3, dt), t + dt)
        return tuple(s + dt / 6 * (a + 2 * b + 2 * c + d)
                     for s, a, b, c, d in zip(state, k1, k2, k3, k4))

    return jax.lax.fori_loop(0, num_steps, rk4, (x, jnp.zeros(x.shape[0], x.dtype)))


def _adaptive(field, probe, x, t_start, t_end, solver, rtol, atol, max_steps):
    """(x(t_end), int div v dt [B], nfe int32 [B]) by diffrax's ``solver``, each example on
    its own adaptive grid (module doc); NaN where ``max_steps`` did not suffice."""
    try:
        import diffrax
    except ImportError as err:
        raise ImportError(f"the adaptive likelihood solver {solver!r} needs the optional "
                          "dependency diffrax: pip install genjax[ode] (from a checkout: "
                          "pip install -e '.[ode]')") from err
    method = diffrax.Tsit5() if solver == "tsit5" else diffrax.Dopri5()
    controller = diffrax.PIDController(rtol=rtol, atol=atol)

    def one(xi, ei):
        def vector_field(t, state, args):
            eb = None if ei is None else ei[None]
            v, div = field(state[0][None], t, eb)
            return v[0], div[0]

        sol = diffrax.diffeqsolve(diffrax.ODETerm(vector_field), method, t_start, t_end, None,
                                  (xi, jnp.zeros((), xi.dtype)), stepsize_controller=controller,
                                  max_steps=max_steps, throw=False)
        ok = sol.result == diffrax.RESULTS.successful
        x_end, integral = (s[-1] for s in sol.ys)
        nfe = 1 + _FSAL_STAGES[solver] * sol.stats["num_steps"]
        return x_end, jnp.where(ok, integral, jnp.nan), nfe.astype(jnp.int32)

    return jax.vmap(one)(x, probe)


def integrate_with_divergence(velocity: Velocity, x: jax.Array, t_start: float, t_end: float,
                              *, trace: str = "exact", rng=None,
                              num_steps: int | jax.Array = 100):
    """(x(t_end), int_{t_start}^{t_end} div v(x_t, t) dt [B]) by RK4 with ``num_steps``
    (maybe traced) equal steps."""
    field, probe = _field_fn(velocity, x, trace, rng)
    return _rk4(field, probe, x, t_start, t_end, num_steps)


def log_prob_with_stats(velocity: Velocity, x: jax.Array, t_data: float, t_noise: float,
                        noise_logp: Callable[[jax.Array], jax.Array], rng=None, *,
                        trace: str = "exact", num_steps: int | jax.Array = 100,
                        solver: str = "rk4", rtol: float = 1e-5, atol: float = 1e-5,
                        max_steps: int = MAX_STEPS) -> tuple[jax.Array, dict]:
    """(log p_data(x) [B], {"nfe": int32 [B]}): log p_data(x) = log p_noise(x_noise) +
    int_{t_data}^{t_noise} div v dt, by ``solver`` (module doc): "rk4", ``num_steps`` (maybe
    traced) equal steps, nfe = 4 num_steps; "tsit5" or "dopri5", adaptive with tolerances
    ``rtol`` and ``atol`` and at most ``max_steps`` steps (NaN beyond), nfe = 1 + 6 (steps
    attempted), ``num_steps`` unused. nfe counts evaluations of v with its divergence."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
    field, probe = _field_fn(velocity, x, trace, rng)
    if solver == "rk4":
        x_noise, integral = _rk4(field, probe, x, t_data, t_noise, num_steps)
        nfe = jnp.full(x.shape[0], 4 * num_steps, jnp.int32)
    else:
        x_noise, integral, nfe = _adaptive(field, probe, x, t_data, t_noise,
                                           solver, rtol, atol, max_steps)
    return noise_logp(x_noise) + integral, {"nfe": nfe}


def log_prob(velocity: Velocity, x: jax.Array, t_data: float, t_noise: float,
             noise_logp: Callable[[jax.Array], jax.Array], rng=None, *, trace: str = "exact",
             num_steps: int | jax.Array = 100, solver: str = "rk4", rtol: float = 1e-5,
             atol: float = 1e-5, max_steps: int = MAX_STEPS) -> jax.Array:
    """log p_data(x) [B] = log p_noise(x_noise) + int_{t_data}^{t_noise} div v dt: the first
    output of :func:`log_prob_with_stats`, which also counts the evaluations."""
    return log_prob_with_stats(velocity, x, t_data, t_noise, noise_logp, rng, trace=trace,
                               num_steps=num_steps, solver=solver, rtol=rtol, atol=atol,
                               max_steps=max_steps)[0]
