"""A decoder-only (causal) transformer with a key/value cache for sampling.

Causal self-attention over X in R^{T x D} (notation of the notes):

    Q = X W_Q,  K = X W_K,  V = X W_V
    Attn(X) = softmax(Q K^T / sqrt(d_head) + M) V,   M_ij = 0 if j <= i else -inf

with several heads, pre-LayerNorm residual blocks (x += Attn(LN x); x += MLP(LN x))
and learned position embeddings. Optional dropout (GPT-2's places: on the input
embeddings and on each branch before it joins the residual stream) is active only
in ``__call__(..., train=True)``, with a ``"dropout"`` rng; decoding never drops.

:class:`CausalTransformer` predicts token t from tokens < t: its input is the
sequence shifted right behind a learned begin-of-sequence vector (to which an
optional condition embedding is added), so ``__call__(tokens)[:, t]`` are the
logits of p(x_t | x_<t). Sampling calls :meth:`CausalTransformer.decode` once per
position with a cache of the keys and values of the positions already seen: the
step costs O(t) instead of re-running the whole prefix.

Mixed precision (``dtype``, :mod:`genjax.nn.precision`): parameters stay float32; the
projections and the MLP compute in ``dtype`` (bfloat16 on accelerators), while the
residual stream, the embeddings, the layer norms, the attention logits and softmax and
the output head stay float32 (the logits are float32). The decoding cache holds keys
and values in ``dtype``. ``remat=True`` wraps every block in ``nn.remat``: its
activations are recomputed in the backward pass instead of stored (same numbers).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.core.masks import causal_mask

Dtype = Any
Cache = Any  # tuple over layers of (keys [B, T, H, Dh], values [B, T, H, Dh])


class CausalSelfAttention(nn.Module):
    num_heads: int
    dim: int
    dtype: Dtype = jnp.float32

    def setup(self):
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} must be divisible by num_heads {self.num_heads}")
        self.qkv = nn.DenseGeneral((3, self.num_heads, self.dim // self.num_heads),
                                   dtype=self.dtype, name="qkv")
        self.out = nn.DenseGeneral(self.dim, axis=(-2, -1), dtype=self.dtype, name="out")

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """x [B, T, D] -> [B, T, D], position i attending to j <= i, or where ``mask``
        (bool, broadcastable to [B, heads, T, T]: query i, key j) is True."""
        q, k, v = jnp.moveaxis(self.qkv(x), -3, 0)            # each [B, T, H, Dh]
        t = x.shape[1]
        mask = jnp.asarray(causal_mask(t)) if mask is None else mask
        return self.out(_attend(q, k, v, mask))

    def decode(self, x: jax.Array, t: jax.Array, cache: tuple) -> tuple[jax.Array, tuple]:
        """One position: x [B, 1, D] at index t, cache (K, V) [B, T, H, Dh] -> (y, cache)."""
        q, k, v = jnp.moveaxis(self.qkv(x), -3, 0)            # each [B, 1, H, Dh]
        keys = jax.lax.dynamic_update_slice_in_dim(cache[0], k.astype(cache[0].dtype), t, axis=1)
        values = jax.lax.dynamic_update_slice_in_dim(cache[1], v.astype(cache[1].dtype), t,
                                                     axis=1)
        mask = (jnp.arange(keys.shape[1]) <= t)[None, :]
        return self.out(_attend(q, keys, values, mask)), (keys, values)


def _attend(q, k, v, mask):
    """softmax(q k^T / sqrt(d) + M) v over heads; q [B, Tq, H, Dh], k/v [B, Tk, H, Dh].
    The logits and the softmax are float32 whatever the dtype of q, k, v."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    logits = logits / jnp.sqrt(q.shape[-1]).astype(jnp.float32)
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


class TransformerBlock(nn.Module):
    num_heads: int
    dim: int
    mlp_ratio: int = 4
    dropout: float = 0.0
    dtype: Dtype = jnp.float32

    def setup(self):
        self.ln1 = nn.LayerNorm(dtype=jnp.float32)
        self.attn = CausalSelfAttention(self.num_heads, self.dim, self.dtype)
        self.ln2 = nn.LayerNorm(dtype=jnp.float32)
        self.mlp_in = nn.Dense(self.mlp_ratio * self.dim, dtype=self.dtype)
        self.mlp_out = nn.Dense(self.dim, dtype=self.dtype)
        self.drop = nn.Dropout(self.dropout)

    def _norm(self, ln, x):
        """A float32 layer norm of the (float32) residual stream, cast to the compute dtype."""
        return ln(x).astype(self.dtype)

    def _mlp(self, x):
        return self.mlp_out(nn.gelu(self.mlp_in(self._norm(self.ln2, x)))).astype(jnp.float32)

    def __call__(self, x, train: bool = False, mask: jax.Array | None = None):
        """x [B, T, D] float32 -> [B, T, D] float32 (the residual stream); ``mask``: see
        :class:`CausalSelfAttention` (default causal)."""
        y = self.attn(self._norm(self.ln1, x), mask).astype(jnp.float32)
        x = x + self.drop(y, deterministic=not train)
        return x + self.drop(self._mlp(x), deterministic=not train)

    def decode(self, x, t, cache):
        y, cache = self.attn.decode(self._norm(self.ln1, x), t, cache)
        x = x + y.astype(jnp.float32)
        return x + self._mlp(x), cache


