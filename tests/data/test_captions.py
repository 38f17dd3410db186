"""Captions of the embedded data and the word tokenizer."""

import numpy as np
import pytest

from genjax.data import captions as cap
from genjax.data.shapes import FACTOR_NAMES, shapes


def test_tokenize_round_trip_and_padding():
    texts = ["a handwritten seven", "a large square in the top left", ""]
    tokens = cap.tokenize(texts, 8)
    assert tokens.shape == (3, 8) and tokens.dtype == np.int32
    assert cap.detokenize(tokens) == texts
    assert (tokens[0, 3:] == cap.PAD_ID).all() and (tokens[2] == cap.PAD_ID).all()
    assert cap.detokenize(cap.tokenize("A Handwritten Seven", 3)) == ["a handwritten seven"]


def test_tokenize_rejects_unknown_words_and_long_strings():
    with pytest.raises(ValueError, match="unknown word 'purple'"):
        cap.tokenize(["a purple square"], 8)
    with pytest.raises(ValueError, match="more than max_len"):
        cap.tokenize(["a large square in the top left"], 6)


def _factors(shape, scale, pos_x, pos_y):
    row = dict(shape=shape, scale=scale, rotation=1.0, pos_x=pos_x, pos_y=pos_y)
    return [row[name] for name in FACTOR_NAMES]


def test_captions_of_given_factors_and_labels():
    factors = np.array([_factors(0, 0.9, 0.1, 0.2), _factors(1, 0.6, 0.8, 0.7),
                        _factors(2, 0.75, 0.5, 0.49)], np.float32)
    assert cap.captions("shapes", {"factors": factors}) == [
        "a large square in the top left",
        "a small ellipse in the bottom right",
        "a large heart in the top right",
    ]
    assert cap.captions("digits", {"label": np.array([7, 0, 3])}) == [
        "a handwritten seven", "a handwritten zero", "a handwritten three"]
    with pytest.raises(ValueError, match="caption scheme"):
        cap.captions("cifar", {"label": np.array([0])})


@pytest.mark.parametrize("scheme", ["digits", "shapes"])
def test_jax_caption_tokens_equal_tokenized_captions(scheme):
    data = shapes("test")
    batch = {"label": np.arange(64) % 10, "factors": np.asarray(data["factors"][:64])}
    expected = cap.tokenize(cap.captions(scheme, batch), 8)
    np.testing.assert_array_equal(cap.caption_tokens(scheme, batch, 8), expected)
    assert len(set(map(tuple, expected))) > 5   # the captions differ between examples
