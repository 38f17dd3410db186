"""Denoising diffusion (DDPM, DDIM): noise schedules, the forward process, reverse steps, losses.

Every function here is pure ``jax.numpy``: no Flax, no state, no randomness except
through an explicit ``key``. Notation of the notes (Ho et al., 2020):

* ``beta_t`` the variance schedule, ``alpha_t = 1 - beta_t`` and
  ``alpha_bar_t = prod_{s <= t} alpha_s`` (a product; some notes write a sum by slip).
* The forward process ``q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)``, so
  ``q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)``, i.e.
  ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` with ``eps ~ N(0, I)``.
* ``eps_theta(x_t, t)`` the network's noise prediction; ``x0_hat`` and ``eps_hat``
  the predictions of ``x_0`` and ``eps`` it implies.
* ``SNR(t) = alpha_bar_t / (1 - alpha_bar_t)``.

Conventions shared by all functions:

* **Zero-based timesteps.** A schedule of ``T`` steps has indices ``t = 0, ..., T - 1``;
  index ``t`` is the paper's step ``t + 1``. So ``x_t`` at index 0 is the paper's
  ``x_1``, the first noisy latent, and ``x_0`` (the data) has no index of its own:
  where a function takes a *previous* timestep (:func:`ddim_step`), ``-1`` stands for
  the data, with ``alpha_bar_{-1} = 1``. Training draws ``t ~ U{0, ..., T - 1}``.
* **Batch on axis 0.** Data ``x: [B, ...]`` (images ``[B, H, W, C]``, points
  ``[B, D]``); a timestep ``t`` is an ``int`` array ``[B]`` (one per example) or a
  scalar (the same for all). Per-timestep coefficients are gathered by
  :func:`extract` and broadcast against ``x``.
* **Randomness through** :func:`genjax.core.random.batch_draw`, so a data-parallel
  step draws the same noise per example as a single-device one.
* **Nats**, and KL terms summed over the non-batch axes (one number per example).
* String options (``target``, ``variance``, ``kind``) are static Python strings;
  numbers (``eta``, guidance weight ``w``, ``gamma``) may be traced.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from genjax.core.likelihoods import gaussian_kl
from genjax.core.random import batch_draw

__all__ = [
    "DiffusionSchedule",
    "cosine_beta_schedule",
    "ddim_reverse_step",
    "ddim_step",
    "ddim_timesteps",
    "ddim_timestep",
    "ddpm_step",
    "extract",
    "linear_beta_schedule",
    "make_schedule",
    "model_output_to_x0_eps",
    "normal_kl",
    "predict_eps_from_v",
    "predict_eps_from_x0",
    "predict_v",
    "predict_x0_from_eps",
    "predict_x0_from_v",
    "prior_kl",
    "q_posterior",
    "q_sample",
    "sigmoid_beta_schedule",
    "snr_weight",
    "vlb_term",
]

TARGETS = ("eps", "x0", "v")
_MAX_BETA = 0.999


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DiffusionSchedule:
    """The per-timestep constants of a discrete diffusion, all float32 arrays ``[T]``.

    A JAX pytree (every field is a leaf), so it can be passed into jitted functions.
    Build it with :func:`make_schedule` or one of the ``*_beta_schedule`` constructors;
    index ``t`` is the paper's step ``t + 1`` (module docstring).

    Attributes:
      betas: beta_t.
      alphas: alpha_t = 1 - beta_t.
      alphas_cumprod: alpha_bar_t = prod_{s <= t} alpha_s.
      alphas_cumprod_prev: alpha_bar_{t-1}, with alpha_bar_{-1} = 1.
      sqrt_alphas_cumprod: sqrt(alpha_bar_t).
      sqrt_one_minus_alphas_cumprod: sqrt(1 - alpha_bar_t).
      log_one_minus_alphas_cumprod: log(1 - alpha_bar_t).
      sqrt_recip_alphas_cumprod: 1 / sqrt(alpha_bar_t).
      sqrt_recipm1_alphas_cumprod: sqrt(1 / alpha_bar_t - 1).
      posterior_variance: beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t),
        the variance of q(x_{t-1} | x_t, x_0); 0 at t = 0.
      posterior_log_variance_clipped: log beta_tilde_t with the t = 0 entry (log 0)
        replaced by log beta_tilde_1.
      posterior_mean_coef1: beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t), the
        coefficient of x_0 in the posterior mean.
      posterior_mean_coef2: (1 - alpha_bar_{t-1}) sqrt(alpha_t) / (1 - alpha_bar_t), the
        coefficient of x_t.
      snr: SNR(t) = alpha_bar_t / (1 - alpha_bar_t).
    """

    betas: jax.Array
    alphas: jax.Array
    alphas_cumprod: jax.Array
    alphas_cumprod_prev: jax.Array
    sqrt_alphas_cumprod: jax.Array
    sqrt_one_minus_alphas_cumprod: jax.Array
    log_one_minus_alphas_cumprod: jax.Array
    sqrt_recip_alphas_cumprod: jax.Array
    sqrt_recipm1_alphas_cumprod: jax.Array
    posterior_variance: jax.Array
    posterior_log_variance_clipped: jax.Array
    posterior_mean_coef1: jax.Array
    posterior_mean_coef2: jax.Array
    snr: jax.Array

    @property
    def num_steps(self) -> int:
        """T, the number of timesteps (a static Python int, also under jit)."""
        return self.betas.shape[0]


jax.tree_util.register_dataclass(
    DiffusionSchedule,
    data_fields=[f.name for f in dataclasses.fields(DiffusionSchedule)],
    meta_fields=[],
)


def make_schedule(betas: ArrayLike) -> DiffusionSchedule:
    """The :class:`DiffusionSchedule` of a variance schedule ``betas: [T]``.

    Every derived quantity is computed once in float64 NumPy and stored as float32
    (so, e.g., ``1 - alpha_bar_t`` keeps its precision where alpha_bar_t is near 1).
    ``betas`` must be concrete (not traced), with ``0 < beta_t < 1`` and ``T >= 2``.
    """
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or betas.shape[0] < 2:
        raise ValueError(f"betas must have shape [T] with T >= 2, got {betas.shape}")
    if not np.all((betas > 0) & (betas < 1)):
        raise ValueError("betas must lie in (0, 1)")
    alphas = 1.0 - betas
    ab = np.cumprod(alphas)
    ab_prev = np.append(1.0, ab[:-1])
    one_minus_ab = -np.expm1(np.cumsum(np.log1p(-betas)))  # 1 - alpha_bar, no cancellation
    post_var = betas * (1.0 - ab_prev) / one_minus_ab
    arrays = dict(
        betas=betas,
        alphas=alphas,
        alphas_cumprod=ab,
        alphas_cumprod_prev=ab_prev,
        sqrt_alphas_cumprod=np.sqrt(ab),
        sqrt_one_minus_alphas_cumprod=np.sqrt(one_minus_ab),
        log_one_minus_alphas_cumprod=np.log(one_minus_ab),
        sqrt_recip_alphas_cumprod=np.sqrt(1.0 / ab),
        sqrt_recipm1_alphas_cumprod=np.sqrt(one_minus_ab / ab),
        posterior_variance=post_var,
        posterior_log_variance_clipped=np.log(np.append(post_var[1], post_var[1:])),
        posterior_mean_coef1=betas * np.sqrt(ab_prev) / one_minus_ab,
        posterior_mean_coef2=(1.0 - ab_prev) * np.sqrt(alphas) / one_minus_ab,
        snr=ab / one_minus_ab,
    )
    return DiffusionSchedule(**{k: jnp.asarray(v, jnp.float32) for k, v in arrays.items()})


def linear_beta_schedule(
    num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> DiffusionSchedule:
    """Ho et al. (2020): beta_t linear from ``beta_start`` to ``beta_end``.

    The endpoints are given for T = 1000 and scaled by ``1000 / num_steps`` (as in
    improved-diffusion), so a shorter schedule adds about as much noise in total and
    still ends near alpha_bar_T ~ 0 (T = 1000: alpha_bar_T ~ 4e-5). Betas are clipped
    at 0.999, which binds only for ``num_steps < 20`` with the defaults.
    """
    scale = 1000.0 / num_steps
    betas = np.linspace(scale * beta_start, scale * beta_end, num_steps, dtype=np.float64)
    return make_schedule(np.minimum(betas, _MAX_BETA))


def _betas_from_alpha_bar(alpha_bar: np.ndarray) -> np.ndarray:
    """beta_t = 1 - alpha_bar(t + 1) / alpha_bar(t) from alpha_bar at the T + 1 grid
    points 0, 1/T, ..., 1 (paper steps 0..T), clipped to at most 0.999."""
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], _MAX_BETA)


def cosine_beta_schedule(num_steps: int, s: float = 0.008) -> DiffusionSchedule:
    """Nichol & Dhariwal (2021): alpha_bar follows a squared cosine::

        alpha_bar(t) = f(t) / f(0),    f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2)

    for paper steps t = 0..T (so ``alphas_cumprod[t] = alpha_bar(t + 1)``), with
    beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1) clipped at 0.999 (it reaches 1 at
    t = T, where f(T) = 0). ``s`` keeps beta_1 from being too small near t = 0.
    """
    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    f = np.cos((t + s) / (1.0 + s) * math.pi / 2) ** 2
    return make_schedule(_betas_from_alpha_bar(f / f[0]))


def sigmoid_beta_schedule(
    num_steps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0
) -> DiffusionSchedule:
    """Sigmoid schedule (Jabri et al., 2022): alpha_bar falls along a sigmoid::

        alpha_bar(t) ∝ sigmoid(end / tau) - sigmoid(((t / T)(end - start) + start) / tau)

    for paper steps t = 0..T, normalized to alpha_bar(0) = 1; betas as for the cosine
    schedule (clipped at 0.999). A larger ``tau`` spreads the noise more evenly.
    """
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))
    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    v_start, v_end = sig(start / tau), sig(end / tau)
    ab = (v_end - sig((t * (end - start) + start) / tau)) / (v_end - v_start)
    return make_schedule(_betas_from_alpha_bar(ab / ab[0]))


# --------------------------------------------------------------------------------------
# Gathering per-timestep coefficients
# --------------------------------------------------------------------------------------


def _per_example(v: jax.Array, x_shape: Sequence[int]) -> jax.Array:
    """A scalar or per-example ``v: [B]`` shaped ``[B, 1, ..., 1]`` to broadcast
    against ``x: [B, ...]``."""
    if v.ndim == 0:
        return v
    if v.ndim != 1 or (len(x_shape) > 0 and v.shape[0] != x_shape[0]):
        raise ValueError(f"timesteps of shape {v.shape} do not match data of shape "
                         f"{tuple(x_shape)}: expected a scalar or [B]")
    return v.reshape(v.shape + (1,) * (len(x_shape) - 1))


def extract(a: jax.Array, t: ArrayLike, x_shape: Sequence[int]) -> jax.Array:
    """``a[t]`` reshaped to broadcast against data of shape ``x_shape = [B, ...]``.

    Args:
      a: per-timestep values ``[T]``, e.g. ``schedule.sqrt_alphas_cumprod``.
      t: int timesteps ``[B]`` (or a scalar, for all examples) in ``0..T-1``.
      x_shape: the data's shape ``[B, ...]``.

    Returns:
      ``[B, 1, ..., 1]`` (rank of ``x_shape``), or a scalar for a scalar ``t``; NaN
      where ``t`` is out of range.
    """
    return _per_example(_gather(a, t), x_shape)


def _gather(a: jax.Array, t: ArrayLike) -> jax.Array:
    """``a[t]``, NaN where t is outside ``0..T-1`` (rather than wrapping or clipping)."""
    t = jnp.asarray(t)
    return jnp.where(t >= 0, jnp.take(a, t, mode="fill", fill_value=jnp.nan), jnp.nan)


def _alpha_bar_terms(schedule: DiffusionSchedule, t: ArrayLike,
                     x_shape) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(alpha_bar_t, 1 - alpha_bar_t, log alpha_bar_t) broadcast against ``x_shape``, each
    to float32 relative precision, with t = -1 the data: (1, 0, 0)."""
    t = jnp.asarray(t)
    data = t < 0
    t = jnp.maximum(t, 0)
    ab = jnp.where(data, 1.0, _gather(schedule.alphas_cumprod, t))
    om = jnp.where(data, 0.0, jnp.square(_gather(schedule.sqrt_one_minus_alphas_cumprod, t)))
    log_ab = jnp.where(ab < 0.5, jnp.log(ab), jnp.log1p(-om))
    return tuple(_per_example(v, x_shape) for v in (ab, om, log_ab))


