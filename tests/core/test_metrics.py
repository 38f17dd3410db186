"""FID / IS / KID / precision-recall against references and closed forms."""

import numpy as np
import pytest
import scipy.linalg

from genjax.core.metrics import (
    fid_from_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)


def _scipy_frechet(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def _spd(rng, d, rank):
    a = rng.normal(size=(d, rank))
    return a @ a.T + (1e-6 if rank < d else 0.0) * np.eye(d)


@pytest.mark.parametrize("rank", [12, 6, 2])
def test_frechet_matches_scipy_sqrtm_reference(rank):
    rng = np.random.default_rng(rank)
    d = 12
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _spd(rng, d, rank), _spd(rng, d, d)
    ours = frechet_distance(mu1, s1, mu2, s2)
    ref = _scipy_frechet(mu1, s1, mu2, s2)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_fid_of_a_set_with_itself_is_zero_and_order_invariant():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8))
    y = rng.normal(size=(400, 8)) + 0.3
    assert abs(fid_from_features(x, x)) < 1e-8
    shuffled = fid_from_features(x[::-1], y[rng.permutation(400)])
    np.testing.assert_allclose(fid_from_features(x, y), shuffled, rtol=1e-10)


def test_fid_of_gaussian_samples_approaches_the_closed_form():
    rng = np.random.default_rng(1)
    d = 4
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    s1, s2 = np.eye(d), 4.0 * np.eye(d)
    exact = frechet_distance(mu1, s1, mu2, s2)      # = 4 * 0.25 + 4 * (1 + 4 - 2 * 2) = 5
    np.testing.assert_allclose(exact, 5.0, rtol=1e-12)
    errors = []
    for n in (100, 1000, 20000):
        x = rng.multivariate_normal(mu1, s1, size=n)
        y = rng.multivariate_normal(mu2, s2, size=n)
        errors.append(abs(fid_from_features(x, y) - exact))
    # Sampling std of the estimate at n = 20000 is about 0.08 (dominated by Tr(Sigma_2)).
    assert errors[2] < errors[0] / 5 and errors[2] < 0.3


def test_inception_score_extremes():
    k = 10
    confident = np.eye(k)[np.arange(1000) % k]
    np.testing.assert_allclose(inception_score(confident, num_splits=10)[0], k, rtol=1e-9)
    same = np.tile(np.random.default_rng(0).dirichlet(np.ones(k)), (1000, 1))
    np.testing.assert_allclose(inception_score(same, num_splits=5)[0], 1.0, rtol=1e-9)


def test_kid_near_zero_for_same_distribution_and_larger_when_shifted():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16))
    same, same_std = kernel_inception_distance(x, y, num_subsets=20, subset_size=500)
    shifted, _ = kernel_inception_distance(x, y + 0.5, num_subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 10 * max(abs(same), 1e-4)


def test_precision_recall_identical_and_disjoint_sets():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5))
    assert precision_recall(x, x, k=3) == (1.0, 1.0)
    far = x + 100.0
    assert precision_recall(x, far, k=3) == (0.0, 0.0)
    # Fake samples covering half the real modes: high precision, recall about one half.
    modes = np.concatenate([rng.normal(size=(150, 5)), rng.normal(size=(150, 5)) + 20.0])
    half = rng.normal(size=(300, 5))
    precision, recall = precision_recall(modes, half, k=3)
    assert precision > 0.9 and 0.3 < recall < 0.7


def test_kid_equals_a_brute_force_unbiased_mmd2_with_the_cubic_kernel():
    """Subsets as large as both sets (so every subset is the whole set): KID is the unbiased
    MMD^2 of Binkowski et al. with k(a, b) = (a.b / d + 1)^3, written here as explicit
    sums over distinct pairs."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 3)), rng.normal(0.3, 1.2, size=(6, 3))
    d, m = x.shape[1], len(x)

    def k(a, b):
        return (sum(a[i] * b[i] for i in range(d)) / d + 1.0) ** 3

    pairs = [(i, j) for i in range(m) for j in range(m) if i != j]
    expected = (sum(k(x[i], x[j]) for i, j in pairs) / len(pairs)
                + sum(k(y[i], y[j]) for i, j in pairs) / len(pairs)
                - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m ** 2)
    kid, std = kernel_inception_distance(x, y, num_subsets=2, subset_size=m)
    np.testing.assert_allclose(kid, expected, rtol=1e-12)
    assert std < 1e-12                        # both subsets are the whole sets
