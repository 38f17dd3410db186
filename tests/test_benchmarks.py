"""benchmarks/gpu.sh with TINY=1: every part runs at tiny size on CPU and the markdown table
has the machine, the versions and one row per measurement, none failed."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = [("train step", "ddpm_cifar_bench float32"), ("train step", "ddpm_cifar_bench bfloat16"),
        ("sampler", "small: ddpm_digits"), ("sampler", "large: ddpm_cifar_bench bfloat16"),
        ("token prior", "token_prior_digits")]


@pytest.mark.slow
def test_gpu_sh_tiny_writes_the_table(tmp_path):
    out = tmp_path / "bench.md"
    env = dict(os.environ, TINY="1", PYTHON=sys.executable, JAX_PLATFORMS="cpu")
    run = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu.sh"), str(out)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "jax.devices(): [CpuDevice(id=0)]" in run.stdout
    table = out.read_text()
    assert table in run.stdout                          # printed as well as written
    assert "jax 0." in table and "flax" in table and "- GPU: no nvidia-smi" in table
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert [tuple(c.strip() for c in row.split("|")[1:3]) for row in rows] == ROWS
    assert "FAILED" not in table
    numbers = [float(x) for x in re.findall(r"images/s|speed-up ([0-9.]+)x", table) if x]
    assert len(numbers) == 3 and all(n > 0 for n in numbers)
    assert "same codes True" in table
