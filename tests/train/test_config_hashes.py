"""Existing configs give bit-identical parameters after 20 steps (hashes recorded from the
trainer before parameter groups, frozen groups and the shared conditioning module)."""

import json

import pytest

from tests.train.config_hashes import CONFIGS, FIXTURE, train_hashes

STORED = json.load(open(FIXTURE))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_tiny_config_trains_to_the_recorded_bits(name):
    assert train_hashes(name) == STORED["tiny"][name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STORED.get("full", {})))
def test_full_config_trains_to_the_recorded_bits(name):
    assert train_hashes(name, full=True) == STORED["full"][name]
