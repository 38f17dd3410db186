"""Class-conditional DDPM on 16x16 digits with classifier-free guidance.

Labels are dropped to a null class 10% of the time in training; sample with
``--cond 3`` and a guidance weight w (eps = (1 + w) eps(x, y) - w eps(x, null)).

    genjax train  --config configs/ddpm_cond_digits.py --workdir runs/ddpm_cond_digits
    genjax sample --workdir runs/ddpm_cond_digits --num 16 --cond 3 --out threes.png
"""

from genjax.configs import load_sibling


def get_config():
    config = load_sibling(__file__, "ddpm_digits")
    config.model.num_classes = 10
    config.model.label_dropout = 0.1
    config.model.guidance_scale = 2.0
    return config
