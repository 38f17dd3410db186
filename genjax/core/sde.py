"""Score-based generative modelling through SDEs (Song et al., 2021), as pure functions.

A forward SDE dx = f(x, t) dt + g(t) dw on t in [0, T = 1] turns data into noise; its
marginals are Gaussian given x_0, ``marginal_prob(x0, t) = (mean, std)``. With the score
s(x, t) = grad_x log p_t(x) (a network, or exact in tests):

- the reverse SDE       dx = [f(x, t) - g(t)^2 s(x, t)] dt + g(t) dw_bar   (t from 1 to 0),
- the probability-flow ODE  dx/dt = v(x, t) = f(x, t) - 1/2 g(t)^2 s(x, t),

which has the same marginals p_t; along it d log p_t(x_t) / dt = -div v(x_t, t), so

    log p_0(x) = log p_1(x_1) + int_0^1 div v(x_t, t) dt,

exactly ("exact" trace, by forward-mode Jacobian; for small dimensions) or in expectation
(Hutchinson: div v = E_e[e^T (dv/dx) e], e Rademacher, fixed along the path); the
integration is :mod:`genjax.core.ode`, shared with flow matching.

SDEs (beta(t) = beta_min + t (beta_max - beta_min), B(t) = int_0^t beta):
- ``VPSDE``:    f = -1/2 beta(t) x, g = sqrt(beta(t)); mean e^{-B/2} x_0, std sqrt(1 - e^{-B}).
  The discrete DDPM chain with beta_i = beta(i / N) / N is its Euler discretisation.
- ``SubVPSDE``: same f, g = sqrt(beta(t) (1 - e^{-2 B(t)})); mean e^{-B/2} x_0, std 1 - e^{-B}.
- ``VESDE``:    f = 0, g = sigma(t) sqrt(2 log(sigma_max / sigma_min)) with
  sigma(t) = sigma_min (sigma_max / sigma_min)^t; mean x_0, std sigma(t) (x_0 + N(0, sigma_min^2)
  at t = 0 is the data at the smallest noise, as in NCSN).

Samplers run from t = 1 to t = ``eps`` on a uniform grid of ``num_steps`` steps, each one
``lax.fori_loop`` (``num_steps`` may be traced, so one compiled sampler serves every step
count): Euler-Maruyama on the reverse SDE, predictor-corrector (an Euler-Maruyama predictor
and ``corrector_steps`` (static) Langevin corrector moves whose step is set by the
signal-to-noise ratio ``snr``: eps_L = 2 (snr |z| / |s|)^2), and Heun on the probability-flow
ODE; step i draws its noise from ``jax.random.fold_in(rng, i)``. The likelihood integrates the
same ODE by fixed-step RK4 or an adaptive solver (:func:`genjax.core.ode.log_prob_with_stats`).
Every array is a batch [B, ...]; ``t`` is a scalar or [B].
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from genjax.core import ode
from genjax.core.batch import per_example, sum_event
from genjax.core.likelihoods import gaussian_log_prob

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]     # (x [B, ...], t [B]) -> score


@dataclasses.dataclass(frozen=True)
class VPSDE:
    """Variance preserving: the continuous DDPM."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral(self, t):                   # B(t) = int_0^t beta
        return self.beta_min * t + 0.5 * t ** 2 * (self.beta_max - self.beta_min)

    def sde(self, x, t):
        """(f(x, t), g(t))."""
        beta = per_example(self.beta(t), x)
        return -0.5 * beta * x, jnp.sqrt(beta)

    def marginal_prob(self, x0, t):
        b = per_example(self.integral(t), x0)
        return jnp.exp(-0.5 * b) * x0, jnp.sqrt(-jnp.expm1(-b))

    def prior_std(self) -> float:
        return 1.0


@dataclasses.dataclass(frozen=True)
class SubVPSDE(VPSDE):
    """The VP drift with a smaller diffusion: its variance is (1 - e^{-B})^2 <= 1 - e^{-B}."""

    def sde(self, x, t):
        drift, _ = VPSDE.sde(self, x, t)
        beta = per_example(self.beta(t), x)
        b = per_example(self.integral(t), x)
        return drift, jnp.sqrt(beta * -jnp.expm1(-2.0 * b))

    def marginal_prob(self, x0, t):
        b = per_example(self.integral(t), x0)
        return jnp.exp(-0.5 * b) * x0, -jnp.expm1(-b)


