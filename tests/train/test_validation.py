"""Validation during training (genjax/train/validation.py and the trainer): the objective per
capability, checkpoints/best, early stopping, and both across a resume."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from genjax.configs import load_sibling
from genjax.train.checkpoint import Checkpointer, CheckpointError, abstract
from genjax.train.logging import read_metrics
from genjax.train.trainer import build_run, initial_state, load_run, train_and_evaluate
from genjax.train.validation import BestTracker, make_validation, validation_batches
from tests.conftest import tiny_vae_config
from tests.train.test_trainer import assert_trees_equal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def validated_config(num_steps: int, learning_rate: float, patience: int):
    """The tiny VAE validated every 2 steps on 48 examples, a checkpoint and a snapshot at
    each validation, no EMA (so a learning rate of 0 keeps the validated params constant)."""
    config = tiny_vae_config(num_steps=num_steps, checkpoint_every=2, snapshot_every=2,
                             ema_decay=0.0, num_sample_images=0)
    with config.unlocked():
        config.optimizer.learning_rate = learning_rate
        config.eval.validation_every = 2
        config.eval.validation_examples = 48
        config.eval.patience = patience
    return config


def validations(workdir: str, metric: str = "validation_nll") -> dict[int, float]:
    return {m["step"]: m[metric] for m in read_metrics(workdir) if metric in m}


def best_record(workdir: str) -> dict:
    with open(os.path.join(workdir, "checkpoints", "best.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_a_constant_model_stops_after_patience_and_keeps_the_first_best(tmp_path):
    """Learning rate 0: every validation equals the first, none improves, so with patience 1
    training stops at the second validation (step 4 of 8), saving a latest checkpoint there;
    the best is the first validation, and load_run restores it."""
    workdir = str(tmp_path)
    state = train_and_evaluate(validated_config(8, 0.0, patience=1), workdir)
    assert int(state.step) == 4
    values = validations(workdir)
    assert list(values) == [2, 4] and values[2] == values[4] and np.isfinite(values[2])
    assert best_record(workdir) == {"metric": "validation_nll", "value": values[2], "step": 2}
    assert os.listdir(os.path.join(workdir, "checkpoints", "latest")) == ["4"]
    _, _, best, _ = load_run(workdir, "best")
    assert int(best.step) == 2
    assert_trees_equal(best.params, load_run(workdir, step=2)[2].params)


def test_best_is_refused_clearly_for_a_run_without_validation(trained_tiny):
    _, workdir, _ = trained_tiny
    with pytest.raises(CheckpointError, match="no best checkpoint .* without validation"):
        load_run(workdir, "best")
    assert not os.path.exists(os.path.join(workdir, "checkpoints", "best"))
    with pytest.raises(ValueError, match="best, latest or a step number"):
        load_run(workdir, "newest")
    assert int(load_run(workdir, "4")[2].step) == 4
    assert int(load_run(workdir, "latest")[2].step) == 8


@pytest.mark.slow
def test_models_without_likelihood_validate_their_loss(tmp_path):
    """A VQ-VAE (no likelihood, one phase): the objective is model.loss, averaged over the
    first 40 validation examples (batches of 16, 16, 8) weighted by batch size, each batch
    with the fixed key fold_in(key(seed + 2), i)."""
    from tests.models.test_vqvae import tiny_vqvae_config

    config = tiny_vqvae_config()
    with config.unlocked():
        config.eval.batch_size = 16
        config.eval.validation_examples = 40
    model, optimizer, _, info, (_, _, ecfg) = build_run(config)
    params = initial_state(config, model, optimizer, info).ema_params
    batches = validation_batches(config, ecfg)
    assert [len(b["image"]) for b in batches] == [16, 16, 8]
    name, validate = make_validation(model, batches, config.seed)
    assert name == "validation_loss"
    key = jax.random.key(config.seed + 2)
    losses = [float(model.loss(params, b, jax.random.fold_in(key, i))[0])
              for i, b in enumerate(batches)]
    np.testing.assert_allclose(validate(params), np.average(losses, weights=[16, 16, 8]),
                               rtol=1e-5)


def test_tracker_keeps_the_lowest_and_counts_validations_since():
    tracker = BestTracker("validation_nll")
    assert [tracker.update(s, v) for s, v in [(2, 5.0), (4, 4.0), (6, 4.0), (8, 4.5)]] == [
        True, True, False, False]
    assert (tracker.best_step, tracker.best_value, tracker.stale) == (4, 4.0, 2)
    assert BestTracker.from_dict(json.loads(json.dumps(tracker.to_dict()))) == tracker


def test_best_checkpoint_replaces_the_previous_one_and_records_it(tmp_path):
    """save_best keeps one state in checkpoints/best and best.json names it; restore("best")
    reads it back (also after the same step is saved again, as a resumed run does)."""
    ckpt = Checkpointer(str(tmp_path))
    tree = {"w": np.arange(3.0)}
    for step, scale in [(2, 1.0), (4, 2.0), (4, 3.0)]:
        ckpt.save_best(step, {"w": scale * tree["w"]}, {"epoch": 0, "index": 0},
                       {"metric": "validation_loss", "value": scale})
    assert os.listdir(tmp_path / "checkpoints" / "best") == ["4"]
    assert ckpt.best_record() == {"metric": "validation_loss", "value": 3.0, "step": 4}
    state, data = ckpt.restore(abstract(tree), "best")
    np.testing.assert_array_equal(state["w"], 3.0 * tree["w"])
    ckpt.close()


def test_models_trained_by_several_phases_are_refused_before_compiling(tmp_path):
    config = load_sibling(os.path.join(ROOT, "configs", "x.py"), "dcgan_digits")
    with config.unlocked():
        config.eval.validation_every = config.training.steps_per_call
    with pytest.raises(ValueError, match="several phases .*discriminator.*generator"):
        train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")


def test_validation_settings_are_checked(tmp_path):
    config = tiny_vae_config()                       # steps_per_call = 2
    with config.unlocked():
        config.eval.validation_every = 3
    with pytest.raises(ValueError, match="validation_every = 3 must be a multiple"):
        build_run(config)
    with config.unlocked():
        config.eval.validation_every = 0
        config.eval.patience = 2
    with pytest.raises(ValueError, match="patience = 2 needs eval.validation_every"):
        build_run(config)


@pytest.mark.slow
def test_best_and_patience_survive_resume_and_eval_reads_best(tmp_path):
    """Run A trains 4 steps (validations at 2 and 4 improve); B resumes to 6 with learning
    rate 0, so validation 6 equals 4: compared against the stored best it is no new best
    (a restarted tracker would take it) and the patience count becomes 1; C resumes to 12
    and stops at 8, the second validation without improvement under patience 2 (a count
    restarted at the resume would stop at 10). Rerunning C trains nothing. genjax eval
    --checkpoint best evaluates step 4."""
    import subprocess
    import sys

    workdir = str(tmp_path / "run")
    train_and_evaluate(validated_config(4, 3e-3, patience=2), workdir)
    values = validations(workdir)
    assert list(values) == [2, 4] and values[4] < values[2]
    assert best_record(workdir)["step"] == 4

    train_and_evaluate(validated_config(6, 0.0, patience=2), workdir)
    values = validations(workdir)
    assert list(values) == [2, 4, 6] and values[6] == values[4]
    assert best_record(workdir) == {"metric": "validation_nll", "value": values[4], "step": 4}

    state = train_and_evaluate(validated_config(12, 0.0, patience=2), workdir)
    assert int(state.step) == 8 and list(validations(workdir)) == [2, 4, 6, 8]
    assert best_record(workdir)["step"] == 4
    lines = read_metrics(workdir)
    assert int(train_and_evaluate(validated_config(12, 0.0, patience=2), workdir).step) == 8
    assert read_metrics(workdir) == lines

    _, _, best, _ = load_run(workdir, "best")
    assert int(best.step) == 4
    assert_trees_equal(best, load_run(workdir, 4)[2])
    proc = subprocess.run([sys.executable, "-m", "genjax.cli", "eval", f"--workdir={workdir}",
                           "--checkpoint=best"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(workdir, "eval.json")) as f:
        assert json.load(f)["checkpoint_step"] == 4
