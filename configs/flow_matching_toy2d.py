"""Flow matching (rectified flow) on 2-D points (toy2d/moons) with a residual MLP.

    genjax train --config configs/flow_matching_toy2d.py --workdir runs/fm_toy2d
    genjax train --config configs/flow_matching_toy2d.py --workdir runs/fm_toy2d_reflow \
        --config.model.teacher_workdir=runs/fm_toy2d --config.model.sample_steps=2
    genjax train --config configs/flow_matching_toy2d.py --workdir runs/fm_toy2d_ot \
        --config.model.coupling=ot           # minibatch OT pairing of noise and data

``genjax eval`` reports the flow-ODE log-density of the test points (exact trace) and the
2-Wasserstein distance and MMD of samples to them.
"""

from genjax.configs import make_config


def get_config():
    return make_config(
        "flow_matching",
        "toy2d/moons",
        model_kwargs=dict(
            image_shape=(2,),
            num_levels=0,
            data_key="point",
            path="rectified",
            mlp_hidden=128,
            mlp_blocks=3,
            sampler="heun",
            sample_steps=50,
            log_prob_trace="exact",
            log_prob_steps=100,
        ),
        training=dict(batch_size=256, num_steps=3000, log_every=100, checkpoint_every=1000,
                      num_sample_images=1000, ema_decay=0.995),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100, grad_clip=1.0),
        eval=dict(num_examples=1000),
    )
