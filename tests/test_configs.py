"""Every config in configs/ loads, is locked, builds its model and matches its data."""

import glob
import os

import pytest

from genjax import data as gdata
from genjax import models
from genjax.configs import load_sibling
from genjax.train.config import from_config
from genjax.train.trainer import check_data_matches_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def test_there_are_configs():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {"vae_digits.py", "cvae_digits.py", "beta_vae_shapes.py", "ddpm_digits.py",
            "ddpm_cond_digits.py", "ddpm_toy2d.py", "ldm_digits.py"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_builds_and_matches_its_data(path, trained_tiny):
    config = load_sibling(path, os.path.basename(path)[:-3])
    with pytest.raises(AttributeError):
        config.training.no_such_key = 1          # locked
    if config.model.get("autoencoder_workdir"):  # latent models: a trained tiny VAE stands in
        config.model.autoencoder_workdir = trained_tiny[1]
    from_config(config)
    model = models.build(config.model)
    _, info = gdata.load(config.data.name, "train", 8, data_dir=config.data.data_dir or None)
    check_data_matches_model(model, info)
