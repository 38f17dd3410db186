"""One conditioning rule for every conditional family (genjax.core.conditioning): without a
condition, samples take the classes in turn; bad conditions are clear errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.configs import make_config
from genjax.core import conditioning as cnd
from genjax.core.random import init_key
from genjax.models import build
from tests.conftest import perturbed

N = 12          # more samples than classes: the cycle wraps
DIGITS8 = dict(image_shape=(8, 8, 1), num_levels=17)

# family -> (model name, model fields): tiny, class-conditional on the 10 digits.
FAMILIES = {
    "ddpm": ("ddpm", dict(num_timesteps=10, base_channels=8, channel_mults=(1,),
                          attention_resolutions=(), num_heads=1, sampler="ddim",
                          sample_steps=2, label_dropout=0.1)),
    "glow": ("glow", dict(num_scales=1, steps_per_scale=1, hidden=8)),
    "cvae": ("vae", dict(latent_dim=2, channels=(4,), hidden_dim=8)),
    "gated_pixelcnn": ("gated_pixelcnn", dict(features=4, num_layers=1, first_kernel=3)),
}


def _batch(n=4):
    rng = np.random.default_rng(0)
    return {"image": rng.integers(0, 17, (n, 8, 8, 1)).astype(np.uint8),
            "label": np.arange(n, dtype=np.int32) % 10}


def _model_and_params(name, fields, num_classes=10):
    model = build(make_config(name, "digits",
                              model_kwargs=dict(DIGITS8, num_classes=num_classes,
                                                **fields)).model)
    params = jax.jit(model.init)(init_key(jax.random.key(0)), _batch())
    return model, params


def _assert_rule(model, params):
    @jax.jit          # one compile for the three draws
    def draws(params, key):
        return (model.sample(params, key, N, None),
                model.sample(params, key, N, cnd.cycle_labels(N, 10)),
                model.sample(params, key, N, jnp.full((N,), 3, jnp.int32)))

    default, cycled, other = map(np.asarray, draws(params, jax.random.key(1)))
    np.testing.assert_array_equal(default, cycled)
    # ... and the label matters (so the equality above says something).
    assert not np.array_equal(default, other)


@pytest.mark.parametrize("family", [f if f == "cvae" else pytest.param(f, marks=pytest.mark.slow)
                                    for f in sorted(FAMILIES)])
def test_sampling_without_cond_takes_the_classes_in_turn(family):
    name, fields = FAMILIES[family]
    model, params = _model_and_params(name, fields)
    assert model.capabilities.conditioning == "class" and model.capabilities.num_classes == 10
    # Zero-initialised output layers ignore the label at init: perturb every weight.
    params = perturbed(params, jax.random.key(5), 0.1)
    _assert_rule(model, params)
    with pytest.raises(ValueError, match="out of range"):
        model.sample(params, jax.random.key(1), 2, 10)
    with pytest.raises(ValueError, match="out of range"):
        model.sample(params, jax.random.key(1), 2, np.array([0, -1]))


@pytest.mark.slow
def test_token_prior_without_cond_takes_the_classes_or_captions_in_turn():
    from tests.models.test_token_prior import tiny_prior_config

    for conditioning in ("class", "text"):
        model = build(tiny_prior_config(conditioning).model)
        text, label = model.condition(N)
        if conditioning == "class":
            np.testing.assert_array_equal(label, np.arange(N) % 10)
            with pytest.raises(ValueError, match="out of range"):
                model.condition(2, cond=10)
        else:
            from genjax.data import captions as cap

            assert cap.detokenize(text) == [f"a handwritten {cap.DIGIT_NAMES[i % 10]}"
                                            for i in range(N)]
            with pytest.raises(ValueError, match="not in the 'digits' captions"):
                model.condition(2, prompt="a small heart")


@pytest.mark.parametrize("family", ["cvae", "gated_pixelcnn"])
def test_unconditional_models_refuse_a_condition(family):
    name, fields = FAMILIES[family]
    model, params = _model_and_params(name, dict(fields, label_dropout=0.0)
                                      if family == "ddpm" else fields, num_classes=0)
    assert model.capabilities.conditioning == "none"
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(params, jax.random.key(1), 2, 3)


def test_core_rules():
    np.testing.assert_array_equal(cnd.class_labels(None, 5, 3), [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(cnd.class_labels(2, 3, 3), [2, 2, 2])
    assert cnd.class_labels(None, 4, 0) is None
    for bad in (3, -1, [0, 5]):
        with pytest.raises(ValueError, match="out of range"):
            cnd.class_labels(bad, 2, 3)
    with pytest.raises(ValueError, match="integers"):
        cnd.check_labels(np.array([0.5]), 3)
    # Dropout: about p of the rows become null, the rest are kept, rows drop together.
    cond = jnp.tile(jnp.arange(4000)[:, None] % 7, (1, 3))
    out = cnd.drop_condition(jax.random.key(0), cond, -1, 0.25)
    dropped = np.asarray(out[:, 0] == -1)
    assert abs(dropped.mean() - 0.25) < 0.03
    np.testing.assert_array_equal(np.asarray(out)[~dropped], np.asarray(cond)[~dropped])
    assert np.all(np.asarray(out)[dropped] == -1)
    # Guidance: w = 0 is the conditional prediction, w = -1 the unconditional one.
    c, u = jnp.array([1.0, 2.0]), jnp.array([0.5, -1.0])
    np.testing.assert_array_equal(cnd.guided(c, u, 0.0), c)
    np.testing.assert_array_equal(cnd.guided(c, u, -1.0), u)
    np.testing.assert_allclose(cnd.guided(c, u, 2.0), c + 2.0 * (c - u))
    # Logits: softmax of the guided logits is p_c^(1+w) / p_null^w, renormalised.
    lp_c = jax.nn.log_softmax(jnp.array([0.1, 1.0, -2.0]))
    lp_u = jax.nn.log_softmax(jnp.array([1.0, 0.0, 0.5]))
    w = 1.5
    expected = np.exp(lp_c) ** (1 + w) / np.exp(lp_u) ** w
    np.testing.assert_allclose(jax.nn.softmax(cnd.guided_logits(lp_c, lp_u, w)),
                               expected / expected.sum(), rtol=1e-5)


def test_batches_are_checked_against_the_model():
    """Levels outside 0..L-1, float images or another shape are errors, not clipped numbers."""
    model, params = _model_and_params("gated_pixelcnn", FAMILIES["gated_pixelcnn"][1], 0)
    good = _batch()
    assert np.isfinite(model.log_prob(params, good)).all()
    bad_level = dict(good, image=np.full_like(good["image"], 17))
    with pytest.raises(ValueError, match=r"levels in \[17, 17\], outside this model's 0..16"):
        model.log_prob(params, bad_level)
    with pytest.raises(ValueError, match="integer levels"):
        model.log_prob(params, dict(good, image=good["image"].astype(np.float32)))
    with pytest.raises(ValueError, match="image_shape"):
        model.log_prob(params, dict(good, image=np.zeros((2, 16, 16, 1), np.uint8)))
    from genjax.eval.likelihood import nll_on_split

    with pytest.raises(ValueError, match="outside this model's"):
        nll_on_split(model, params, [bad_level], jax.random.key(0))


def test_labels_of_a_batch_or_a_condition():
    batch = {"label": np.array([3, 1])}
    np.testing.assert_array_equal(cnd.labels_of(batch, None, 10), [3, 1])
    assert cnd.labels_of(batch, None, 0) is None           # unconditional: labels ignored
    with pytest.raises(ValueError, match="batches need 'label'"):
        cnd.labels_of({"image": np.zeros(2)}, None, 10)
    np.testing.assert_array_equal(cnd.labels_of(None, 3, 2), [0, 1, 0])
