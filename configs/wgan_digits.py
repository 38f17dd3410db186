"""WGAN with weight clipping on 16x16 digits (Arjovsky et al., 2017): a critic without
normalisation whose weights are clipped to [-0.01, 0.01] after every update, 5 critic
updates per generator update, RMSProp(5e-5).

    genjax train --config configs/wgan_digits.py --workdir runs/wgan_digits
    genjax eval  --workdir runs/wgan_digits
"""

from genjax.configs import load_sibling


def get_config(dataset: str = "digits16"):
    config = load_sibling(__file__, "dcgan_digits", dataset)
    config.model.update(loss="wasserstein", n_critic=5, critic_norm="none")
    config.training.batch_size = 320         # 5 critic slices of 64
    config.training.num_steps = 3000
    config.optimizer.update(name="rmsprop", learning_rate=5e-5, b2=0.99)
    with config.unlocked():
        config.optimizer.groups.discriminator = dict(clip_weights=0.01)
    return config
