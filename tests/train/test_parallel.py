"""Mesh (jit + NamedSharding) and pmap steps on 2 host devices equal the single-device step."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.multidevice
@pytest.mark.parametrize("model", ["vae", "gan"])
def test_mesh_and_pmap_match_single_device(model):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "tests.train.parallel_check", model], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    for parallel in ("mesh", "pmap"):
        assert out[parallel]["step"] == 4
        assert out[parallel]["loss"] < 1e-4, out
        assert out[parallel]["params"] < 1e-5 * max(1.0, out["param_scale"]), out
        assert out[parallel]["ema"] < 1e-5 * max(1.0, out["param_scale"]), out
