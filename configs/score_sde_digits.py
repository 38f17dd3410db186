"""Score SDE on 16x16 digits (256 levels): the DDPM U-Net as a noise-predicting score model.

The argument picks the forward SDE (and a matching sampler):

    genjax train --config configs/score_sde_digits.py:vp    --workdir runs/score_vp
    genjax train --config configs/score_sde_digits.py:subvp --workdir runs/score_subvp
    genjax train --config configs/score_sde_digits.py:ve    --workdir runs/score_ve
    genjax train --config configs/score_sde_digits.py:ncsn  --workdir runs/ncsn
    genjax eval  --workdir runs/score_vp     # dequantized PF-ODE bound in bits/dim, FID

vp and subvp sample by Euler-Maruyama, ve by predictor-corrector (Langevin corrector,
snr 0.16), ncsn is ve with NCSN's annealed Langevin dynamics over 50 geometric noise levels
(the VE score network evaluated at those levels). Change the sampler of a trained run with
``--config.model.sampler=ode`` (Heun on the probability-flow ODE).
"""

from genjax.configs import make_config

SDE_KWARGS = {
    "vp": dict(sde="vp", beta_min=0.1, beta_max=20.0, sampler="em", sample_steps=200),
    "subvp": dict(sde="subvp", beta_min=0.1, beta_max=20.0, sampler="em", sample_steps=200),
    # sigma_max >= the largest distance between two training images in [-1, 1] (16.8)
    "ve": dict(sde="ve", sigma_min=0.01, sigma_max=20.0, sampler="pc", sample_steps=100,
               snr=0.16, corrector_steps=1),
    "ncsn": dict(sde="ve", sigma_min=0.01, sigma_max=20.0, sampler="annealed_langevin",
                 sample_steps=50, steps_per_level=5, langevin_step_size=2e-5),
}


def get_config(sde: str = "vp"):
    if sde not in SDE_KWARGS:
        raise ValueError(f"unknown SDE {sde!r} for this config; choose one of "
                         f"{sorted(SDE_KWARGS)}")
    return make_config(
        "score_sde",
        "digits16",
        model_kwargs=dict(
            image_shape=(16, 16, 1),
            num_levels=256,
            base_channels=32,
            channel_mults=(1, 2),
            num_res_blocks=1,
            attention_resolutions=(8,),
            log_prob_trace="hutchinson",
            log_prob_steps=100,
            **SDE_KWARGS[sde],
        ),
        training=dict(batch_size=64, num_steps=4000, log_every=100, checkpoint_every=1000,
                      sample_every=1000, ema_decay=0.999),
        optimizer=dict(learning_rate=2e-4, warmup_steps=200, grad_clip=1.0),
        # the likelihood integrates a U-Net ODE (400 evaluations a batch): 256 test images
        eval=dict(batch_size=128, num_examples=256, num_samples=500),
    )
