"""GAN objectives as pure functions of discriminator (critic) outputs, each a batch mean in nats.

Notation of the notes: the discriminator is D(x) = sigmoid(f(x)) with logits f, the
generator G maps noise z to data, p_d is the data law and p_g the generator's. The value
of the minimax game (Goodfellow et al., 2014) is

    V(G, D) = E_{x ~ p_d} log D(x) + E_z log(1 - D(G(z))),

maximised by D and minimised by G. For a fixed G the best discriminator is
D*(x) = p_d(x) / (p_d(x) + p_g(x)), and V(G, D*) = -log 4 + 2 JS(p_d || p_g).

Every loss here is what its player *minimises*, averaged over the batch:

- minimax: the discriminator minimises -V (a binary cross-entropy, real = 1, fake = 0);
  the generator minimises E log(1 - D(G(z))) (the "saturating" loss, whose gradient
  vanishes where D rejects the fakes), or the non-saturating -E log D(G(z)).
- least squares (Mao et al., 2017, targets a = 0, b = c = 1), on raw outputs f:
  D: 1/2 E (f(x) - 1)^2 + 1/2 E f(G(z))^2,  G: 1/2 E (f(G(z)) - 1)^2.
- hinge (Lim & Ye 2017; Miyato et al. 2018): D: E relu(1 - f(x)) + E relu(1 + f(G(z))),
  G: -E f(G(z)).
- Wasserstein (Arjovsky et al., 2017): the critic f maximises E f(x) - E f(G(z)) over
  1-Lipschitz functions, so it minimises E f(G(z)) - E f(x); G minimises -E f(G(z)).
  The constraint is enforced by weight clipping (:func:`clip_weights`) or by the gradient
  penalty E (|grad f(x_hat)| - 1)^2 on random interpolates x_hat (Gulrajani et al., 2017).
- R1 (Mescheder et al., 2018): E_{x ~ p_d} |grad f(x)|^2 on real data (the caller scales
  it by gamma / 2).

Logits enter the log-sigmoids through softplus: -log D = softplus(-f),
-log(1 - D) = softplus(f), exact and stable for any f.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

Critic = Callable[[jax.Array], jax.Array]   # x [B, ...] -> f(x) [B]


def minimax_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """-V(G, D) = -E log D(x) - E log(1 - D(G(z))), logits [B] each."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def minimax_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """E log(1 - D(G(z))), the generator's side of the minimax game (saturating)."""
    return -jnp.mean(jax.nn.softplus(fake_logits))


def nonsaturating_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """-E log D(G(z)): the same fixed point, a strong gradient where D rejects the fakes."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def least_squares_discriminator_loss(real: jax.Array, fake: jax.Array) -> jax.Array:
    """1/2 E (f(x) - 1)^2 + 1/2 E f(G(z))^2."""
    return 0.5 * jnp.mean((real - 1.0) ** 2) + 0.5 * jnp.mean(fake ** 2)


def least_squares_generator_loss(fake: jax.Array) -> jax.Array:
    """1/2 E (f(G(z)) - 1)^2."""
    return 0.5 * jnp.mean((fake - 1.0) ** 2)


def hinge_discriminator_loss(real: jax.Array, fake: jax.Array) -> jax.Array:
    """E relu(1 - f(x)) + E relu(1 + f(G(z)))."""
    return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))


def hinge_generator_loss(fake: jax.Array) -> jax.Array:
    """-E f(G(z))."""
    return -jnp.mean(fake)


def wasserstein_critic_loss(real: jax.Array, fake: jax.Array) -> jax.Array:
    """E f(G(z)) - E f(x): minus the critic's estimate of the Wasserstein-1 distance."""
    return jnp.mean(fake) - jnp.mean(real)


def wasserstein_generator_loss(fake: jax.Array) -> jax.Array:
    """-E f(G(z))."""
    return -jnp.mean(fake)


GENERATOR_LOSSES = {"minimax": minimax_generator_loss,
                    "nonsaturating": nonsaturating_generator_loss,
                    "least_squares": least_squares_generator_loss,
                    "hinge": hinge_generator_loss,
                    "wasserstein": wasserstein_generator_loss}
DISCRIMINATOR_LOSSES = {"minimax": minimax_discriminator_loss,
                        "nonsaturating": minimax_discriminator_loss,
                        "least_squares": least_squares_discriminator_loss,
                        "hinge": hinge_discriminator_loss,
                        "wasserstein": wasserstein_critic_loss}


def losses(kind: str) -> tuple[Callable, Callable]:
    """(discriminator loss, generator loss) of ``kind`` (a key of ``GENERATOR_LOSSES``)."""
    if kind not in GENERATOR_LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r}; choose one of {sorted(GENERATOR_LOSSES)}")
    return DISCRIMINATOR_LOSSES[kind], GENERATOR_LOSSES[kind]


def _input_grad_norms(critic_fn: Critic, x: jax.Array) -> jax.Array:
    """|grad_x f(x)|_2 per example [B]. The gradient of sum_i f(x_i) is taken once: this is
    the per-example gradient for any critic that treats examples independently (no batch
    norm across the batch, as WGAN-GP requires)."""
    grads = jax.grad(lambda v: jnp.sum(critic_fn(v)))(x)
    return jnp.sqrt(jnp.sum(grads.reshape(x.shape[0], -1) ** 2, axis=1))


def interpolates(rng: jax.Array, real: jax.Array, fake: jax.Array) -> jax.Array:
    """x_hat = eps x + (1 - eps) x_fake, eps ~ U[0, 1] per example."""
    eps = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    return eps * real + (1.0 - eps) * fake


def gradient_penalty(critic_fn: Critic, real: jax.Array, fake: jax.Array,
                     rng: jax.Array, target: float = 1.0) -> jax.Array:
    """E (|grad f(x_hat)|_2 - target)^2 over random interpolates x_hat (WGAN-GP)."""
    norms = _input_grad_norms(critic_fn, interpolates(rng, real, fake))
    return jnp.mean((norms - target) ** 2)


def r1_penalty(critic_fn: Critic, real: jax.Array) -> jax.Array:
    """E_{x ~ p_d} |grad f(x)|_2^2 (R1; scale it by gamma / 2)."""
    return jnp.mean(_input_grad_norms(critic_fn, real) ** 2)


def discriminator_accuracy(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Fraction of real and fake examples D puts on the right side of 0 (D = 1/2)."""
    right = jnp.concatenate([real_logits > 0, fake_logits < 0])
    return jnp.mean(right.astype(jnp.float32))


def clip_weights(limit: float) -> optax.GradientTransformation:
    """WGAN's weight clipping as the last transformation of an optax chain: the update
    becomes clip(w + u, -limit, limit) - w, so that applying it leaves every weight in
    [-limit, limit] (to the one rounding of w + (clip - w)). Needs ``params`` in ``update``."""
    if limit <= 0:
        raise ValueError(f"clip_weights: limit must be positive, got {limit}")

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("clip_weights needs params: call update(updates, state, params)")
        updates = jax.tree.map(lambda u, w: jnp.clip(w + u, -limit, limit) - w, updates, params)
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)
