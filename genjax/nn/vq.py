"""VQ-VAE building blocks: a vector-quantization layer and convolutional
encoder/decoder that keep a spatial latent grid.

:class:`VectorQuantizer` is a plain frozen dataclass of pure functions rather
than a Flax module, because part of what it holds is not trained by gradients:

* ``mode = "loss"``: the codebook e [K, D] is a trainable parameter, trained by
  the codebook loss ||sg[z_e] - e||^2.
* ``mode = "ema"``: the codebook is an exponential moving average of the encoder
  outputs assigned to each code (:func:`genjax.core.quantize.ema_codebook_update`);
  it lives, with the cluster sizes N [K] and sums m [K, D], in the non-trainable
  state.

In both modes the state also counts, per code, the steps since it was last
chosen; with ``restart`` on, a code unused for ``dead_window`` steps is re-seeded
from a random current encoder output. The forward pass (:meth:`__call__`)
returns the batch statistics (counts, sums, restart candidates), all sums over
the batch so that data-parallel replicas combine them with one ``psum``; the
train step then calls :meth:`update` once per step on the combined statistics
(see :mod:`genjax.train.step`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.core import quantize as vq
from genjax.nn.autoencoder import ResBlock, upsample2x


@dataclasses.dataclass(frozen=True)
class VectorQuantizer:
    num_codes: int                 # K
    code_dim: int                  # D
    mode: str = "ema"              # ema | loss
    beta: float = 0.25             # commitment weight
    decay: float = 0.99            # EMA decay gamma (mode = ema)
    epsilon: float = 1e-5          # Laplace smoothing of the EMA counts
    restart: bool = True           # re-seed codes unused for dead_window steps
    dead_window: int = 100         # steps without use after which a code counts as dead

    def __post_init__(self):
        if self.mode not in ("ema", "loss"):
            raise ValueError(f"quantizer mode must be 'ema' or 'loss', got {self.mode!r}")
        if self.dead_window <= 0:
            raise ValueError(f"dead_window must be positive, got {self.dead_window}")

    def init(self, rng: jax.Array) -> tuple[dict, dict]:
        """(trainable, state). Codebook e ~ U(-1/K, 1/K)^D. EMA mode starts from N_k = 1,
        m_k = e_k (one pseudo-observation at the initial code, so the first update is a
        weighted average, not m_k / n_k of a single batch)."""
        k, d = self.num_codes, self.code_dim
        codebook = jax.random.uniform(rng, (k, d), jnp.float32, -1.0 / k, 1.0 / k)
        state = {"steps_unused": jnp.zeros((k,), jnp.int32)}
        if self.mode == "loss":
            return {"codebook": codebook}, state
        state.update(codebook=codebook, cluster_size=jnp.ones((k,), jnp.float32),
                     embed_sum=codebook)
        return {}, state

    def codebook(self, trainable: dict, state: dict) -> jax.Array:
        """e [K, D] (a parameter in loss mode, state in EMA mode)."""
        return trainable["codebook"] if self.mode == "loss" else state["codebook"]

    def __call__(self, trainable: dict, state: dict, z: jax.Array, picks: jax.Array):
        """Quantize z [..., D] -> (z_st, indices, losses, stats).

        z_st: straight-through z_q [..., D]; indices int32 [...];
        losses: ``codebook`` (0 in EMA mode) and ``commitment``, each the per-vector
        loss averaged over vectors and divided by D (a mean over elements);
        stats: ``counts`` n_k [K], ``sums`` [K, D] and ``candidates`` [K, D] (the
        encoder outputs chosen by ``picks`` [..., K], see
        :func:`genjax.core.quantize.one_hot_picks`), all sums over the batch.
        """
        e = self.codebook(trainable, state)
        z_q, indices = vq.vector_quantize(z, e)
        losses = {
            "codebook": (jnp.mean(vq.codebook_loss(z, z_q)) / self.code_dim
                         if self.mode == "loss" else jnp.zeros(())),
            "commitment": jnp.mean(vq.commitment_loss(z, z_q, self.beta)) / self.code_dim,
        }
        z_data = jax.lax.stop_gradient(z)
        stats = {
            "counts": vq.code_counts(indices, self.num_codes),
            "sums": vq.code_sums(z_data, indices, self.num_codes),
            "candidates": vq.pick_rows(picks, z_data),
        }
        return vq.straight_through(z, z_q), indices, losses, stats

    def update(self, trainable: dict, state: dict, stats: dict):
        """One step of the non-gradient updates from the (combined) batch stats:
        unused-step counters, the EMA codebook (EMA mode), dead-code restart.

        Returns (trainable, state, metrics) with metrics ``perplexity``, ``usage`` (of
        this batch) and ``dead_codes`` (codes unused for ``dead_window`` steps, before
        any restart).
        """
        counts = stats["counts"]
        steps_unused = vq.update_unused_steps(state["steps_unused"], counts)
        dead = steps_unused >= self.dead_window
        metrics = {"perplexity": vq.codebook_perplexity(counts),
                   "usage": vq.codebook_usage(counts),
                   "dead_codes": jnp.sum(dead).astype(jnp.float32)}
        state = dict(state)
        if self.mode == "ema":
            size, total, codebook = vq.ema_codebook_update(
                state["cluster_size"], state["embed_sum"], counts, stats["sums"],
                self.decay, self.epsilon)
        else:
            codebook = trainable["codebook"]
        if self.restart:
            cand = stats["candidates"]
            codebook = vq.restart_dead_codes(codebook, dead, cand)
            steps_unused = jnp.where(dead, 0, steps_unused)
            if self.mode == "ema":
                size = jnp.where(dead, 1.0, size)
                total = jnp.where(dead[:, None], cand, total)
        state["steps_unused"] = steps_unused
        if self.mode == "ema":
            state.update(codebook=codebook, cluster_size=size, embed_sum=total)
        else:
            trainable = dict(trainable, codebook=codebook)
        return trainable, state, metrics


class VQEncoder(nn.Module):
    """x: [B, H, W, C] float -> z_e: [B, H / 2**n, W / 2**n, code_dim], n = len(channels).

    3x3 conv, then per entry of ``channels`` a stride-2 4x4 conv and
    ``num_res_blocks`` residual blocks, then GroupNorm, SiLU and a 1x1 conv to D.
    """

    channels: Sequence[int]
    code_dim: int
    num_res_blocks: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Conv(self.channels[0], (3, 3))(x)
        for ch in self.channels:
            h = nn.Conv(ch, (4, 4), strides=(2, 2))(nn.silu(h))
            for _ in range(self.num_res_blocks):
                h = ResBlock()(h)
        h = nn.silu(nn.GroupNorm(num_groups=min(8, h.shape[-1]))(h))
        return nn.Conv(self.code_dim, (1, 1))(h)


class VQDecoder(nn.Module):
    """z_q: [B, h, w, D] -> [B, h * 2**n, w * 2**n, out_channels], mirror of :class:`VQEncoder`:
    3x3 conv and residual blocks at the latent size, then per level (deepest first) a
    nearest-neighbour 2x upsampling, 3x3 conv and residual blocks, then GroupNorm, SiLU
    and a 3x3 conv to the outputs."""

    channels: Sequence[int]
    out_channels: int
    num_res_blocks: int = 1

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = nn.Conv(self.channels[-1], (3, 3))(z)
        for _ in range(self.num_res_blocks):
            h = ResBlock()(h)
        for ch in reversed(self.channels):
            h = nn.Conv(ch, (3, 3))(nn.silu(upsample2x(h)))
            for _ in range(self.num_res_blocks):
                h = ResBlock()(h)
        h = nn.silu(nn.GroupNorm(num_groups=min(8, h.shape[-1]))(h))
        return nn.Conv(self.out_channels, (3, 3))(h)
