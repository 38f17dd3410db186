"""A noise-conditional classifier of 16x16 digits, for classifier guidance of a score SDE.

    genjax train  --config configs/noise_classifier_digits.py --workdir runs/classifier_vp
    genjax eval   --workdir runs/classifier_vp        # accuracy at t = 0, 0.25, ..., 1
    genjax train  --config configs/score_sde_digits.py:vp --workdir runs/score_vp_guided \
        --config.model.classifier_workdir=runs/classifier_vp
    genjax sample --workdir runs/score_vp_guided --cond 3 --classifier_scale 2 --out threes.png

The score network trains as without the classifier, which is frozen in its params; sampling
with a label adds gamma grad_x log p_phi(y | x_t). The classifier sees the noise through the
log-SNR, so one trained under the VP SDE also guides sub-VP and VE models over its range.
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "noise_classifier",
        "digits16",
        model_kwargs=dict(image_shape=(16, 16, 1), num_levels=256, num_classes=10, sde="vp",
                          base_channels=32, channel_mults=(1, 2), num_res_blocks=1),
        training=dict(batch_size=64, num_steps=2000, log_every=100, checkpoint_every=500,
                      num_sample_images=0, ema_decay=0.999),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100, grad_clip=1.0),
        eval=dict(num_samples=0),
    )
