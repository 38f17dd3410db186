"""WGAN-GP on 16x16 digits (Gulrajani et al., 2017): the DCGAN networks with a critic
(layer norm, no sigmoid), the gradient penalty lambda = 10 on random interpolates, 5 critic
updates per generator update, Adam(1e-4, b1 = 0.5, b2 = 0.9).

    genjax train --config configs/wgan_gp_digits.py --workdir runs/wgan_gp_digits
    genjax eval  --workdir runs/wgan_gp_digits
"""

from genjax.configs import load_sibling


def get_config(dataset: str = "digits16"):
    config = load_sibling(__file__, "dcgan_digits", dataset)
    config.model.update(loss="wasserstein", gradient_penalty=10.0, n_critic=5,
                        critic_norm="layer")
    # Each step draws n_critic slices of the batch: 5 x 64 examples.
    config.training.batch_size = 320
    config.training.num_steps = 3000
    config.optimizer.update(learning_rate=1e-4, b1=0.5, b2=0.9)
    return config
