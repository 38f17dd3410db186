"""GAN inversion: find the latent whose image reconstructs a given one.

A generator G maps a latent (z for a DCGAN, w or w+ for a StyleGAN) to an image; it
has no encoder, so inversion solves

    z* = argmin_z  L(G(z), x)        (L: mean squared error on the [-1, 1] scale)

by gradient descent from a starting latent, as in Zhu et al. (2016) and the StyleGAN
projector. :func:`optimize` runs ``num_steps`` steps of an optax optimizer inside one
``lax.scan`` (the step count is static, the learning rate traced), so the whole
inversion is one compiled call; the loss is per example and summed, so the latents of a
batch do not interact and each follows its own descent.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax


def optimize(loss_fn: Callable[[jax.Array], jax.Array], init: jax.Array, num_steps: int,
             optimizer: optax.GradientTransformation) -> tuple[jax.Array, jax.Array]:
    """Minimise ``sum(loss_fn(latents))`` over latents from ``init``.

    Args:
      loss_fn: latents ``[B, ...]`` -> per-example loss ``[B]``.
      init: the starting latents ``[B, ...]``.
      num_steps: optimizer steps (static).
      optimizer: an optax transformation, e.g. ``optax.adam(0.05)``.

    Returns:
      (latents after ``num_steps`` steps, per-example loss ``[num_steps + 1, B]`` before
      every step and after the last).
    """
    def total(latents):
        per_example = loss_fn(latents)
        return jnp.sum(per_example), per_example

    grad_fn = jax.grad(total, has_aux=True)

    def step(carry, _):
        latents, opt_state = carry
        grads, per_example = grad_fn(latents)
        updates, opt_state = optimizer.update(grads, opt_state, latents)
        return (optax.apply_updates(latents, updates), opt_state), per_example

    (latents, _), history = jax.lax.scan(step, (init, optimizer.init(init)), None,
                                         length=num_steps)
    final = loss_fn(latents)
    return latents, jnp.concatenate([history, final[None]])


def reconstruction_mse(images: jax.Array, reconstructions: jax.Array) -> jax.Array:
    """Per-example mean squared error ``[B]`` over every axis but the first."""
    diff = jnp.asarray(images, jnp.float32) - jnp.asarray(reconstructions, jnp.float32)
    return jnp.mean(jnp.square(diff).reshape(diff.shape[0], -1), axis=-1)
