"""The benchmark scripts: benchmarks/run.py (one tiny config end to end: subprocess per
config, JSON, markdown, README section; its table and README-section helpers) and
benchmarks/gpu.sh with TINY=1 (every part runs at tiny size on CPU and the markdown table
has the machine, the versions and one row per measurement, none failed)."""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import run as bench  # noqa: E402

VAE_TINY = ["model.channels=(8,)", "model.hidden_dim=32", "model.latent_dim=4",
            "training.batch_size=8", "optimizer.warmup_steps=0"]


@pytest.mark.slow
def test_run_py_end_to_end(tmp_path):
    out, readme = tmp_path / "bench.json", tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\nbefore\n\n{bench.BEGIN}\nold table\n{bench.END}\n\nafter\n")
    cmd = [sys.executable, "benchmarks/run.py", "--configs", "vae_digits", "--steps", "3",
           "--sample_num", "2", "--sample_repeats", "1", "--out", str(out),
           "--readme", str(readme), *[f"--set={s}" for s in VAE_TINY]]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    (result,) = data["results"]
    assert "error" not in result, result
    assert result["config"] == "vae_digits" and result["batch_size"] == 8
    assert result["train_steps"] == 3 and result["train_steps_per_s"] > 0
    images_per_s = 8 * result["train_steps_per_s"]
    assert result["train_images_per_s"] == pytest.approx(images_per_s, rel=0.01)
    assert result["compile_s"] > 0 and result["sample_images_per_s"] > 0
    assert result["peak_memory_mib"] > 10
    assert data["machine"]["backend"] == "cpu"
    text = readme.read_text()
    assert "old table" not in text and "before" in text and "after" in text
    assert "| vae_digits |" in text and "python benchmarks/run.py --configs vae_digits" in text
    assert "| vae_digits |" in proc.stdout


def test_run_py_reports_a_failing_config_and_goes_on(tmp_path):
    result = bench._child("--one", "no_such_config", bench.parse_args(["--steps", "1"]))
    assert "error" in result and result["config"] == "no_such_config"


def test_markdown_table_and_ratio():
    results = [
        {"config": "a", "params": 1_500_000, "batch_size": 64, "compile_s": 3.0,
         "train_steps_per_s": 20.0, "train_images_per_s": 1280.0,
         "sample_images_per_s": None, "peak_memory_mib": 900.0,
         "torch_version": "2.x", "torch_train_steps_per_s": 10.0, "torch_params": 1_500_000},
        {"config": "b", "error": "boom"},
    ]
    info = dict(device="cpu", backend="cpu", num_devices=1, cpu_count=2, platform="linux",
                python="3.11", jax="0.1", jaxlib="0.1")
    table = bench.markdown(results, info, "python benchmarks/run.py")
    lines = table.splitlines()
    assert "PyTorch 2.x" in lines[0]
    row = next(line for line in lines if line.startswith("| a |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["a", "1.50M", "64", "3.0", "20.00", "1280.0", "–", "900", "10.00",
                     "2.00x"]
    assert any(line.startswith("| b | error: boom |") for line in lines)


def test_replace_section_appends_then_replaces(tmp_path):
    path = tmp_path / "x.md"
    path.write_text("# title\n")
    bench.replace_section(str(path), "T1\n")
    bench.replace_section(str(path), "T2\n")
    text = path.read_text()
    assert text.count(bench.BEGIN) == 1 and "T2" in text and "T1" not in text
    assert text.startswith("# title\n")


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