# --------------------------------------------------------------------------------------
# Forward process and its posterior
# --------------------------------------------------------------------------------------


def q_sample(schedule: DiffusionSchedule, x0: jax.Array, t: ArrayLike,
             noise: jax.Array) -> jax.Array:
    """A draw of q(x_t | x_0) by reparameterization::

        x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps

    Args:
      schedule: the diffusion schedule.
      x0: data ``[B, ...]``.
      t: timesteps ``[B]`` (or a scalar).
      noise: eps ``[B, ...]``, standard normal (drawn by the caller).

    Returns:
      x_t ``[B, ...]``.
    """
    return (extract(schedule.sqrt_alphas_cumprod, t, x0.shape) * x0
            + extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.shape) * noise)


def q_posterior(schedule: DiffusionSchedule, x0: jax.Array, x_t: jax.Array,
                t: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The forward-process posterior q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde I)::

        mu_tilde = beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t) x_0
                   + (1 - alpha_bar_{t-1}) sqrt(alpha_t) / (1 - alpha_bar_t) x_t
        beta_tilde = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)

    At ``t = 0`` the posterior is the point mass at x_0 (mean x_0, variance 0); its
    log-variance is reported clipped to log beta_tilde at index 1.

    Args:
      schedule: the diffusion schedule.
      x0, x_t: ``[B, ...]``.
      t: timesteps ``[B]`` (or a scalar).

    Returns:
      ``(mean, variance, log_variance)``, each ``[B, ...]`` (the variances broadcast).
    """
    shape = x_t.shape
    mean = (extract(schedule.posterior_mean_coef1, t, shape) * x0
            + extract(schedule.posterior_mean_coef2, t, shape) * x_t)
    var = jnp.broadcast_to(extract(schedule.posterior_variance, t, shape), shape)
    log_var = jnp.broadcast_to(extract(schedule.posterior_log_variance_clipped, t, shape),
                               shape)
    return mean, var, log_var


# --------------------------------------------------------------------------------------
# Conversions between eps, x0 and v predictions
# --------------------------------------------------------------------------------------


def predict_x0_from_eps(schedule: DiffusionSchedule, x_t: jax.Array, t: ArrayLike,
                        eps: jax.Array) -> jax.Array:
    """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t), shapes ``[B, ...]``."""
    return (extract(schedule.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
            - extract(schedule.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps)


def predict_eps_from_x0(schedule: DiffusionSchedule, x_t: jax.Array, t: ArrayLike,
                        x0: jax.Array) -> jax.Array:
    """eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t), shapes ``[B, ...]``.

    Ill-conditioned at small t, where 1 - alpha_bar_t is small: an error in x_0 is
    amplified by sqrt(SNR(t)).
    """
    return ((extract(schedule.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - x0)
            / extract(schedule.sqrt_recipm1_alphas_cumprod, t, x_t.shape))


def predict_v(schedule: DiffusionSchedule, x0: jax.Array, t: ArrayLike,
              eps: jax.Array) -> jax.Array:
    """The velocity target of Salimans & Ho (2022), shapes ``[B, ...]``::

        v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0
    """
    return (extract(schedule.sqrt_alphas_cumprod, t, x0.shape) * eps
            - extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.shape) * x0)


def predict_x0_from_v(schedule: DiffusionSchedule, x_t: jax.Array, t: ArrayLike,
                      v: jax.Array) -> jax.Array:
    """x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v, shapes ``[B, ...]``."""
    return (extract(schedule.sqrt_alphas_cumprod, t, x_t.shape) * x_t
            - extract(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * v)


def predict_eps_from_v(schedule: DiffusionSchedule, x_t: jax.Array, t: ArrayLike,
                       v: jax.Array) -> jax.Array:
    """eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v, shapes ``[B, ...]``."""
    return (extract(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * x_t
            + extract(schedule.sqrt_alphas_cumprod, t, x_t.shape) * v)


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")


def model_output_to_x0_eps(schedule: DiffusionSchedule, x_t: jax.Array, t: ArrayLike,
                           output: jax.Array, target: str) -> tuple[jax.Array, jax.Array]:
    """(x0_hat, eps_hat) from a network output that predicts ``target``.

    Args:
      schedule: the diffusion schedule.
      x_t: the network's input ``[B, ...]``.
      t: timesteps ``[B]`` (or a scalar).
      output: the network's output ``[B, ...]``: eps_theta (``"eps"``), x0_hat
        (``"x0"``) or v_hat (``"v"``).
      target: static string, ``"eps" | "x0" | "v"``.

    Returns:
      ``(x0_hat, eps_hat)``, each ``[B, ...]``, consistent with
      ``x_t = sqrt(alpha_bar_t) x0_hat + sqrt(1 - alpha_bar_t) eps_hat``.
    """
    _check_target(target)
    if target == "eps":
        return predict_x0_from_eps(schedule, x_t, t, output), output
    if target == "x0":
        return output, predict_eps_from_x0(schedule, x_t, t, output)
    return predict_x0_from_v(schedule, x_t, t, output), predict_eps_from_v(schedule, x_t, t,
                                                                           output)


# --------------------------------------------------------------------------------------
# Reverse steps
# --------------------------------------------------------------------------------------


def ddpm_step(schedule: DiffusionSchedule, x_t: jax.Array, t: ArrayLike, x0_hat: jax.Array,
              key: jax.Array, *, variance: str = "small",
              clip_x0: Optional[tuple[float, float]] = None) -> jax.Array:
    """One ancestral step x_{t-1} ~ p_theta(x_{t-1} | x_t) of Ho et al. (2020)::

        x_{t-1} = mu_tilde(x_t, x0_hat) + sigma_t z,    z ~ N(0, I),  z = 0 at t = 0

    with mu_tilde the mean of :func:`q_posterior` at x_0 = x0_hat (first clipped to
    ``clip_x0``, e.g. ``(-1, 1)`` for images) and sigma_t^2 = beta_tilde_t
    (``variance="small"``) or beta_t (``"large"``). With x0_hat from eps_theta this is
    the notes' update x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta) /
    sqrt(alpha_t) + sigma_t z. The final step (``t = 0``) returns the mean, per example.

    Args:
      schedule: the diffusion schedule.
      x_t: ``[B, ...]``.
      t: timesteps ``[B]`` (or a scalar) in ``0..T-1``.
      x0_hat: the model's prediction of x_0 ``[B, ...]``.
      key: PRNG key; z is drawn by :func:`batch_draw`.
      variance: static, ``"small"`` (beta_tilde) or ``"large"`` (beta).
      clip_x0: None or ``(low, high)``.

    Returns:
      x_{t-1} ``[B, ...]``.
    """
    if variance not in ("small", "large"):
        raise ValueError(f"variance must be 'small' or 'large', got {variance!r}")
    if clip_x0 is not None:
        x0_hat = jnp.clip(x0_hat, clip_x0[0], clip_x0[1])
    mean, post_var, _ = q_posterior(schedule, x0_hat, x_t, t)
    var = post_var if variance == "small" else extract(schedule.betas, t, x_t.shape)
    z = batch_draw(jax.random.normal, key, x_t.shape, x_t.dtype)
    nonzero = _per_example(jnp.asarray(t) > 0, x_t.shape)
    return mean + jnp.where(nonzero, jnp.sqrt(var), 0.0) * z


def ddim_step(schedule: DiffusionSchedule, x_t: jax.Array, t: ArrayLike, t_prev: ArrayLike,
              x0_hat: jax.Array, eps_hat: jax.Array, key: Optional[jax.Array], *,
              eta: ArrayLike = 0.0) -> jax.Array:
    """One DDIM step (Song et al., 2021) from timestep t to an earlier t_prev::

        x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma z
        sigma  = eta sqrt((1 - ab_prev) / (1 - ab) (1 - ab / ab_prev))

    with ab = alpha_bar_t, ab_prev = alpha_bar_{t_prev}, and ``t_prev = -1`` meaning
    ab_prev = 1: the last step, which returns x0_hat. ``eta = 0`` is the deterministic
    DDIM sampler (a discretization of the probability-flow ODE); ``eta = 1`` with
    ``t_prev = t - 1`` has sigma^2 = beta_tilde_t, the DDPM ancestral step.

    Args:
      schedule: the diffusion schedule.
      x_t: ``[B, ...]`` (enters only through x0_hat and eps_hat).
      t, t_prev: timesteps ``[B]`` (or scalars), ``-1 <= t_prev < t``.
      x0_hat, eps_hat: the model's predictions ``[B, ...]``, e.g. from
        :func:`model_output_to_x0_eps`.
      key: PRNG key for z (drawn by :func:`batch_draw`); may be None when ``eta`` is 0.
      eta: stochasticity, a float (may be traced).

    Returns:
      x_{t_prev} ``[B, ...]``.
    """
    shape = x_t.shape
    _, om, log_ab = _alpha_bar_terms(schedule, t, shape)
    ab_prev, om_prev, log_ab_prev = _alpha_bar_terms(schedule, t_prev, shape)
    # 1 - ab / ab_prev as -expm1(log ab - log ab_prev): accurate for adjacent steps.
    sigma2 = jnp.square(eta) * om_prev / om * -jnp.expm1(log_ab - log_ab_prev)
    sigma = jnp.sqrt(sigma2)
    direction = jnp.sqrt(jnp.maximum(om_prev - sigma2, 0.0))
    x_prev = jnp.sqrt(ab_prev) * x0_hat + direction * eps_hat
    if key is None:
        if not isinstance(eta, (int, float)) or eta != 0:
            raise ValueError("ddim_step needs a key unless eta is the constant 0")
        return x_prev
    z = batch_draw(jax.random.normal, key, shape, x_t.dtype)
    return x_prev + sigma * z


def ddim_reverse_step(schedule: DiffusionSchedule, x_t: jax.Array, t: ArrayLike,
                      t_next: ArrayLike, eps_hat: jax.Array) -> jax.Array:
    """DDIM inversion: the deterministic (eta = 0) update run forwards, t -> t_next > t::

        x0_hat = (x_t - sqrt(1 - ab) eps_hat) / sqrt(ab)
        x_next = sqrt(ab_next) x0_hat + sqrt(1 - ab_next) eps_hat

    the Euler step of the probability-flow ODE towards noise, so
    ``ddim_step(..., eta=0)`` from t_next back to t approximately undoes it (exactly as
    the step size goes to 0). ``t = -1`` starts from the data (ab = 1, x0_hat = x_t);
    there eps_hat is conventionally eps_theta(x_0, t_next).

    Args:
      schedule: the diffusion schedule.
      x_t: ``[B, ...]``.
      t, t_next: timesteps ``[B]`` (or scalars), ``-1 <= t < t_next <= T - 1``.
      eps_hat: the model's noise prediction at (x_t, t) ``[B, ...]``.

    Returns:
      x_{t_next} ``[B, ...]``.
    """
    shape = x_t.shape
    ab, om, _ = _alpha_bar_terms(schedule, t, shape)
    ab_next, om_next, _ = _alpha_bar_terms(schedule, t_next, shape)
    x0_hat = (x_t - jnp.sqrt(om) * eps_hat) / jnp.sqrt(ab)
    return jnp.sqrt(ab_next) * x0_hat + jnp.sqrt(om_next) * eps_hat


def ddim_timesteps(num_train_steps: int, num_sample_steps: int) -> tuple[jax.Array, jax.Array]:
    """Evenly spaced DDIM timesteps, descending, and the step each goes to.

    ``ts[i] = T - 1 - floor(i T / K)`` for ``i = 0..K-1``: the "trailing" spacing of
    Lin et al. (2024), which starts at the last timestep T - 1 so that the first step
    sees x_T ~ N(0, I), the distribution the sampler starts from (the "leading"
    ``floor((K - 1 - i) T / K)`` of the DDIM code starts at T - T/K, where the
    cosine schedule still has sqrt(alpha_bar) ~ 0.03 of signal). T = 1000, K = 50 gives
    999, 979, ..., 19; K = T gives every step. ``ts_prev[i] = ts[i + 1]`` and
    ``ts_prev[K - 1] = -1``, the final step to x_0. Both arguments are static Python
    ints (the number of sampling steps fixes the array shapes and the loop length).

    Returns:
      ``(ts, ts_prev)``, int32 ``[K]``.
    """
    if not 1 <= num_sample_steps <= num_train_steps:
        raise ValueError(f"need 1 <= num_sample_steps ({num_sample_steps}) <= "
                         f"num_train_steps ({num_train_steps})")
    ts = ddim_timestep(jnp.arange(num_sample_steps + 1, dtype=jnp.int32), num_train_steps,
                       num_sample_steps)
    return ts[:-1], ts[1:]


def ddim_timestep(i: ArrayLike, num_train_steps: int, num_sample_steps: ArrayLike) -> jax.Array:
    """The i-th timestep of :func:`ddim_timesteps`, ``T - 1 - floor(i T / K)``, or -1 (the
    data) for ``i >= K``. ``i`` and ``K`` may be traced (a sampler loop whose number of
    steps changes between calls without recompiling)."""
    i = jnp.asarray(i, jnp.int32)
    t = num_train_steps - 1 - (i * num_train_steps) // num_sample_steps
    return jnp.where(i < num_sample_steps, t, -1).astype(jnp.int32)


# --------------------------------------------------------------------------------------
# Loss terms
# --------------------------------------------------------------------------------------


def normal_kl(mean1: ArrayLike, logvar1: ArrayLike, mean2: ArrayLike,
              logvar2: ArrayLike) -> jax.Array:
    """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats::

        KL = 1/2 (logvar2 - logvar1 + exp(logvar1 - logvar2)
                  + (mean1 - mean2)^2 exp(-logvar2) - 1)

    (:func:`genjax.core.likelihoods.gaussian_kl` with log-variances: exactly zero
    when the two agree, never negative). Broadcasting, no reduction.
    """
    return gaussian_kl(mean1, 0.5 * jnp.asarray(logvar1), mean2, 0.5 * jnp.asarray(logvar2))


def _sum_event(x: jax.Array) -> jax.Array:
    return jnp.sum(x, axis=tuple(range(1, x.ndim)))


def vlb_term(schedule: DiffusionSchedule, x0: jax.Array, x_t: jax.Array, t: ArrayLike,
             model_mean: jax.Array, model_log_variance: ArrayLike) -> jax.Array:
    """The bound's term L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)).

    Summed over the non-batch axes, in nats. A term of the bound only for t > 0
    (paper steps 2..T); at t = 0 the bound has instead the decoder term
    -log p_theta(x_0 | x_1), the model's business (for images
    :func:`genjax.core.likelihoods.discretized_gaussian_log_prob` at ``model_mean``);
    there this function returns a meaningless number (it uses the clipped posterior
    log-variance) for the caller to replace with ``jnp.where(t == 0, ...)``.

    Args:
      schedule: the diffusion schedule.
      x0, x_t: ``[B, ...]``.
      t: timesteps ``[B]`` (or a scalar).
      model_mean, model_log_variance: p_theta's mean ``[B, ...]`` and log-variance
        (broadcastable to it).

    Returns:
      ``[B]`` nats.
    """
    true_mean, _, true_log_var = q_posterior(schedule, x0, x_t, t)
    return _sum_event(normal_kl(true_mean, true_log_var, model_mean, model_log_variance))


def prior_kl(schedule: DiffusionSchedule, x0: jax.Array) -> jax.Array:
    """L_T = KL(q(x_T | x_0) || N(0, I)), summed over the non-batch axes, nats ``[B]``.

    No parameters; small when alpha_bar_T ~ 0 (e.g. 2e-5 nats per dimension for the
    linear T = 1000 schedule and |x_0| = 1).
    """
    t = schedule.num_steps - 1
    mean = schedule.sqrt_alphas_cumprod[t] * x0
    log_var = schedule.log_one_minus_alphas_cumprod[t]
    return _sum_event(normal_kl(mean, log_var, 0.0, 0.0))


def snr_weight(schedule: DiffusionSchedule, t: ArrayLike, kind: str = "simple",
               gamma: ArrayLike = 5.0, target: str = "eps") -> jax.Array:
    """Per-example weights of the MSE on ``target`` at timesteps ``t``: ``[B]``.

    * ``"simple"``: 1, Ho et al.'s L_simple (for any target).
    * ``"min_snr"``: Min-SNR-gamma (Hang et al., 2023), the x_0-MSE weighted by
      min(SNR(t), gamma). The MSEs of the targets differ by fixed factors,
      ||eps - eps_hat||^2 = SNR ||x_0 - x0_hat||^2 and
      ||v - v_hat||^2 = (SNR + 1) ||x_0 - x0_hat||^2, so on each target::

          target "x0":   min(SNR, gamma)
          target "eps":  min(SNR, gamma) / SNR
          target "v":    min(SNR, gamma) / (SNR + 1)

      and the three weighted losses agree for the same x0_hat.

    ``kind`` and ``target`` are static strings; ``gamma`` may be traced.
    """
    _check_target(target)
    snr = _gather(schedule.snr, t)
    if kind == "simple":
        return jnp.ones_like(snr)
    if kind != "min_snr":
        raise ValueError(f"kind must be 'simple' or 'min_snr', got {kind!r}")
    clipped = jnp.minimum(snr, gamma)
    if target == "x0":
        return clipped
    if target == "eps":
        return clipped / snr
    return clipped / (snr + 1.0)


# ------------------------------------------------- cascades and super-resolution (SR3)
def downsample_mean(x: jax.Array, factor: int) -> jax.Array:
    """Average pooling by ``factor`` x ``factor`` blocks: x [B, H, W, C] ->
    [B, H / factor, W / factor, C], z[i, j] = mean_{a, b < factor} x[factor i + a, factor j + b].
    The low-resolution input of a super-resolution model, made from its high-resolution
    target so that every (low, high) pair is consistent."""
    b, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"downsample_mean: {h}x{w} is not divisible by {factor}")
    return x.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def upsample_to(x: jax.Array, height: int, width: int, method: str = "nearest") -> jax.Array:
    """Resize x [B, h, w, C] -> [B, height, width, C] by ``jax.image.resize`` (``nearest``,
    ``bilinear`` or ``bicubic``; static): the low-res input brought to the target size
    before it is concatenated to x_t (SR3, Saharia et al. 2021)."""
    b, _, _, c = x.shape
    return jax.image.resize(x, (b, height, width, c), method=method)


def aug_alpha_bar(s: ArrayLike, offset: float = 0.008) -> jax.Array:
    """alpha_bar(s) of a noise-augmentation level s in [0, 1] (continuous time, the cosine
    schedule of Nichol & Dhariwal)::

        alpha_bar(s) = cos^2(pi/2 (s + o) / (1 + o)) / cos^2(pi/2 o / (1 + o)),

    so alpha_bar(0) = 1 (no corruption) and alpha_bar(1) = 0 (pure noise). s may be traced."""
    s = jnp.asarray(s, jnp.float32)
    f = jnp.cos(0.5 * jnp.pi * (s + offset) / (1.0 + offset)) ** 2
    f0 = jnp.cos(0.5 * jnp.pi * offset / (1.0 + offset)) ** 2
    return jnp.clip(f / f0, 0.0, 1.0)


def augment_condition(z: jax.Array, s: ArrayLike, noise: jax.Array) -> jax.Array:
    """Noise-conditioning augmentation (Ho et al. 2021, "Cascaded Diffusion Models"; Imagen):
    the low-res condition z [B, ...] taken to level s [B] (or a scalar) by a forward-diffusion
    step,

        z_s = sqrt(alpha_bar(s)) z + sqrt(1 - alpha_bar(s)) noise,   noise ~ N(0, I),

    so z_s | z ~ N(sqrt(alpha_bar(s)) z, (1 - alpha_bar(s)) I) and z_0 = z exactly."""
    abar = _per_example(jnp.broadcast_to(aug_alpha_bar(s), (z.shape[0],)), z.shape)
    return jnp.sqrt(abar) * z + jnp.sqrt(1.0 - abar) * noise
