"""Trainer: exact resume, interruption, non-finite stop, checkpoint errors, logging."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from genjax.train import trainer as trainer_lib
from genjax.train.checkpoint import CheckpointError
from genjax.train.logging import read_metrics
from genjax.train.trainer import NonFiniteLossError, load_run, train_and_evaluate
from tests.conftest import tiny_vae_config


def assert_trees_equal(a, b):
    flat_a, tree_a = jax.tree.flatten(a)
    flat_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _fail_after(monkeypatch, calls: int, exc: BaseException):
    """Make the trainer's batch fetch raise ``exc`` on call ``calls + 1``."""
    real = trainer_lib._next_batches
    count = {"n": 0}

    def fake(it, k):
        count["n"] += 1
        if count["n"] > calls:
            raise exc
        return real(it, k)

    monkeypatch.setattr(trainer_lib, "_next_batches", fake)


def assert_resumes_bit_exactly(config, reference, tmp_path, monkeypatch, *, after: int = 3):
    """A run of ``config`` killed after ``after`` batch fetches (its last checkpoint at an
    earlier step), then rerun, ends equal to the uninterrupted ``reference`` state, bit for
    bit. Returns the resumed state."""
    workdir = str(tmp_path / "cut")
    _fail_after(monkeypatch, after, RuntimeError("killed"))
    with pytest.raises(RuntimeError, match="killed"):
        train_and_evaluate(config, workdir)
    monkeypatch.undo()
    resumed = train_and_evaluate(config, workdir)
    assert_trees_equal(resumed, reference)
    return resumed


def test_trained_run_writes_everything(trained_tiny):
    config, workdir, state = trained_tiny
    assert int(state.step) == 8
    metrics = read_metrics(workdir)
    assert [m["step"] for m in metrics] == [2, 4, 6, 8]
    assert all(np.isfinite(m["loss"]) and m["steps_per_sec"] > 0 for m in metrics)
    assert os.path.exists(os.path.join(workdir, "samples", "step_0000008.png"))
    assert os.path.exists(os.path.join(workdir, "config.json"))
    checkpoints = os.path.join(workdir, "checkpoints")
    assert sorted(os.listdir(os.path.join(checkpoints, "latest"))) == ["8"]
    assert sorted(os.listdir(os.path.join(checkpoints, "snapshots"))) == ["4", "8"]
    events = os.listdir(os.path.join(workdir, "tensorboard"))
    assert any(name.startswith("events.out.tfevents") for name in events)
    # EMA differs from params (decay 0.9) but stays close to them.
    p, e = jax.tree.leaves(state.params)[0], jax.tree.leaves(state.ema_params)[0]
    assert not np.array_equal(np.asarray(p), np.asarray(e))


@pytest.mark.slow
def test_resume_after_hard_kill_is_bit_exact(trained_tiny, tmp_path, monkeypatch):
    """Killed after step 6 (checkpoint at 4): the rerun redoes 5..8 and matches exactly."""
    config, _, reference = trained_tiny
    workdir = str(tmp_path / "run")
    _fail_after(monkeypatch, 3, RuntimeError("killed"))
    with pytest.raises(RuntimeError, match="killed"):
        train_and_evaluate(config, workdir)
    monkeypatch.undo()
    assert read_metrics(workdir)[-1]["step"] == 6
    resumed = train_and_evaluate(config, workdir)
    assert_trees_equal(resumed, reference)
    # The log reads as one run: no duplicated steps after the resume.
    assert [m["step"] for m in read_metrics(workdir)] == [2, 4, 6, 8]


