"""Bit-exact resume beyond the VAE: a run killed after an odd step and rerun ends where an
uninterrupted run ends, for DDPM (with dropout and label dropout), SR3 (its noise
augmentation), a flow, an autoregressive model with dropout, the token prior, CLIP (a
learned temperature beside the networks) and text-to-image diffusion (caption dropout),
with 1 and 3 steps per call."""

from __future__ import annotations

import pytest

from genjax.configs import make_config
from genjax.train.trainer import train_and_evaluate
from tests.train.test_trainer import _fail_after, assert_trees_equal

TRAIN = dict(batch_size=8, num_steps=9, log_every=3, checkpoint_every=3, snapshot_every=0,
             sample_every=0, num_sample_images=0, ema_decay=0.9, progress=False)


def _config(family: str, steps_per_call: int):
    training = dict(TRAIN, steps_per_call=steps_per_call)
    if family == "token_prior":
        from tests.models.test_token_prior import tiny_prior_config

        config = tiny_prior_config("class", **training)
        with config.unlocked():
            config.model.dropout = 0.2
        return config
    if family == "text2img_diffusion":
        from tests.models.test_text2img_diffusion import tiny_t2i_config

        return tiny_t2i_config(**training)
    model, dataset, kwargs = {
        "ddpm": ("ddpm", "digits", dict(num_timesteps=10, base_channels=8, channel_mults=(1,),
                                        attention_resolutions=(), num_heads=1, dropout=0.1,
                                        num_classes=10, label_dropout=0.2, sample_steps=2)),
        # super-resolution 4x4 -> 8x8 with dropout and noise augmentation
        "sr3": ("ddpm", "digits", dict(num_timesteps=10, base_channels=8, channel_mults=(1,),
                                       attention_resolutions=(), num_heads=1, dropout=0.1,
                                       low_res_shape=(4, 4, 1), max_aug_level=0.5,
                                       sample_steps=2)),
        "flow": ("realnvp", "digits", dict(num_scales=1, steps_per_scale=2, hidden=8)),
        "pixel_transformer": ("pixel_transformer", "digits",
                              dict(dim=16, num_layers=1, num_heads=2, dropout=0.2)),
        "clip": ("clip", "digits", dict(captions="digits", text_len=3, embed_dim=8,
                                        image_channels=(4,), image_hidden=16, text_dim=16,
                                        text_layers=1, text_heads=2)),
    }[family]
    return make_config(model, dataset,
                       model_kwargs=dict(kwargs, image_shape=(8, 8, 1), num_levels=17),
                       training=training, optimizer=dict(learning_rate=3e-3, grad_clip=1.0),
                       eval=dict(num_samples=0))


@pytest.mark.slow
@pytest.mark.parametrize("steps_per_call", [1, 3])
@pytest.mark.parametrize("family", ["ddpm", "sr3", "flow", "pixel_transformer",
                                    "token_prior", "clip", "text2img_diffusion"])
def test_killed_after_an_odd_step_resumes_bit_exactly(family, steps_per_call, tmp_path,
                                                      monkeypatch):
    config = _config(family, steps_per_call)
    reference = train_and_evaluate(config, str(tmp_path / "ref"))
    # K = 1: killed after step 5 (saved at 3); K = 3: killed after step 3, which was saved.
    calls = 5 if steps_per_call == 1 else 1
    _fail_after(monkeypatch, calls, RuntimeError("killed"))
    with pytest.raises(RuntimeError, match="killed"):
        train_and_evaluate(config, str(tmp_path / "cut"))
    monkeypatch.undo()
    resumed = train_and_evaluate(config, str(tmp_path / "cut"))
    assert int(resumed.step) == 9
    assert_trees_equal(resumed, reference)
