"""End to end through the real CLI: train, resume, sample, eval; and the CLI's errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "vae_digits.py")
TINY = ["--config.model.channels=(8,)", "--config.model.hidden_dim=32",
        "--config.model.latent_dim=4", "--config.model.iwae_samples=4",
        "--config.training.batch_size=16", "--config.training.log_every=2",
        "--config.training.checkpoint_every=2", "--config.training.sample_every=0",
        "--config.training.num_sample_images=4", "--config.training.progress=False",
        "--config.eval.num_examples=32", "--config.eval.num_samples=64",
        "--config.eval.sample_batch_size=32", "--config.optimizer.warmup_steps=0"]


def genjax(*args, check=True, cache=None):
    env = dict(os.environ, GENJAX_CACHE=str(cache)) if cache else None
    proc = subprocess.run([sys.executable, "-m", "genjax.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_train_resume_sample_eval(tmp_path):
    workdir = str(tmp_path / "run")
    genjax("train", f"--config={CONFIG}", f"--workdir={workdir}",
           "--config.training.num_steps=2", *TINY)
    genjax("train", f"--config={CONFIG}", f"--workdir={workdir}",
           "--config.training.num_steps=4", *TINY)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [2, 4]
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints", "latest"))) == ["4"]

    out = str(tmp_path / "grid.png")
    proc = genjax("sample", f"--workdir={workdir}", "--num=9", f"--out={out}")
    assert "wrote 9 samples" in proc.stdout
    grid = np.asarray(Image.open(out))
    assert grid.ndim == 2 and grid.shape[0] == grid.shape[1] > 3 * 8

    cache = tmp_path / "cache"
    proc = genjax("eval", f"--workdir={workdir}", cache=cache)
    with open(os.path.join(workdir, "eval.json")) as f:
        results = json.load(f)
    assert list((cache / "features").iterdir())               # reference stats cached
    assert results["num_samples"] == 64 and results["fid_digits"] > 0
    assert 0 <= results["precision"] <= 1 and 0 <= results["recall"] <= 1
    assert 1 <= results["is_digits"] <= 10
    assert results["num_examples"] == 32
    assert 0 < results["bits_per_dim"] < 12
    assert results["bits_per_dim_is"] == "IWAE lower bound"
    assert 0 < results["independent_pixel_bpd"] < 8
    assert "bits_per_dim" in proc.stdout


def test_unknown_override_key_names_the_valid_ones(tmp_path):
    proc = genjax("train", f"--config={CONFIG}", f"--workdir={tmp_path}",
                  "--config.training.num_step=3", check=False)
    assert proc.returncode == 2
    assert "config.training.num_step" in proc.stderr and "'num_steps'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_wrong_type_override_is_named(tmp_path):
    proc = genjax("train", f"--config={CONFIG}", f"--workdir={tmp_path}",
                  "--config.training.num_steps=abc", check=False)
    assert proc.returncode == 2 and "config.training.num_steps" in proc.stderr
    assert not os.listdir(tmp_path)


def test_sample_without_a_run_is_a_clear_error(tmp_path):
    proc = genjax("sample", f"--workdir={tmp_path}", check=False)
    assert proc.returncode == 1 and "is not a genjax run" in proc.stderr


def _digit_folder(path, images):
    path.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(path / f"{i:03d}.png")
    return str(path)


@pytest.mark.slow
def test_eval_folders_prints_the_table_and_writes_json(tmp_path):
    from genjax.data.digits import digits16

    images = np.asarray(digits16("test")["image"])
    real = _digit_folder(tmp_path / "real", images[:60])
    fake = _digit_folder(tmp_path / "fake", images[60:100])
    out = str(tmp_path / "metrics.json")
    proc = genjax("eval", f"--real={real}", f"--fake={fake}", f"--out={out}",
                  cache=tmp_path / "cache")
    with open(out) as f:
        results = json.load(f)
    assert results["features"] == "digits" and results["num_real"] == 60
    assert results["num_fake"] == 40 and results["fid_digits"] > 0
    assert 1 <= results["is_digits"] <= 10 and 0 <= results["precision"] <= 1
    assert "fid_digits" in proc.stdout and f"wrote {out}" in proc.stdout
    assert list((tmp_path / "cache" / "features").iterdir())  # real features cached

    proc = genjax("eval", f"--real={real}", f"--fake={tmp_path / 'missing'}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"genjax eval: error: no such folder: {tmp_path / 'missing'}"
    proc = genjax("eval", f"--real={real}", f"--fake={fake}", "--features=inception",
                  check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "need --inception_weights FILE" in proc.stderr


@pytest.mark.slow
def test_sample_with_a_prompt(tmp_path):
    """--prompt (with --temperature, --top_k, --guidance) reaches a text-conditioned token
    prior; a model without such an argument refuses the flag in one line."""
    from genjax.train.trainer import train_and_evaluate
    from tests.models.test_token_prior import tiny_prior_config, trained_vqvae_for

    workdir = str(tmp_path / "prior")
    train_and_evaluate(tiny_prior_config("text", num_steps=2, checkpoint_every=2), workdir)
    out = str(tmp_path / "prompt.png")
    proc = genjax("sample", f"--workdir={workdir}", "--num=4", f"--out={out}",
                  "--prompt=a handwritten three", "--temperature=0.8", "--top_k=4", "--guidance=1")
    assert "wrote 4 samples" in proc.stdout
    assert np.asarray(Image.open(out)).shape[0] > 2 * 8
    vqvae = trained_vqvae_for("digits", (8, 8, 1), 17)
    # (An unknown word is refused by the tokenizer: tests/models/test_token_prior.py.)
    proc = genjax("sample", f"--workdir={vqvae}", "--top_k=3", check=False)
    assert proc.returncode == 1 and "does not take --top_k" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # --cond is refused by a caption model (before any compile), with the way out named.
    proc = genjax("sample", f"--workdir={workdir}", "--cond=3", check=False)
    assert proc.returncode == 1 and "text-conditioned" in proc.stderr and "--prompt" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # A step that was never saved: the saved steps are listed.
    proc = genjax("sample", f"--workdir={vqvae}", "--step=7", check=False)
    assert proc.returncode == 1 and "no checkpoint of step 7" in proc.stderr
    assert "saved steps: 2" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_checkpoint_best_without_validation_is_one_line(trained_tiny):
    """--checkpoint best of a run trained without eval.validation_every: one line saying so
    (the success path: tests/train/test_validation.py)."""
    _, workdir, _ = trained_tiny
    proc = genjax("eval", f"--workdir={workdir}", "--checkpoint=best", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "no best checkpoint" in proc.stderr and "eval.validation_every" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_help_lists_the_commands_and_each_command_its_flags():
    proc = genjax("--help")
    for command in ("train", "sample", "eval"):
        assert f"\n  {command} " in proc.stdout
    proc = genjax("train", "--help")
    assert "--config" in proc.stdout and "--workdir" in proc.stdout
    assert "example:" in proc.stdout and "genjax train --config" in proc.stdout
    for flag in ("--coordinator_address", "--num_processes", "--process_id", "--distributed"):
        assert flag in proc.stdout          # multi-process training (docs/scaling.md)
    proc = genjax("sample", "--help")
    assert "--cond" in proc.stdout and "in turn" in proc.stdout and "--prompt" in proc.stdout
    assert "--checkpoint" in proc.stdout and "best" in proc.stdout
    assert "--config" not in proc.stdout
    proc = genjax("eval", "--help")
    assert "--real" in proc.stdout and "--fake" in proc.stdout


def test_config_errors_are_one_line_with_or_without_an_argument(tmp_path):
    pixelcnn = os.path.join(ROOT, "configs", "pixelcnn.py")
    cases = [
        ([f"--config={pixelcnn}:digits16", "--config.training.num_step=3"],
         "valid keys of config.training"),
        ([f"--config={pixelcnn}:no_such_data"], "unknown dataset 'no_such_data'"),
        ([f"--config={tmp_path / 'missing.py'}"], "does not load"),
        ([f"--config={CONFIG}", "--config.eval.sample_batch_size=0"],
         "eval.sample_batch_size must be positive"),
        ([f"--config={CONFIG}", "--config.training.snapshot_every=3"],
         "must be a multiple of training.checkpoint_every"),
    ]
    for args, message in cases:
        proc = genjax("train", f"--workdir={tmp_path / 'w'}", *args, check=False)
        assert proc.returncode in (1, 2) and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