@dataclasses.dataclass(frozen=True)
class VESDE:
    """Variance exploding: the continuous NCSN."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sde(self, x, t):
        sigma = per_example(self.sigma(t), x)
        return jnp.zeros_like(x), sigma * math.sqrt(2.0 * math.log(self.sigma_max / self.sigma_min))

    def marginal_prob(self, x0, t):
        return x0, per_example(self.sigma(t), x0)

    def prior_std(self) -> float:
        return self.sigma_max


SDE = VPSDE | SubVPSDE | VESDE


def prior_sampling(sde: SDE, rng: jax.Array, shape: tuple) -> jax.Array:
    """x_1 ~ p_1 = N(0, prior_std^2 I)."""
    return sde.prior_std() * jax.random.normal(rng, shape)


def prior_logp(sde: SDE, z: jax.Array) -> jax.Array:
    """log N(z; 0, prior_std^2 I) per example [B], in nats."""
    return sum_event(gaussian_log_prob(z, 0.0, math.log(sde.prior_std())))


def reverse_drift(sde: SDE, score_fn: ScoreFn, x, t, *, ode: bool = False):
    """f - g^2 s (reverse SDE) or f - 1/2 g^2 s (probability-flow ODE); and g."""
    drift, g = sde.sde(x, t)
    weight = 0.5 if ode else 1.0
    return drift - weight * g ** 2 * score_fn(x, t), g


def _grid(i, num_steps, eps: float):
    """Time t_i = (1 - i / N) + eps i / N of 1 = t_0 > ... > t_{N-1} (``jnp.linspace(1, eps,
    N + 1)``'s formula, at one i so that N may be traced) and the step dt = (1 - eps) / N."""
    s = i / num_steps
    return (1.0 - s) + eps * s, (1.0 - eps) / num_steps


def euler_maruyama(sde: SDE, score_fn: ScoreFn, x1, rng, *, num_steps: int | jax.Array,
                   eps: float = 1e-3, after_step=None):
    """The reverse SDE from x_1 by Euler-Maruyama: x <- x - (f - g^2 s) dt + g sqrt(dt) z;
    the last step adds no noise (its mean is returned). The predictor-corrector sampler
    without corrector moves."""
    return predictor_corrector(sde, score_fn, x1, rng, num_steps=num_steps, corrector_steps=0,
                               eps=eps, after_step=after_step)


def predictor_corrector(sde: SDE, score_fn: ScoreFn, x1, rng, *, num_steps: int | jax.Array,
                        corrector_steps: int = 1, snr: float = 0.16, eps: float = 1e-3,
                        after_step=None):
    """Euler-Maruyama predictor + Langevin corrector at each time: the corrector moves
    x <- x + eps_L s + sqrt(2 eps_L) z with eps_L = 2 (snr |z| / |s|)^2 (norms averaged over
    the batch). ``num_steps`` may be traced, ``corrector_steps`` is static.
    ``after_step(x, t_next, i)`` (:func:`genjax.core.ode.heun`) maps the state after step i,
    at t_next = t_{i+1} (eps after the last step), before the next step's corrector."""

    def correct(x, t, key):
        def move(x, k):
            s = score_fn(x, t)
            z = jax.random.normal(k, x.shape, x.dtype)
            # norms averaged over the batch, as score_sde does: per-example norms of a
            # low-dimensional x can be near 0 and would give a huge step
            ratio = jnp.mean(jnp.sqrt(sum_event(z ** 2))) / jnp.maximum(
                jnp.mean(jnp.sqrt(sum_event(s ** 2))), 1e-20)
            step = 2.0 * (snr * ratio) ** 2
            return x + step * s + jnp.sqrt(2.0 * step) * z, None

        x, _ = jax.lax.scan(move, x, jax.random.split(key, corrector_steps))
        return x

    def step(i, x):
        t, dt = _grid(i, num_steps, eps)
        k_c, k_p = jax.random.split(jax.random.fold_in(rng, i))
        tb = jnp.full(x.shape[:1], t)
        x = correct(x, tb, k_c)
        drift, g = reverse_drift(sde, score_fn, x, tb)
        mean = x - drift * dt
        noise = g * jnp.sqrt(dt) * jax.random.normal(k_p, x.shape, x.dtype)
        x = jnp.where(i == num_steps - 1, mean, mean + noise)
        return x if after_step is None else after_step(x, t - dt, i)

    return jax.lax.fori_loop(0, num_steps, step, x1)


def ode_sample(sde: SDE, score_fn: ScoreFn, x1, *, num_steps: int | jax.Array,
               eps: float = 1e-3, after_step=None):
    """The probability-flow ODE from t = 1 to eps by Heun's method (2 score calls a step;
    ``num_steps`` may be traced; ``after_step`` as in :func:`genjax.core.ode.heun`)."""

    def velocity(xb, t):
        return reverse_drift(sde, score_fn, xb, jnp.full(xb.shape[:1], t), ode=True)[0]

    return ode.heun(velocity, x1, 1.0, eps, num_steps, after_step=after_step)


def ode_log_prob_with_stats(sde: SDE, score_fn: ScoreFn, x, rng=None, *, trace: str = "exact",
                            num_steps: int | jax.Array = 100, eps: float = 1e-3,
                            solver: str = "rk4", rtol: float = 1e-5, atol: float = 1e-5):
    """(log p_eps(x) [B] in nats, {"nfe": int32 [B]}) through the probability-flow ODE: x is
    carried from eps to 1 together with int div v dt by ``solver``, "rk4" with ``num_steps``
    fixed steps or adaptive "tsit5" / "dopri5" with ``rtol``, ``atol``
    (:func:`genjax.core.ode.log_prob_with_stats`); ``trace`` "exact" (forward-mode Jacobian,
    D passes) or "hutchinson" (needs ``rng``)."""

    def velocity(xb, t):
        return reverse_drift(sde, score_fn, xb, jnp.full(xb.shape[:1], t), ode=True)[0]

    return ode.log_prob_with_stats(velocity, x, eps, 1.0, lambda z: prior_logp(sde, z), rng,
                                   trace=trace, num_steps=num_steps, solver=solver,
                                   rtol=rtol, atol=atol)


def ode_log_prob(sde: SDE, score_fn: ScoreFn, x, rng=None, *, trace: str = "exact",
                 num_steps: int | jax.Array = 100, eps: float = 1e-3, solver: str = "rk4",
                 rtol: float = 1e-5, atol: float = 1e-5):
    """log p_eps(x) [B] in nats: the first output of :func:`ode_log_prob_with_stats`."""
    return ode_log_prob_with_stats(sde, score_fn, x, rng, trace=trace, num_steps=num_steps,
                                   eps=eps, solver=solver, rtol=rtol, atol=atol)[0]


def denoising_score_matching_loss(sde: SDE, score_fn: ScoreFn, x0, rng, *, eps: float = 1e-5,
                                  t=None, noise=None):
    """E_{t ~ U(eps, 1)} E_{z} |std(t) s(a(t) x_0 + std(t) z, t) + z|^2 per example [B]: the
    denoising score matching objective (Vincent, 2011) weighted by lambda(t) = std(t)^2,
    minimised by the score of p_t, since grad_x log q(x_t | x_0) = -z / std(t).

    The times t [B] and the noise z (shape of x_0) are drawn from ``rng`` as
    ``k_t, k_z = jax.random.split(rng)``, ``t = jax.random.uniform(k_t, (B,), minval=eps,
    maxval=1.0)``, ``z = jax.random.normal(k_z, x0.shape, x0.dtype)``, unless given as ``t``
    and ``noise`` (a model draws them through :func:`genjax.core.random.batch_draw`, so that
    they do not depend on how the batch is split over devices); ``rng`` may then be None."""
    if t is None or noise is None:
        k_t, k_z = jax.random.split(rng)
        if t is None:
            t = jax.random.uniform(k_t, (x0.shape[0],), minval=eps, maxval=1.0)
        if noise is None:
            noise = jax.random.normal(k_z, x0.shape, x0.dtype)
    mean, std = sde.marginal_prob(x0, t)
    return sum_event((std * score_fn(mean + std * noise, t) + noise) ** 2)
