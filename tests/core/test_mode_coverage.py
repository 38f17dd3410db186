"""Mode coverage on ring8 and grid25: the embedded mixtures themselves, and the metric against
hand-built sample sets."""

import numpy as np
import pytest

from genjax.core.metrics import mode_coverage
from genjax.data import toy2d


@pytest.mark.parametrize("name, k, std", [("ring8", 8, 0.02), ("grid25", 25, 0.05)])
def test_the_mixtures_and_their_own_coverage(name, k, std):
    centres, sigma = toy2d.MODES[name]
    assert centres.shape == (k, 2) and sigma == std
    assert len(np.unique(centres.round(6), axis=0)) == k
    if name == "ring8":
        np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 2.0)
    else:
        assert set(centres.ravel()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    points = toy2d.toy2d(name, "test")["point"]
    result = mode_coverage(points, centres, std)
    assert result["modes_covered"] == k
    # 3 sigma in 2-D holds 1 - exp(-9/2) = 98.9% of a Gaussian
    assert abs(result["high_quality_fraction"] - (1 - np.exp(-4.5))) < 0.01
    assert result["mode_reverse_kl"] < 0.02
    nearest = np.argmin(((points[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=k)
    assert counts.min() > 0.7 * len(points) / k                 # equal weights


def test_coverage_of_collapsed_and_off_mode_samples():
    centres, std = toy2d.MODES["ring8"]
    on_two = np.concatenate([np.repeat(centres[:1], 30, 0), np.repeat(centres[3:4], 10, 0)])
    off = centres[:4] * 1.5                                      # far from every mode
    result = mode_coverage(np.concatenate([on_two, off]), centres, std)
    assert result["modes_covered"] == 2
    np.testing.assert_allclose(result["high_quality_fraction"], 40 / 44)
    h = np.array([0.75, 0.25])
    np.testing.assert_allclose(result["mode_reverse_kl"], np.sum(h * np.log(8 * h)))
    # just inside and just outside 3 sigma
    edge = centres[2] + np.array([[2.99 * std, 0.0], [3.01 * std, 0.0]])
    assert mode_coverage(edge, centres, std)["high_quality_fraction"] == 0.5
    assert mode_coverage(on_two, centres, std, min_count=20)["modes_covered"] == 1
    assert mode_coverage(off, centres, std)["mode_reverse_kl"] == np.inf