class CausalTransformer(nn.Module):
    """Next-token model over sequences of length ``max_len`` from a vocabulary of ``vocab_size``.

    ``tokens`` are int32 [B, T] or, to differentiate through the input, float
    one-hot rows [B, T, vocab_size]. ``cond`` [B] int32 (a class, ``num_classes``
    > 0) is embedded and added to the begin-of-sequence vector. ``dtype`` is the
    computation dtype of the blocks and ``remat`` recomputes each block's activations in
    the backward pass (module docstring).
    """

    vocab_size: int
    out_features: int
    max_len: int
    dim: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_classes: int = 0
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    remat: bool = False

    def setup(self):
        self.embed = nn.Dense(self.dim, use_bias=False, name="embed")   # one-hot @ E
        self.pos = self.param("pos", nn.initializers.normal(0.02), (self.max_len, self.dim))
        self.bos = self.param("bos", nn.initializers.normal(0.02), (self.dim,))
        if self.num_classes:
            self.class_embed = nn.Embed(self.num_classes, self.dim, name="class_embed")
        # nn.remat traces its arguments: ``train`` (argument 2 counting self) stays static.
        block = nn.remat(TransformerBlock, static_argnums=(2,)) if self.remat else TransformerBlock
        self.blocks = [block(self.num_heads, self.dim, dropout=self.dropout, dtype=self.dtype)
                       for _ in range(self.num_layers)]
        self.drop = nn.Dropout(self.dropout)
        self.ln = nn.LayerNorm(dtype=jnp.float32)
        self.head = nn.Dense(self.out_features, dtype=jnp.float32, name="head")

    def _embed(self, tokens):
        if jnp.issubdtype(tokens.dtype, jnp.integer):
            tokens = jax.nn.one_hot(tokens, self.vocab_size, dtype=self.pos.dtype)
        return self.embed(tokens)

    def _bos(self, batch: int, cond):
        bos = jnp.broadcast_to(self.bos, (batch, self.dim))
        if self.num_classes:
            if cond is None:
                raise ValueError("this transformer is class-conditional: pass cond")
            bos = bos + self.class_embed(cond)
        return bos

    def __call__(self, tokens: jax.Array, cond: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        """Logits [B, T, out_features]; row t depends only on tokens[:, :t]. ``train``
        turns dropout on (pass ``rngs={"dropout": key}`` to ``apply``)."""
        x = self._embed(tokens)
        b, t = x.shape[:2]
        x = jnp.concatenate([self._bos(b, cond)[:, None], x[:, :-1]], axis=1) + self.pos[:t]
        x = self.drop(x, deterministic=not train)
        for block in self.blocks:
            x = block(x, train)
        return self.head(self.ln(x))

    def decode(self, prev: jax.Array, t: jax.Array, cache: Cache,
               cond: jax.Array | None = None) -> tuple[jax.Array, Cache]:
        """Logits [B, out_features] of position t given token t - 1 (``prev`` [B], ignored
        at t = 0) and the cache of positions < t; returns the updated cache."""
        b = prev.shape[0]
        x = jnp.where(t == 0, self._bos(b, cond), self._embed(prev))
        x = (x + self.pos[t])[:, None]
        new = []
        for block, layer_cache in zip(self.blocks, cache):
            x, layer_cache = block.decode(x, t, layer_cache)
            new.append(layer_cache)
        return self.head(self.ln(x))[:, 0], tuple(new)

    def init_cache(self, batch: int, dtype=None) -> Cache:
        """Zeros (K, V) [B, max_len, H, Dh] per layer, in ``dtype`` (default: the compute
        dtype) (callable on an unbound module)."""
        dtype = self.dtype if dtype is None else dtype
        shape = (batch, self.max_len, self.num_heads, self.dim // self.num_heads)
        return tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))
                     for _ in range(self.num_layers))


TEXT_POOLS = ("last", "mean")


class TextEncoder(nn.Module):
    """Caption tokens int [B, T] (T <= ``max_len``, padded with ``pad_id`` on the right) ->
    (pooled [B, dim], states [B, T, dim]), the transformer blocks above without the shift.

    ``pool="last"`` (CLIP's text tower): causal attention, and the pooled vector is the
    state of the last non-pad token, which has seen the whole caption; ``"mean"``:
    bidirectional attention with the pad keys masked out, and the mean of the states of
    the non-pad tokens. Either way the pooled vector does not depend on how many pads
    follow the caption (real tokens never attend to pads). ``states`` are the final
    LayerNorm's output at every position (pads included: mask them with
    ``tokens != pad_id``); an all-pad caption pools position 0 ("last") or gives zeros
    ("mean").
    """

    vocab_size: int
    max_len: int
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    pool: str = "last"
    pad_id: int = 0

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        if self.pool not in TEXT_POOLS:
            raise ValueError(f"pool must be one of {TEXT_POOLS}, got {self.pool!r}")
        b, t = tokens.shape
        if t > self.max_len:
            raise ValueError(f"{t} tokens, more than max_len = {self.max_len}")
        pos = self.param("pos", nn.initializers.normal(0.02), (self.max_len, self.dim))
        x = nn.Embed(self.vocab_size, self.dim, name="embed")(tokens) + pos[:t]
        valid = tokens != self.pad_id                                        # [B, T]
        mask = (jnp.asarray(causal_mask(t)) if self.pool == "last"
                else valid[:, None, None, :])
        for _ in range(self.num_layers):
            x = TransformerBlock(self.num_heads, self.dim)(x, train, mask=mask)
        states = nn.LayerNorm()(x)
        count = valid.sum(axis=1)
        if self.pool == "last":
            last = jnp.maximum(count - 1, 0)
            pooled = jnp.take_along_axis(states, last[:, None, None], axis=1)[:, 0]
        else:
            weights = valid / jnp.maximum(count, 1)[:, None]
            pooled = jnp.einsum("bt,btd->bd", weights.astype(states.dtype), states)
        return pooled, states
