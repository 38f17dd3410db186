"""The text tower of a text-conditioned model, pluggable.

A text encoder maps caption token ids (:mod:`genjax.data.captions`, int32 [B, L],
right-padded with ``PAD_ID``) to

    pooled [B, P]     one vector per caption
    states [B, L, W]  one vector per token (those at padded positions are ignored)

through the interface of :class:`TextEncoder`:

    params = encoder.init(rng, tokens)
    pooled, states = encoder.encode(params, tokens)
    encoder.frozen          # True: params come pretrained and are not trained

``"transformer"`` (:class:`JointTextEncoder`) is a small
:class:`~genjax.nn.transformer.TextEncoder` (mean pooling) trained jointly with the model.

The hook: a pretrained, frozen tower (a CLIP text tower, ``encode_text(params, tokens)
-> (pooled, states)``) is another entry of :data:`TEXT_ENCODERS`, a builder
``(config) -> TextEncoder`` whose ``init`` returns the pretrained parameters (loaded
from a trained run, as :func:`genjax.models.pretrained.load_pretrained` loads the
autoencoder of latent diffusion) and whose ``frozen`` is True. The model then keeps
those parameters in ``params["text_encoder"]`` in the frozen parameter group (no
gradient, no optimizer moments; :class:`~genjax.models.protocol.UpdateRule`), exactly
as latent diffusion keeps its autoencoder. Nothing else changes: the U-Net's cross-
attention reads states of any width W, and the pooled vector of any width P.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

import jax

from genjax.data import captions as cap
from genjax.nn.transformer import TextEncoder as TextNetwork


class TextEncoder(Protocol):
    """What a text-conditioned model needs of its text tower (module docstring)."""

    frozen: bool

    def init(self, rng: jax.Array, tokens: jax.Array): ...

    def encode(self, params, tokens: jax.Array) -> tuple[jax.Array, jax.Array]: ...


@dataclasses.dataclass(frozen=True)
class JointTextEncoder:
    """A :class:`~genjax.nn.transformer.TextEncoder` (bidirectional attention over the
    words, pads masked, mean pooling) over the caption vocabulary,
    trained with the model (``frozen = False``)."""

    max_len: int
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    frozen: bool = False

    @property
    def net(self) -> TextNetwork:
        return TextNetwork(cap.VOCAB_SIZE, self.max_len, self.dim, self.num_layers,
                           self.num_heads, pool="mean", pad_id=cap.PAD_ID)

    def init(self, rng: jax.Array, tokens: jax.Array):
        return self.net.init(rng, tokens)

    def encode(self, params, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.net.apply(params, tokens)


def _joint_transformer(config) -> JointTextEncoder:
    return JointTextEncoder(config.text_len, config.text_dim, config.text_layers,
                            config.text_heads)


# name (config.model.text_encoder) -> builder (model config) -> TextEncoder.
TEXT_ENCODERS: dict[str, Callable] = {"transformer": _joint_transformer}


def build_text_encoder(config) -> TextEncoder:
    """The text encoder named by ``config.text_encoder`` (fields ``text_len``, ``text_dim``,
    ``text_layers``, ``text_heads`` for the joint transformer)."""
    if config.text_encoder not in TEXT_ENCODERS:
        raise ValueError(f"unknown text_encoder {config.text_encoder!r}; available: "
                         f"{sorted(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[config.text_encoder](config)
