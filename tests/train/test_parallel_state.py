"""Non-trainable state (VQ-VAE EMA codebook, usage counters, dead-code restart) under the
mesh and pmap steps on 2 host devices equals the single-device step."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
@pytest.mark.multidevice
def test_state_updates_match_single_device_under_mesh_and_pmap():
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
               + " --xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "tests.train.parallel_state_check"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    assert out["restarted"] > 0          # the run re-seeds codes, so restart is compared too
    for parallel in ("mesh", "pmap"):
        diff = out[parallel]
        assert diff["step"] == 4
        assert diff["params"] < 1e-5 and diff["ema"] < 1e-5 and diff["state"] < 1e-5, out
        assert diff["metrics"]["loss"] < 1e-5, out
        # Usage statistics are computed from the whole batch's counts on every device.
        for key in ("perplexity", "usage", "dead_codes"):
            assert diff["metrics"][key] < 1e-4, out
