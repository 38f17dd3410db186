"""Multi-process training (2 local CPU processes on jax.distributed with gloo collectives)
and fsdp (2 forced host devices) against one device, each with a resume.

Every run is ``python -m tests.train.multihost_check`` in a subprocess: the tiny VAE of
tests/conftest.py, 8 steps, 2 per call, checkpoints at 4 and 8, SGD (as in
test_parallel.py: parameter differences are then gradient differences times the
learning rate, so the parity tolerance is 1e-5 relative).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from genjax.train.logging import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 1200          # per process; generous for a loaded 2-core machine


def _env(devices: int) -> dict:
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                     if not f.startswith("--xla_force_host_platform_device_count"))
    if devices > 1:
        flags += f" --xla_force_host_platform_device_count={devices}"
    return dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], devices: int = 1) -> subprocess.Popen:
    """The check in a subprocess, its output appended to files next to its OUT.npz (not
    pipes: a process blocked on a full pipe that nobody reads yet stalls the others)."""
    tag = args[args.index("--process_id") + 1] if "--process_id" in args else "0"
    out = f"{args[2]}.process{tag}"
    with open(out + ".stdout", "a") as stdout, open(out + ".stderr", "a") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "tests.train.multihost_check", *args],
                                cwd=ROOT, env=_env(devices), stdout=stdout, stderr=stderr)
    proc.out = out
    return proc


def _finish(procs: list[subprocess.Popen], rc: int = 0) -> list[dict]:
    """Wait for every process (killing all on a timeout); their last stdout lines."""
    outs = []
    try:
        for proc in procs:
            proc.wait(timeout=TIMEOUT_S)
            err = open(proc.out + ".stderr").read()
            assert proc.returncode == rc, err[-3000:]
            lines = open(proc.out + ".stdout").read().strip().splitlines()
            outs.append(json.loads(lines[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outs


def _two_processes(workdir: str, out: str, *extra: str) -> list[subprocess.Popen]:
    address = f"127.0.0.1:{_free_port()}"
    return [_start([workdir, "mesh", out, "--coordinator_address", address,
                    "--num_processes", "2", "--process_id", str(i), *extra]) for i in range(2)]


def _load(path: str) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _max_diff(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a if k != "step")


def _assert_close_to(reference: dict, run: dict) -> None:
    scale = max(float(np.abs(v).max()) for k, v in reference.items() if k != "step")
    assert int(run["step"]) == int(reference["step"]) == 8
    assert _max_diff(reference, run) < 1e-5 * max(1.0, scale)


def _assert_metrics_close(reference_dir: str, workdir: str) -> None:
    """One line per log step (process 0 alone writes), with the single-device values."""
    ref, got = read_metrics(reference_dir), read_metrics(workdir)
    assert [m["step"] for m in got] == [m["step"] for m in ref] == [2, 4, 6, 8]
    for r, g in zip(ref, got):
        for key in ("loss", "kl", "rec", "grad_norm"):
            assert abs(r[key] - g[key]) <= 1e-5 * max(1.0, abs(r[key])), (key, r, g)


@pytest.mark.slow
@pytest.mark.multidevice
def test_two_processes_match_one_process_and_resume(tmp_path):
    """2 processes x 1 CPU device (mesh over both) equal 1 process with the whole batch;
    killed after step 6 (checkpoint at 4) and restarted, both processes end where the
    uninterrupted 2-process run ends, bit for bit."""
    one, two, cut = (str(tmp_path / name) for name in ("one", "two", "cut"))
    runs = [_start([one, "none", one + ".npz"])] + _two_processes(two, two + ".npz")
    single, *pair = _finish(runs)
    assert single["processes"] == 1 and single["rows"] == [0, 16]
    assert [p["processes"] for p in pair] == [2, 2] and [p["devices"] for p in pair] == [2, 2]
    # Each process read its half of every global batch; together the whole batch.
    assert [p["rows"] for p in pair] == [[0, 8], [8, 16]]
    reference, distributed = _load(one + ".npz"), _load(two + ".npz")
    _assert_close_to(reference, distributed)
    _assert_metrics_close(one, two)
    latest = os.path.join(two, "checkpoints", "latest", "8")
    positions = [json.load(open(os.path.join(latest, "data_process", f"process_{i}.json")))
                 for i in range(2)]
    assert positions == [json.load(open(os.path.join(latest, "data", "metadata")))] * 2
    assert positions[0] == {"epoch": 0, "index": 8 * 16}
    assert os.path.exists(os.path.join(two, "samples", "step_0000008.png"))

    assert [o["killed"] for o in _finish(_two_processes(cut, cut + ".npz", "--stop_after", "3"),
                                         rc=3)] == [True, True]
    assert [m["step"] for m in read_metrics(cut)] == [2, 4, 6]
    _finish(_two_processes(cut, cut + ".npz"))
    resumed = _load(cut + ".npz")
    assert _max_diff(distributed, resumed) == 0.0
    assert [m["step"] for m in read_metrics(cut)] == [2, 4, 6, 8]


@pytest.mark.slow
@pytest.mark.multidevice
def test_fsdp_matches_single_device_and_resumes(tmp_path):
    """fsdp on 2 forced host devices (large leaves split over them) equals one device; the
    checkpoint is saved sharded and restored into the same shardings; killed after step 6
    and rerun, it ends where the uninterrupted fsdp run ends, bit for bit."""
    one, full, cut = (str(tmp_path / name) for name in ("one", "fsdp", "cut"))
    single, sharded = _finish([_start([one, "none", one + ".npz"], devices=1),
                               _start([full, "fsdp", full + ".npz"], devices=2)])
    assert sharded["devices"] == 2 and sharded["sharded_leaves"] > 0
    assert single["sharded_leaves"] == 0
    assert sharded["restored_sharding_ok"] is True
    reference, fsdp = _load(one + ".npz"), _load(full + ".npz")
    _assert_close_to(reference, fsdp)
    _assert_metrics_close(one, full)

    _finish([_start([cut, "fsdp", cut + ".npz", "--stop_after", "3"], devices=2)], rc=3)
    out, = _finish([_start([cut, "fsdp", cut + ".npz"], devices=2)])
    assert out["restored_sharding_ok"] is True
    assert _max_diff(fsdp, _load(cut + ".npz")) == 0.0
