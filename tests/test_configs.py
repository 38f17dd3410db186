"""Every config in configs/ loads, is locked, builds its model and matches its data."""

import glob
import json
import os

import pytest

from genjax import data as gdata
from genjax import models
from genjax.configs import load_sibling
from genjax.train.config import from_config
from genjax.train.trainer import check_data_matches_model
from tests.models.test_token_prior import trained_vqvae_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def test_there_are_configs():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {"vae_digits.py", "cvae_digits.py", "beta_vae_shapes.py", "ddpm_digits.py",
            "ddpm_cond_digits.py", "ddpm_toy2d.py", "ldm_digits.py", "fvsbn.py", "nade.py",
            "made.py", "pixelcnn.py", "gated_pixelcnn.py", "pixelcnnpp.py", "wavenet.py",
            "pixel_transformer.py", "realnvp_toy2d.py", "realnvp_digits.py", "glow_digits.py",
            "glow_cond_digits.py", "vqvae_digits.py", "vqvae_shapes.py",
            "token_prior_digits.py", "text2img_shapes.py",
            "text2img_diffusion_shapes.py", "sr3_digits.py", "sr3_shapes.py"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_builds_and_matches_its_data(path, trained_tiny):
    config = load_sibling(path, os.path.basename(path)[:-3])
    with pytest.raises(AttributeError):
        config.training.no_such_key = 1          # locked
    if config.model.get("autoencoder_workdir"):  # latent models: a trained tiny VAE stands in
        config.model.autoencoder_workdir = trained_tiny[1]
    if config.model.get("vqvae_workdir"):        # token priors: a tiny VQ-VAE on their data
        config.model.vqvae_workdir = trained_vqvae_for(
            config.data.name, tuple(config.model.image_shape), config.model.num_levels)
    from_config(config)
    model = models.build(config.model)
    _, info = gdata.load(config.data.name, "train", 8, data_dir=config.data.data_dir or None)
    check_data_matches_model(model, info)


def test_token_prior_digits_takes_text_conditioning():
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), "token_prior_digits", "text")
    assert config.model.conditioning == "text" and config.model.num_classes == 0
    config.model.vqvae_workdir = trained_vqvae_for("digits16", (16, 16, 1), 256)
    model = models.build(config.model)
    text, _ = model.condition(2, prompt="a handwritten three")
    assert model.text_len == 3 and text.shape == (2, 3)
    with pytest.raises(ValueError, match="'class' or 'text'"):
        load_sibling(os.path.join(ROOT, "configs", "x.py"), "token_prior_digits", "none")


AUTOREGRESSIVE = ["fvsbn", "nade", "made", "pixelcnn", "gated_pixelcnn", "wavenet",
                  "pixel_transformer", "row_lstm", "diagonal_bilstm"]


@pytest.mark.parametrize("dataset", ["binarized_digits", "digits", "digits16", "shapes"])
@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_autoregressive_configs_take_the_dataset(name, dataset):
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), name, dataset)
    assert config.data.name == dataset
    model = models.build(config.model)
    _, info = gdata.load(dataset, "train", 8)
    check_data_matches_model(model, info)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_sibling(os.path.join(ROOT, "configs", "x.py"), name, "no_such_data")


@pytest.mark.slow
def test_pixelcnnpp_rgb_config_trains_on_mock_cifar10(tmp_path):
    """The RGB config (logistic mixture, coupled channels) on tfds' mock CIFAR-10."""
    import numpy as np
    import tensorflow_datasets as tfds

    from genjax.train.trainer import train_and_evaluate

    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), "pixelcnnpp", "cifar10")
    assert tuple(config.model.image_shape) == (32, 32, 3) and config.model.output == "mixture"
    config.unlock()
    config.data.data_dir = str(tmp_path / "data")
    config.model.update(features=8, num_layers=1, first_kernel=3, num_mixtures=2)
    config.training.update(batch_size=4, num_steps=2, log_every=1, checkpoint_every=2,
                           sample_every=0, num_sample_images=2, progress=False)
    config.lock()
    with tfds.testing.mock_data(num_examples=16):
        train_and_evaluate(config, str(tmp_path / "run"))
    metrics = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert len(metrics) == 2 and all(np.isfinite(m["bpd"]) for m in metrics)
    assert (tmp_path / "run" / "samples" / "step_0000002.png").exists()


def test_the_dataset_table_of_the_autoregressive_configs_matches_the_data():
    from genjax.configs import IMAGE_DATASETS

    from genjax.configs import DATASET_CLASSES

    for name in set(IMAGE_DATASETS) & set(gdata.list_datasets()):
        _, info = gdata.load(name, "train", 8)
        assert IMAGE_DATASETS[name] == (tuple(info.shape), info.num_levels), name
        assert DATASET_CLASSES[name] == (info.num_classes or 0), name


def test_ddpm_cifar_bench_is_the_ddpm_cifar10_unet():
    """Ho et al.'s CIFAR-10 U-Net (35.7M parameters in the paper; 38,307,203 here, where
    AdaGN gives each of the 22 ResBlocks a scale as well as a shift from the 512-wide time
    embedding: 512 x (5 x 128 + 17 x 256) = 2,555,904 more) on 32x32x3 shapes_color, batch
    128, with the compute dtype as the config argument."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    path = os.path.join(ROOT, "configs", "x.py")
    config = load_sibling(path, "ddpm_cifar_bench")
    assert config.model.compute_dtype == "float32" and config.training.batch_size == 128
    assert tuple(config.model.image_shape) == (32, 32, 3) and not config.model.remat
    assert load_sibling(path, "ddpm_cifar_bench", "bfloat16").model.compute_dtype == "bfloat16"
    with pytest.raises(ValueError, match="compute dtype"):
        load_sibling(path, "ddpm_cifar_bench", "float16")
    model = models.build(config.model)
    batch = {"image": jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.uint8)}
    params = jax.eval_shape(model.init, jax.random.key(0), batch)
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == 38_307_203
