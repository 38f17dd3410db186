"""SR3 super-resolution 8x8 -> 16x16 on digits16, and the two-stage cascade.

The SR model is the DDPM of configs/ddpm_digits.py given the 2x2 average-pooled target
(``low_res_shape``), upsampled (nearest) and concatenated to x_t, with noise-conditioning
augmentation s ~ U(0, 0.3) in training and s = 0.1 at sampling (Ho et al. 2021).
``get_config("base")`` is the first stage: a DDPM on the 8x8 ``digits``.

    genjax train  --config configs/sr3_digits.py --workdir runs/sr3_digits
    genjax eval   --workdir runs/sr3_digits     # PSNR vs bicubic, FID of SR outputs
    # the cascade: a base at 8x8, then the SR model on top of it
    genjax train  --config configs/sr3_digits.py:base --workdir runs/sr3_digits_base
    genjax train  --config configs/sr3_digits.py --workdir runs/sr3_cascade \\
        --config.model.base_workdir=runs/sr3_digits_base \\
        --config.training.num_sample_images=64 --config.eval.num_samples=500
    genjax sample --workdir runs/sr3_cascade --num 64 --out cascade.png
"""

from genjax.configs import make_config

UNET = dict(num_timesteps=1000, schedule="cosine", target="eps", base_channels=32,
            channel_mults=(1, 2), num_res_blocks=1, sampler="ddim", sample_steps=50, eta=0.0)
TRAINING = dict(batch_size=64, num_steps=1500, log_every=100, checkpoint_every=500,
                sample_every=500, ema_decay=0.999)


def get_config(stage: str = "sr"):
    if stage == "base":
        return make_config(
            "ddpm", "digits",
            model_kwargs=dict(UNET, image_shape=(8, 8, 1), num_levels=17,
                              attention_resolutions=(4,)),
            training=TRAINING,
            optimizer=dict(learning_rate=2e-4, warmup_steps=200, grad_clip=1.0),
            eval=dict(batch_size=128, num_examples=128, num_samples=500))
    if stage != "sr":
        raise ValueError(f"stage must be 'sr' or 'base', got {stage!r}")
    return make_config(
        "ddpm", "digits16",
        model_kwargs=dict(UNET, image_shape=(16, 16, 1), num_levels=256,
                          attention_resolutions=(8,), low_res_shape=(8, 8, 1),
                          low_res_upsample="nearest", max_aug_level=0.3,
                          sampling_aug_level=0.1, base_workdir=""),
        # Without a base no images can be drawn unconditionally: no grids, no sample FID
        # (genjax eval measures SR outputs on the test images instead).
        training=dict(TRAINING, num_sample_images=0),
        optimizer=dict(learning_rate=2e-4, warmup_steps=200, grad_clip=1.0),
        eval=dict(batch_size=128, num_examples=128, num_samples=0))