@pytest.mark.slow
def test_keyboard_interrupt_saves_and_resumes_exactly(trained_tiny, tmp_path, monkeypatch):
    config, _, reference = trained_tiny
    workdir = str(tmp_path / "run")
    _fail_after(monkeypatch, 1, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, workdir)
    monkeypatch.undo()
    _, _, state, _ = load_run(workdir)
    assert int(state.step) == 2          # saved on interrupt, not at checkpoint_every = 4
    assert_trees_equal(train_and_evaluate(config, workdir), reference)


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(trained_tiny, tmp_path):
    config, workdir_ref, _ = trained_tiny
    workdir = str(tmp_path / "run")
    train_and_evaluate(tiny_vae_config(num_steps=4), workdir)
    bad = tiny_vae_config()
    with bad.unlocked():
        bad.optimizer.learning_rate = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"at step 6 \(.*loss=nan"):
        train_and_evaluate(bad, workdir)
    _, _, state, _ = load_run(workdir)
    assert int(state.step) == 4
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
    # ... and the good config resumes from it.
    assert int(train_and_evaluate(config, workdir).step) == 8


def test_unreadable_checkpoint_directory_is_refused_untouched(tmp_path, tiny_config):
    latest = tmp_path / "checkpoints" / "latest"
    latest.mkdir(parents=True)
    (latest / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="no checkpoint genjax can read"):
        train_and_evaluate(tiny_config, str(tmp_path))
    assert os.listdir(latest) == ["notes.txt"]


def test_corrupt_checkpoint_is_reported_not_overwritten(trained_tiny, tmp_path):
    import shutil

    config, workdir_ref, _ = trained_tiny
    workdir = tmp_path / "run"
    shutil.copytree(workdir_ref, workdir)
    step_dir = workdir / "checkpoints" / "latest" / "8"
    for path in step_dir.rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "state" in str(path):
            path.write_bytes(b"\0" * 8)
    before = sorted(str(p) for p in step_dir.rglob("*"))
    with pytest.raises(CheckpointError, match="could not restore step 8"):
        train_and_evaluate(config, str(workdir))
    assert sorted(str(p) for p in step_dir.rglob("*")) == before


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a genjax run"):
        load_run(str(tmp_path))


def test_image_shape_mismatch_fails_before_compiling(tmp_path):
    config = tiny_vae_config()
    with config.unlocked():
        config.data.name = "digits16"
    with pytest.raises(ValueError, match=r"image_shape = \(8, 8, 1\).*\(16, 16, 1\)"):
        train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")


def test_unknown_config_key_names_valid_keys(tmp_path):
    config = tiny_vae_config()
    with config.unlocked():
        config.training.num_step = 3
    with pytest.raises(ValueError, match=r"num_step.*valid keys.*num_steps"):
        train_and_evaluate(config, str(tmp_path))


def test_snapshot_restores_its_own_step(trained_tiny):
    _, workdir, _ = trained_tiny
    _, _, state, _ = load_run(workdir, step=4)
    assert int(state.step) == 4


def test_config_json_round_trips(trained_tiny):
    config, workdir, state = trained_tiny
    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)
    assert saved["model"]["latent_dim"] == config.model.latent_dim
    loaded_config, model, loaded, _ = load_run(workdir)
    assert_trees_equal(loaded.ema_params, state.ema_params)
    assert model.config.image_shape == (8, 8, 1)


def test_divergence_before_any_checkpoint_says_so_and_stops_at_once(tmp_path):
    # prefetch = 0: the fetches are then the calls made (prefetching reads 2 calls ahead).
    bad = tiny_vae_config(log_every=8, checkpoint_every=8, snapshot_every=0, prefetch=0)
    with bad.unlocked():
        bad.optimizer.learning_rate = float("nan")
    calls = {"n": 0}
    real = trainer_lib._next_batches

    def counted(it, k):
        calls["n"] += 1
        return real(it, k)

    trainer_lib._next_batches = counted
    try:
        with pytest.raises(NonFiniteLossError, match="No checkpoint was written yet") as err:
            train_and_evaluate(bad, str(tmp_path))
    finally:
        trainer_lib._next_batches = real
    assert "at step 2 " in str(err.value) and "(step None)" not in str(err.value)
    assert calls["n"] == 1          # the first call (steps 1-2) went non-finite: no more calls


