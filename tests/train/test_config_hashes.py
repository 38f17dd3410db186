"""Existing configs give bit-identical parameters after 20 steps (hashes recorded from the
trainer before parameter groups, frozen groups and the shared conditioning module; recorded
again when ``train`` became the first 90% of the training pool, the rest ``validation``)."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FAST_COMPILE
from tests.train.config_hashes import CONFIGS, FIXTURE

STORED = json.load(open(FIXTURE))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def train_hashes(name, full=False):
    """The hashes, computed in a subprocess at XLA's default optimisation level (the one
    they were recorded at; the test session compiles at level 0, see tests/conftest.py)."""
    flags = os.environ.get("XLA_FLAGS", "").replace(FAST_COMPILE, "").strip()
    env = dict(os.environ, XLA_FLAGS=flags, GENJAX_TEST_XLA_OPT="default")
    args = [sys.executable, "-m", "tests.train.config_hashes", name] + (["--full"] if full else [])
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("hashes: "))
    return json.loads(line.removeprefix("hashes: "))[name]


# Each takes 10-35 s (a subprocess, a compile, 20 steps, and for the latent models a pretrained
# run first): slow tier.
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_tiny_config_trains_to_the_recorded_bits(name):
    assert train_hashes(name) == STORED["tiny"][name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STORED.get("full", {})))
def test_full_config_trains_to_the_recorded_bits(name):
    assert train_hashes(name, full=True) == STORED["full"][name]
