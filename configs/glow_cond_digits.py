"""Class-conditional Glow on 16x16 digits: the top prior is a function of the class and
every coupling and split prior sees a class embedding.

    genjax train --config configs/glow_cond_digits.py --workdir runs/glow_cond_digits
    genjax sample --workdir runs/glow_cond_digits --num 16 --cond 3 --out threes.png
"""

from genjax.configs import load_sibling


def get_config():
    config = load_sibling(__file__, "glow_digits")
    config.model.num_classes = 10
    return config