def test_resume_drops_a_torn_metrics_line(tmp_path):
    """A hard kill in the middle of a write leaves a torn last line; resuming from step 4
    keeps the whole lines up to 4 and drops the rest (it used to raise JSONDecodeError)."""
    from genjax.train.logging import MetricsWriter

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2, "loss": 1.5}\n{"step": 4, "loss": 1.4}\n'
                    '{"step": 6, "loss": 1.3}\n{"step": 8, "lo')
    assert [m["step"] for m in read_metrics(str(tmp_path))] == [2, 4, 6]
    writer = MetricsWriter(str(tmp_path), resume_step=4)
    writer.write(6, {"loss": 1.25})
    writer.close()
    assert [(m["step"], m["loss"]) for m in read_metrics(str(tmp_path))] == [
        (2, 1.5), (4, 1.4), (6, 1.25)]
    assert path.read_text().count("\n") == 3


def test_a_step_that_was_never_saved_lists_the_saved_ones(trained_tiny):
    _, workdir, _ = trained_tiny
    with pytest.raises(CheckpointError, match=r"no checkpoint of step 3 .*saved steps: 4, 8"):
        load_run(workdir, 3)


def test_pretrained_workdirs_are_checked(trained_tiny, tmp_path):
    from genjax.train.checkpoint import load_pretrained

    _, workdir, _ = trained_tiny                      # a VAE of 8x8 digits
    config, params = load_pretrained(workdir, kind="vae", image_shape=(8, 8, 1), role="x")
    assert config["name"] == "vae" and "encoder" in params
    with pytest.raises(CheckpointError, match="holds a 'vae' model, but a 'vqvae'"):
        load_pretrained(workdir, kind="vqvae", role="config.model.vqvae_workdir")
    with pytest.raises(CheckpointError, match=r"shape \(8, 8, 1\), but .* \(16, 16, 1\)"):
        load_pretrained(workdir, kind="vae", image_shape=(16, 16, 1), role="x")
    with pytest.raises(CheckpointError, match="not a trained genjax run"):
        load_pretrained(str(tmp_path), kind="vae", role="x")
    # A corrupt checkpoint: one line naming the step, not a raw orbax error.
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(workdir, broken)
    latest = broken / "checkpoints" / "latest"
    step = sorted(os.listdir(latest))[-1]
    for root, _, files in os.walk(latest / step / "state"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    with pytest.raises(CheckpointError, match=f"step {step} cannot be read"):
        load_pretrained(str(broken), kind="vae", role="x")


def _consumed_batches(monkeypatch, config, workdir) -> tuple[list, object]:
    """(the image batches each train-step call received, the final state)."""
    from genjax.train import step as step_lib

    real, seen = step_lib.make_train_step, []

    def recording(*args, **kwargs):
        step = real(*args, **kwargs)

        def call(state, batches):
            seen.append(np.asarray(batches["image"]))
            return step(state, batches)

        return call

    monkeypatch.setattr(step_lib, "make_train_step", recording)
    state = train_and_evaluate(config, workdir)
    monkeypatch.undo()
    return seen, state


@pytest.mark.slow
def test_prefetch_changes_neither_the_batches_nor_the_result(tmp_path, monkeypatch):
    """training.prefetch = 2 (the default) and 0 feed the same batches in the same order,
    end in the same state bit for bit, and checkpoint the same data position."""
    runs = {}
    for depth in (0, 2):
        config = tiny_vae_config(prefetch=depth, num_sample_images=0, snapshot_every=0)
        runs[depth] = _consumed_batches(monkeypatch, config, str(tmp_path / str(depth)))
    (plain, plain_state), (ahead, ahead_state) = runs[0], runs[2]
    assert len(plain) == len(ahead) == 4
    for a, b in zip(plain, ahead):
        np.testing.assert_array_equal(a, b)
    assert_trees_equal(plain_state, ahead_state)
    positions = [json.load(open(os.path.join(tmp_path, str(d), "checkpoints", "latest", "8",
                                             "data", "metadata"))) for d in (0, 2)]
    assert positions[0] == positions[1] == {"epoch": 0, "index": 8 * 16}
