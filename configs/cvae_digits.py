"""Conditional VAE on digits: q(z|x, y) and p(x|z, y) see the class one-hot y.

    genjax train --config configs/cvae_digits.py --workdir runs/cvae_digits
    genjax sample --workdir runs/cvae_digits --num 10 --cond 3 --out threes.png
"""

from genjax.configs import load_sibling


def get_config():
    config = load_sibling(__file__, "vae_digits")
    config.model.num_classes = 10
    return config
