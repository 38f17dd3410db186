"""Captions made from the labels and factors of the embedded data, and a word tokenizer.

A text-to-image model needs (image, text) pairs; the embedded datasets have none,
so a caption is written from what is known about each image:

===========  =====================================================
``digits``   "a handwritten seven" (from ``label``)
``shapes``   "a large square in the top left" (from ``factors``:
             shape; size: small below scale 0.75, else large;
             position: top / bottom by ``pos_y`` < 0.5 / >= 0.5,
             left / right by ``pos_x`` < 0.5 / >= 0.5)
===========  =====================================================

The tokenizer is word-level over the fixed :data:`VOCAB` (token 0 is the pad
token ``<pad>``); a word outside it is an error, not an unknown token, so a
prompt the model was never trained on is caught before sampling.
:func:`caption_tokens` computes the token ids of the captions of a batch
with ``jax.numpy`` (jittable, used inside a model's loss) and equals
``tokenize(captions(...), max_len)``.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from genjax.data.shapes import FACTOR_NAMES, SHAPE_NAMES

PAD = "<pad>"
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIZE_NAMES = ("small", "large")
VERTICAL_NAMES = ("top", "bottom")
HORIZONTAL_NAMES = ("left", "right")
VOCAB = ((PAD, "a", "handwritten") + DIGIT_NAMES + SIZE_NAMES + SHAPE_NAMES
         + ("in", "the") + VERTICAL_NAMES + HORIZONTAL_NAMES)
WORD_TO_ID = {word: i for i, word in enumerate(VOCAB)}
PAD_ID = WORD_TO_ID[PAD]
VOCAB_SIZE = len(VOCAB)
SCALE_THRESHOLD = 0.75   # scale < 0.75 is "small"
# Words per caption of each scheme (the shortest max_len that holds them).
CAPTION_LENGTHS = {"digits": 3, "shapes": 7}


def all_captions(scheme: str) -> tuple[str, ...]:
    """Every caption of ``scheme`` in a fixed order: the 10 digits ("a handwritten zero",
    ...), or the 24 shapes (shape, then size, vertical and horizontal position)."""
    if scheme == "digits":
        return tuple(f"a handwritten {d}" for d in DIGIT_NAMES)
    if scheme == "shapes":
        return tuple(f"a {z} {s} in the {v} {h}" for s in SHAPE_NAMES for z in SIZE_NAMES
                     for v in VERTICAL_NAMES for h in HORIZONTAL_NAMES)
    raise ValueError(f"unknown caption scheme {scheme!r}; choose 'digits' or 'shapes'")


def scheme_words(scheme: str) -> frozenset[str]:
    """The words of the captions of ``scheme``."""
    return frozenset(w for caption in all_captions(scheme) for w in caption.split())


def tokenize(strings: str | Sequence[str], max_len: int, *,
             scheme: str | None = None) -> np.ndarray:
    """Strings (or one string) -> int32 [B, max_len], padded with ``PAD_ID`` on the right.

    Words are split on whitespace and lower-cased. Raises ``ValueError`` for a word
    outside :data:`VOCAB` (naming it), or, given ``scheme``, outside the words of that
    scheme's captions (a digits model has never seen "heart"), or a string of more than
    ``max_len`` words."""
    if isinstance(strings, str):
        strings = [strings]
    allowed = scheme_words(scheme) if scheme is not None else None
    out = np.full((len(strings), max_len), PAD_ID, np.int32)
    for i, text in enumerate(strings):
        words = text.lower().split()
        if len(words) > max_len:
            raise ValueError(f"{text!r} has {len(words)} words, more than max_len = {max_len}")
        for j, word in enumerate(words):
            if word not in WORD_TO_ID:
                raise ValueError(f"unknown word {word!r} in {text!r}; the vocabulary is "
                                 f"{sorted(VOCAB[1:])}")
            if allowed is not None and word not in allowed:
                raise ValueError(f"the word {word!r} in {text!r} is not in the {scheme!r} "
                                 f"captions this model was trained on; their words are "
                                 f"{sorted(allowed)}")
            out[i, j] = WORD_TO_ID[word]
    return out


def detokenize(tokens) -> list[str]:
    """int [B, L] -> B strings (pad tokens dropped)."""
    tokens = np.asarray(tokens)
    return [" ".join(VOCAB[t] for t in row if t != PAD_ID) for row in tokens]


def _shape_parts(factors: np.ndarray):
    """factors [B, >= 5] (``FACTOR_NAMES`` order) -> (shape, size, vertical, horizontal)
    indices, each int [B]."""
    f = {name: factors[:, i] for i, name in enumerate(FACTOR_NAMES)}
    xp = jnp if isinstance(factors, jnp.ndarray) else np
    return (f["shape"].astype(xp.int32), (f["scale"] >= SCALE_THRESHOLD).astype(xp.int32),
            (f["pos_y"] >= 0.5).astype(xp.int32), (f["pos_x"] >= 0.5).astype(xp.int32))


def captions(scheme: str, batch: dict) -> list[str]:
    """The caption of each example of ``batch`` (numpy arrays): ``scheme`` "digits" reads
    ``label`` [B], "shapes" reads ``factors`` [B, F]."""
    if scheme == "digits":
        return [f"a handwritten {DIGIT_NAMES[y]}" for y in np.asarray(batch["label"])]
    if scheme == "shapes":
        shape, size, vert, horiz = _shape_parts(np.asarray(batch["factors"]))
        return [f"a {SIZE_NAMES[z]} {SHAPE_NAMES[s]} in the {VERTICAL_NAMES[v]} "
                f"{HORIZONTAL_NAMES[h]}" for s, z, v, h in zip(shape, size, vert, horiz)]
    raise ValueError(f"unknown caption scheme {scheme!r}; choose 'digits' or 'shapes'")


def _ids(words: Sequence[str]) -> jnp.ndarray:
    return jnp.array([WORD_TO_ID[w] for w in words], jnp.int32)


def caption_tokens(scheme: str, batch: dict, max_len: int) -> jnp.ndarray:
    """Token ids int32 [B, max_len] of :func:`captions` computed with ``jax.numpy``
    (jittable): equal to ``tokenize(captions(scheme, batch), max_len)``."""
    if max_len < CAPTION_LENGTHS.get(scheme, 0):
        raise ValueError(f"max_len {max_len} is shorter than the {scheme!r} captions "
                         f"({CAPTION_LENGTHS[scheme]} words)")
    if scheme == "digits":
        label = jnp.asarray(batch["label"], jnp.int32)
        n = label.shape[0]
        words = [jnp.full((n,), WORD_TO_ID["a"]), jnp.full((n,), WORD_TO_ID["handwritten"]),
                 _ids(DIGIT_NAMES)[label]]
    elif scheme == "shapes":
        shape, size, vert, horiz = _shape_parts(jnp.asarray(batch["factors"]))
        n = shape.shape[0]
        words = [jnp.full((n,), WORD_TO_ID["a"]), _ids(SIZE_NAMES)[size],
                 _ids(SHAPE_NAMES)[shape], jnp.full((n,), WORD_TO_ID["in"]),
                 jnp.full((n,), WORD_TO_ID["the"]), _ids(VERTICAL_NAMES)[vert],
                 _ids(HORIZONTAL_NAMES)[horiz]]
    else:
        raise ValueError(f"unknown caption scheme {scheme!r}; choose 'digits' or 'shapes'")
    pad = [jnp.full((n,), PAD_ID)] * (max_len - len(words))
    return jnp.stack(words + pad, axis=1).astype(jnp.int32)


def null_tokens(n: int, max_len: int) -> jnp.ndarray:
    """int32 [n, max_len] of the empty caption (all ``PAD_ID``): the null condition of
    classifier-free guidance for text."""
    return jnp.full((n, max_len), PAD_ID, jnp.int32)


def condition_tokens(n: int, cond=None, prompt=None, *, max_len: int,
                     scheme: str) -> jnp.ndarray:
    """Caption tokens int32 [n, max_len] of n samples of a text-conditional model, by the
    rule of :mod:`genjax.core.conditioning`: ``prompt`` (a string, or n strings, of words
    of ``scheme``'s captions; an unknown word is a ``ValueError`` naming it), else ``cond``
    token ids int [n or 1, <= max_len] (padded on the right), else the captions of
    ``scheme`` in turn."""
    if prompt is not None:
        cond = tokenize(prompt, max_len, scheme=scheme)
    if cond is None:
        every = all_captions(scheme)
        cond = tokenize([every[i % len(every)] for i in range(n)], max_len)
    cond = jnp.asarray(cond, jnp.int32)
    if cond.ndim != 2 or cond.shape[-1] > max_len:
        raise ValueError(f"text condition: token ids must be int [n, <= {max_len}], got shape "
                         f"{cond.shape}")
    cond = jnp.pad(cond, ((0, 0), (0, max_len - cond.shape[-1])), constant_values=PAD_ID)
    return jnp.broadcast_to(cond, (n, max_len))
