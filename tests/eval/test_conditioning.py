"""Conditioning accuracy: the shape reader, the 24 captions, and the accuracy of samplers
that return real images of the requested condition (high) or ignore it (chance)."""

import types

import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data as gdata
from genjax.data import captions as cap
from genjax.data.shapes import render, shapes
from genjax.eval import conditioning as ca
from genjax.models.protocol import Capabilities


def test_the_24_prompts_are_the_captions_of_their_attributes():
    prompts, attrs = ca.shape_prompts()
    assert len(set(prompts)) == 24
    test = shapes("test")
    truth = ca.shape_attributes(test["factors"])
    index = {p: i for i, p in enumerate(prompts)}
    rows = np.array([index[c] for c in cap.captions("shapes", test)])
    for name in attrs:
        np.testing.assert_array_equal(attrs[name][rows], truth[name])


def test_shape_features_ignore_rotation_and_tell_square_from_ellipse():
    # shape, scale, rotation, pos_x, pos_y: a large square and a large ellipse, unrotated.
    images = render(np.array([[0, 1.0, 0, 0.5, 0.5], [1, 1.0, 0, 0.5, 0.5]], np.float32))
    features = ca.shape_features(images)
    turned = ca.shape_features(np.rot90(images, 1, axes=(1, 2)))
    invariant = [0, 3, 4, 5, 6, 7, 8]            # all but the centroid
    np.testing.assert_allclose(turned[:, invariant], features[:, invariant], rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(features[0, 5], 1.0, atol=1e-9)      # square: l2 / l1 = 1
    np.testing.assert_allclose(features[1, 5], 0.6 ** 2, atol=0.06)  # ellipse 1 : 0.6


@pytest.fixture(scope="module")
def reader():
    return ca.shape_classifier(num_train=1500, max_iter=30)


def _text_model(images_per_prompt):
    """A 'text prior' whose sample returns, for each caption, a fixed image."""
    table = jnp.asarray(cap.tokenize(ca.shape_prompts()[0], 8))

    def sample(params, rng, n, cond, guidance_scale=0.0):
        row = jnp.argmax(jnp.all(cond[:, None, :] == table[None], axis=-1), axis=1)
        return images_per_prompt[row]

    config = types.SimpleNamespace(conditioning="text", captions="shapes", num_classes=0,
                                   num_levels=256)
    caps = Capabilities(conditioning="text", sample_options=("guidance_scale",))
    return types.SimpleNamespace(config=config, text_len=8, sample=sample, capabilities=caps)


def test_shape_accuracy_is_high_for_the_right_images_and_low_for_one_image(reader):
    _, real_accuracy = reader
    assert min(real_accuracy.values()) > 0.85
    test = shapes("test")
    truth = ca.shape_attributes(test["factors"])
    _, attrs = ca.shape_prompts()
    picks = [np.flatnonzero((truth["shape"] == s) & (truth["size"] == z)
                            & (truth["position"] == p))[0]
             for s, z, p in zip(attrs["shape"], attrs["size"], attrs["position"])]
    right = ca.conditioning_accuracy(_text_model(jnp.asarray(test["image"][picks])), None, None,
                                     (0.0, 1.0), per_condition=2, classifier=reader)
    assert right["w=0"]["num_samples"] == 48 and right["w=1"] == right["w=0"]
    assert right["w=0"]["all"] >= 0.8 and right["chance"]["all"] == 1 / 24
    same = ca.conditioning_accuracy(_text_model(jnp.asarray(test["image"][picks[:1] * 24])),
                                    None, None, per_condition=2, classifier=reader)
    assert same["w=0"]["all"] <= 1 / 12 and same["w=0"]["shape"] <= 0.4


def test_digit_class_accuracy_of_a_sampler_of_real_digits():
    batch = next(gdata.load("digits16", "test", 297, shuffle=False)[0])
    table = jnp.asarray(np.stack([batch["image"][np.flatnonzero(batch["label"] == k)[0]]
                                  for k in range(10)]))
    model = types.SimpleNamespace(
        config=types.SimpleNamespace(num_classes=10, num_levels=256),
        capabilities=Capabilities(conditioning="class", num_classes=10,
                                  sample_options=("guidance_scale",)),
        sample=lambda params, rng, n, cond, guidance_scale=0.0: table[cond])
    out = ca.conditioning_accuracy(model, None, None, (0.0, 2.0), per_condition=3)
    assert out["w=0"] == {"class_accuracy": 1.0, "num_samples": 30}
    assert out["chance"] == 0.1
    model.sample = lambda params, rng, n, cond: table[cond]
    model.capabilities = Capabilities(conditioning="class", num_classes=10)
    with pytest.raises(ValueError, match="takes no guidance_scale"):
        ca.conditioning_accuracy(model, None, None, (1.0,), per_condition=3)
    unguided = ca.conditioning_accuracy(model, None, None, (0.0,), per_condition=3)
    assert unguided["w=0"]["class_accuracy"] == 1.0
    # Extra keyword arguments reach the sampler (here a temperature below 1 shifts the class).
    model.sample = lambda params, rng, n, cond, temperature=1.0: table[
        (cond + int(temperature < 1)) % 10]
    shifted = ca.conditioning_accuracy(model, None, None, per_condition=3, temperature=0.5)
    assert shifted["w=0"]["class_accuracy"] == 0.0
