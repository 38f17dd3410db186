"""Execute every notebook in colabs/ with GENJAX_TINY=1 (tiny models, a few steps, CPU): slow
tier (one to two and a half minutes each on 2 cores); the default tier checks that they are stored
without outputs and how their set-up cell installs genjax.

The kernel is a kernelspec written into a temporary JUPYTER_PATH that runs the
interpreter of this test (``sys.executable -m ipykernel_launcher``), so the
notebooks run in the venv under test even where no kernel is installed.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

COLABS = pathlib.Path(__file__).resolve().parent.parent / "colabs"
NOTEBOOKS = sorted(COLABS.glob("*.ipynb"))
KERNEL = "genjax-test-python"
BPD_LINE = re.compile(r"bits/dim \(([^)]*)\):\s*(\S+)")
# Names of the 'bits/dim (NAME): value' lines a notebook must print.
REQUIRED = {"vae.ipynb": ["IWAE bound"], "autoregressive.ipynb": ["exact, gated PixelCNN"],
            "flows.ipynb": ["glow"]}
# Other text a notebook must print.
PRINTED = {"vqvae.ipynb": ["class accuracy of the 100 samples", "text prior: 8 text + 64 image"],
           "gans.ipynb": ["-log 4 + 2 JS", "pack 2:", "FID (digits features", "inversion PSNR",
                          "L1 only: test L1"],
           "score_sde.ipynb": ["annealed Langevin: fraction", "PF-ODE log p vs analytic:",
                               "path length / chord:", "flow matching test log-likelihood",
                               "1-step samples, mean distance to the data:"]}


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "genjax test", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("GENJAX_TINY", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temp workdirs land in tmp_path
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return run_dir


def _outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield from cell.get("outputs", [])


def _stdout(nb) -> str:
    return "".join(o.get("text", "") for o in _outputs(nb)
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, \
                f"{path.name}: clear the outputs before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_tiny(path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(kernel_env)}})
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails

    pictures = [o for o in _outputs(nb) if "image/png" in o.get("data", {})]
    assert pictures, f"{path.name} drew no picture"

    text = _stdout(nb)
    values = BPD_LINE.findall(text)
    for name, value in values:
        assert math.isfinite(float(value)) and float(value) > 0, f"bits/dim ({name}) = {value}"
    for needle in REQUIRED.get(path.name, []):
        assert any(needle in name for name, _ in values), \
            f"{path.name} printed no 'bits/dim ({needle} ...): <value>' line:\n{text}"
    for needle in PRINTED.get(path.name, []):
        assert needle in text, f"{path.name} did not print {needle!r}:\n{text}"


def _setup_cell(path) -> str:
    cell = nbformat.read(path, as_version=4).cells[1]
    assert cell.cell_type == "code" and cell.source.startswith("# Set-up"), path
    return cell.source


def test_setup_cell_installs_the_local_checkout_or_the_one_colab_repo(tmp_path, monkeypatch):
    import importlib.util
    import subprocess

    import genjax

    sources = {_setup_cell(p) for p in NOTEBOOKS}
    assert len(sources) == 1                               # one set-up cell everywhere
    cell = sources.pop()
    assert f'"{genjax.COLAB_REPO}"' in cell                # the one documented constant
    calls = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(subprocess, "check_call", calls.append)
    monkeypatch.delenv("GENJAX_REPO", raising=False)
    monkeypatch.chdir(COLABS)                              # run locally, from a checkout
    exec(cell, {})
    assert calls[-1][-1] == str(COLABS.parent)
    monkeypatch.chdir(tmp_path)                            # no checkout around: Colab
    exec(cell, {})
    assert calls[-1][-1] == f"git+{genjax.COLAB_REPO}"
