"""SR3 super-resolution 16x16 -> 32x32 on shapes: the 2x2 average-pooled target, upsampled
(nearest) and concatenated to x_t, noise-conditioning augmentation s ~ U(0, 0.3) in
training and s = 0.1 at sampling (see configs/sr3_digits.py and docs/architecture.md).
A narrow U-Net (16 channels, attention only in the 8x8 middle) so that 1,200 steps train
in about 15 minutes on 2 CPU cores. No cascade here: there is no 16x16 shapes dataset for
a base model (a base_workdir of a DDPM at (16, 16, 1) would do).

    genjax train  --config configs/sr3_shapes.py --workdir runs/sr3_shapes
    genjax eval   --workdir runs/sr3_shapes     # PSNR of SR outputs vs bicubic upsampling
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "ddpm", "shapes",
        model_kwargs=dict(image_shape=(32, 32, 1), num_levels=256, num_timesteps=1000,
                          schedule="cosine", target="eps", base_channels=16,
                          channel_mults=(1, 2, 2), num_res_blocks=1, attention_resolutions=(),
                          sampler="ddim", sample_steps=50, eta=0.0, low_res_shape=(16, 16, 1),
                          low_res_upsample="nearest", max_aug_level=0.3,
                          sampling_aug_level=0.1),
        training=dict(batch_size=32, num_steps=1200, log_every=100, checkpoint_every=400,
                      num_sample_images=0, ema_decay=0.999),
        optimizer=dict(learning_rate=2e-4, warmup_steps=200, grad_clip=1.0),
        eval=dict(batch_size=128, num_examples=128, num_samples=0))
