"""Score SDE on 2-D points (toy2d/moons) with a residual MLP score network.

    genjax train --config configs/score_sde_toy2d.py --workdir runs/score_toy2d
    genjax train --config configs/score_sde_toy2d.py:ve --workdir runs/score_toy2d_ve

The argument picks the forward SDE: vp (default, Euler-Maruyama), subvp, ve
(predictor-corrector) or ncsn (ve with annealed Langevin). ``genjax eval`` reports the
probability-flow ODE log-density of the test points (exact trace).
"""

from genjax.configs import make_config

SDE_KWARGS = {
    "vp": dict(sde="vp", sampler="em"),
    "subvp": dict(sde="subvp", sampler="em"),
    # sigma_max >= the largest distance between two training points (7)
    "ve": dict(sde="ve", sigma_min=0.01, sigma_max=10.0, sampler="pc", sample_steps=200),
    "ncsn": dict(sde="ve", sigma_min=0.01, sigma_max=10.0, sampler="annealed_langevin",
                 sample_steps=50, steps_per_level=10, langevin_step_size=1e-4),
}


def get_config(sde: str = "vp"):
    if sde not in SDE_KWARGS:
        raise ValueError(f"unknown SDE {sde!r} for this config; choose one of "
                         f"{sorted(SDE_KWARGS)}")
    kwargs = dict(image_shape=(2,), num_levels=0, data_key="point", mlp_hidden=128,
                  mlp_blocks=3, sample_steps=500, log_prob_trace="exact", log_prob_steps=100)
    kwargs.update(SDE_KWARGS[sde])
    return make_config(
        "score_sde",
        "toy2d/moons",
        model_kwargs=kwargs,
        training=dict(batch_size=256, num_steps=3000, log_every=100, checkpoint_every=1000,
                      num_sample_images=1000, ema_decay=0.995),
        optimizer=dict(learning_rate=1e-3, warmup_steps=100, grad_clip=1.0),
        eval=dict(num_examples=1000),
    )
