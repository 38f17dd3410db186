"""Flow matching (rectified flow) on 16x16 digits with the DDPM U-Net as velocity network.

    genjax train  --config configs/flow_matching_digits.py --workdir runs/fm_digits
    genjax sample --workdir runs/fm_digits --num 64 --out fm.png
    genjax eval   --workdir runs/fm_digits          # dequantized flow-ODE bound, FID

Reflow (a 2-rectified flow trained on the pairs of the first, from its weights):

    genjax train --config configs/flow_matching_digits.py --workdir runs/fm_digits_reflow \
        --config.model.teacher_workdir=runs/fm_digits --config.model.reflow_steps=20 \
        --config.model.sample_steps=4 --config.model.sampler=euler

One-step distillation of that 2-rectified flow (v(x_0, 0) trained onto its ODE end):

    genjax train --config configs/flow_matching_digits.py --workdir runs/fm_digits_1step \
        --config.model.teacher_workdir=runs/fm_digits_reflow --config.model.distill=true \
        --config.model.sampler=euler --config.model.sample_steps=1

``--config.model.path=ot`` trains on the conditional optimal-transport path with
``sigma_min``; ``--config.model.coupling=ot`` pairs each batch's noise with its images by
minibatch optimal transport (an exact assignment), for straighter paths:

    genjax train --config configs/flow_matching_digits.py --workdir runs/fm_digits_ot \
        --config.model.coupling=ot
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "flow_matching",
        "digits16",
        model_kwargs=dict(
            image_shape=(16, 16, 1),
            num_levels=256,
            path="rectified",
            base_channels=32,
            channel_mults=(1, 2),
            num_res_blocks=1,
            attention_resolutions=(8,),
            sampler="heun",
            sample_steps=50,
            log_prob_trace="hutchinson",
            log_prob_steps=100,
        ),
        training=dict(batch_size=64, num_steps=4000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, ema_decay=0.999),
        optimizer=dict(learning_rate=2e-4, warmup_steps=200, grad_clip=1.0),
        # the likelihood integrates a U-Net ODE (400 evaluations a batch): 256 test images
        eval=dict(batch_size=128, num_examples=256, num_samples=500),
    )
