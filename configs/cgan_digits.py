"""Class-conditional GAN on 16x16 digits: the generator sees a label embedding next to z,
the discriminator is a projection discriminator (Miyato & Koyama, 2018), hinge loss.

    genjax train  --config configs/cgan_digits.py --workdir runs/cgan_digits
    genjax sample --workdir runs/cgan_digits --num 16 --cond 7 --out sevens.png
    genjax eval   --workdir runs/cgan_digits     # FID ... and class accuracy of samples
"""

from genjax.configs import DATASET_CLASSES, load_sibling


def get_config(dataset: str = "digits16"):
    config = load_sibling(__file__, "dcgan_digits", dataset)
    config.model.update(num_classes=DATASET_CLASSES[dataset], loss="hinge")
    return config
