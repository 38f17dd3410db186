"""FID / IS / KID / precision-recall against references and closed forms; W2 and MMD between
point sets against their identities and a by-hand computation."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st

from genjax.core.metrics import (
    fid_from_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mmd_rbf,
    precision_recall,
    psnr_from_mse,
    wasserstein2,
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


# --------------------------------------------------------------------------------------
# Properties (hypothesis)
# --------------------------------------------------------------------------------------


@st.composite
def feature_sets(draw, min_n=3):
    """Two float64 feature sets [N1, d], [N2, d] of different means and scales."""
    d = draw(st.integers(1, 6), label="d")
    n1, n2 = (draw(st.integers(min_n, 40), label=f"N{i}") for i in (1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    x = rng.normal(size=(n1, d)) * rng.uniform(0.1, 3, d) + rng.normal(size=d)
    y = rng.normal(size=(n2, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    return x, y, rng


def _orthogonal(rng, d):
    return np.linalg.qr(rng.normal(size=(d, d)))[0]


def _close(a, b, scale, atol=1e-9):
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=atol * scale)


# FID takes square roots of eigenvalues; with N <= d the covariances are singular and
# rounding noise of order 1e-16 scale^2 in the zero eigenvalues becomes 1e-8 scale each.
_FID_ATOL = 1e-6


@given(feature_sets())
def test_fid_is_a_symmetric_non_negative_invariant_distance(sets):
    """FID(x, y) = FID(y, x) >= 0, FID(x, x) = 0, unchanged by permuting samples and by a
    common translation or rotation; FID(a x, a y) = a^2 FID(x, y)."""
    x, y, rng = sets
    fid = fid_from_features(x, y)
    scale = 1.0 + np.sum(x**2) / len(x) + np.sum(y**2) / len(y)
    _close(fid_from_features(y, x), fid, scale, _FID_ATOL)
    assert fid >= -_FID_ATOL * scale
    assert abs(fid_from_features(x, x)) <= _FID_ATOL * scale
    _close(fid_from_features(x[rng.permutation(len(x))], y[rng.permutation(len(y))]), fid,
           scale, _FID_ATOL)
    shift, q = rng.normal(size=x.shape[1]) * 10, _orthogonal(rng, x.shape[1])
    _close(fid_from_features(x + shift, y + shift), fid, scale + 100 * x.shape[1], _FID_ATOL)
    _close(fid_from_features(x @ q, y @ q), fid, scale, _FID_ATOL)
    _close(fid_from_features(3.0 * x, 3.0 * y), 9.0 * fid, 9.0 * scale, _FID_ATOL)


def _random_psd(rng, d, rank):
    a = rng.normal(size=(d, rank))
    return a @ a.T


@given(d=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_frechet_distance_closed_forms_and_triangle_inequality(d, seed):
    """d(N_1, N_1) = 0; diagonal Sigmas: ||mu_1 - mu_2||^2 + sum_i (sqrt s_1i - sqrt s_2i)^2;
    sqrt(d) is the 2-Wasserstein metric: sqrt d(1, 3) <= sqrt d(1, 2) + sqrt d(2, 3)."""
    rng = np.random.default_rng(seed)
    mus = rng.normal(size=(3, d))
    sigmas = [_random_psd(rng, d, int(r)) for r in rng.integers(1, d + 1, 3)]
    scale = 1.0 + max(np.trace(s) for s in sigmas)
    assert abs(frechet_distance(mus[0], sigmas[0], mus[0], sigmas[0])) <= _FID_ATOL * scale
    s1, s2 = rng.uniform(0, 3, d), rng.uniform(0, 3, d)
    np.testing.assert_allclose(
        frechet_distance(mus[0], np.diag(s1), mus[1], np.diag(s2)),
        np.sum((mus[0] - mus[1]) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2), rtol=1e-9)
    w = [np.sqrt(max(frechet_distance(mus[i], sigmas[i], mus[j], sigmas[j]), 0.0))
         for i, j in ((0, 2), (0, 1), (1, 2))]
    assert w[0] <= w[1] + w[2] + 1e-3 * np.sqrt(scale)          # sqrt of rounding noise


@given(n=st.integers(2, 60), k=st.integers(2, 10), splits=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1), sharpness=st.floats(0.05, 5.0))
def test_inception_score_lies_between_one_and_k(n, k, splits, seed, sharpness):
    """1 <= IS <= K for any class probabilities; IS is unchanged by relabelling the classes,
    and, in one split, by reordering the samples."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, sharpness), size=n)
    mean, std = inception_score(probs, num_splits=min(splits, n))
    assert 1.0 - 1e-9 <= mean <= k + 1e-9 and std >= 0.0
    relabelled = inception_score(probs[:, rng.permutation(k)], num_splits=min(splits, n))
    np.testing.assert_allclose(relabelled, (mean, std), rtol=1e-9, atol=1e-12)
    one = inception_score(probs, num_splits=1)[0]
    np.testing.assert_allclose(inception_score(probs[rng.permutation(n)], num_splits=1)[0],
                               one, rtol=1e-9)


@given(feature_sets(min_n=2))
def test_kid_on_whole_sets_is_symmetric_and_rotation_invariant(sets):
    """With N samples in each set and subsets of size N, KID(x, y) = KID(y, x), unchanged by
    permuting samples and by a common rotation (the kernel (x.y / d + 1)^3 sees only inner
    products), with zero spread over subsets."""
    x, y, rng = sets
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    whole = dict(num_subsets=2, subset_size=n)
    kid, std = kernel_inception_distance(x, y, **whole)
    scale = (1.0 + max(np.abs(x).max(), np.abs(y).max()) ** 2) ** 3
    assert std <= 1e-9 * scale
    _close(kernel_inception_distance(y, x, **whole)[0], kid, scale)
    q = _orthogonal(rng, x.shape[1])
    _close(kernel_inception_distance(x @ q, y @ q, **whole)[0], kid, scale)
    _close(kernel_inception_distance(x[::-1], y[rng.permutation(n)], **whole)[0], kid, scale)


@given(sets=feature_sets(min_n=4), k=st.integers(1, 3))
def test_precision_recall_are_fractions_and_swap_with_the_arguments(sets, k):
    """precision, recall in [0, 1]; (P, R)(x, y) = (R, P)(y, x); (1, 1) on identical sets;
    unchanged by permutation, translation, rotation and scaling of both sets."""
    x, y, rng = sets
    precision, recall = precision_recall(x, y, k=k)
    assert 0.0 <= precision <= 1.0 and 0.0 <= recall <= 1.0
    assert precision_recall(y, x, k=k) == (recall, precision)
    assert precision_recall(x, x, k=k) == (1.0, 1.0)
    q = _orthogonal(rng, x.shape[1])
    moved = [precision_recall(x[::-1], y[rng.permutation(len(y))], k=k),
             precision_recall(2.0 * x @ q + 1.0, 2.0 * y @ q + 1.0, k=k)]
    for pr in moved:
        np.testing.assert_allclose(pr, (precision, recall), atol=1.5 / min(len(x), len(y)))


@given(mse=st.floats(1e-8, 1e4), peak=st.sampled_from([1.0, 2.0, 255.0]))
def test_psnr_from_mse(mse, peak):
    """PSNR(peak^2) = 0 dB, PSNR(mse / 10) = PSNR(mse) + 10 dB (decreasing in the MSE),
    the same in numpy and jax."""
    psnr = psnr_from_mse(mse, peak)
    assert abs(psnr_from_mse(peak**2, peak)) < 1e-12
    np.testing.assert_allclose(psnr_from_mse(mse / 10.0, peak), psnr + 10.0, rtol=1e-12,
                               atol=1e-9)
    assert psnr_from_mse(mse * 1.5, peak) < psnr
    np.testing.assert_allclose(psnr_from_mse(jnp.float32(mse), peak), psnr, rtol=1e-5,
                               atol=1e-4)


def test_wasserstein2_identities():
    """A shift s of a set is at distance |s| (the cross term 2 s.(x_i - x_sigma(i)) sums to 0
    for every permutation); in 1-D the optimal plan is the sorted matching; W2 is symmetric,
    0 from a set to a shuffled copy of itself, and fails on sets of different sizes."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    shift = np.array([0.3, -0.4])
    np.testing.assert_allclose(wasserstein2(x, x + shift), 0.5, rtol=1e-6)
    y = rng.normal(size=(40, 2)) * [2.0, 0.5] + 1.0
    assert wasserstein2(x, y) == pytest.approx(wasserstein2(y, x), rel=1e-6)
    assert wasserstein2(x, x[rng.permutation(40)]) == 0.0
    a, b = rng.normal(size=(40, 1)), rng.exponential(size=(40, 1))
    sorted_matching = np.sqrt(np.mean((np.sort(a[:, 0]) - np.sort(b[:, 0])) ** 2))
    np.testing.assert_allclose(wasserstein2(a, b), sorted_matching, rtol=1e-6)
    with pytest.raises(ValueError, match="same size"):
        wasserstein2(x, y[:39])


def test_mmd_rbf_by_hand_on_tiny_sets():
    """The unbiased MMD^2 formula of the module docstring with explicit loops: m = 3, n = 2."""
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    y = np.array([[0.5, 0.5], [3.0, 1.0]])
    bandwidths = (0.5, 1.0)

    def k(a, b):
        return sum(np.exp(-np.sum((a - b) ** 2) / (2 * s ** 2)) for s in bandwidths)

    xx = sum(k(x[i], x[j]) for i in range(3) for j in range(3) if i != j) / (3 * 2)
    yy = sum(k(y[i], y[j]) for i in range(2) for j in range(2) if i != j) / (2 * 1)
    xy = sum(k(x[i], y[j]) for i in range(3) for j in range(2)) / (3 * 2)
    np.testing.assert_allclose(mmd_rbf(x, y, bandwidths), xx + yy - 2 * xy, rtol=1e-12)


def test_mmd_rbf_is_unbiased_at_zero_and_grows_with_a_shift():
    """Same law: the mean over repeats is 0 within its standard error (and single values take
    both signs); a shift of the second set increases it monotonically."""
    rng = np.random.default_rng(1)
    same = np.array([mmd_rbf(rng.normal(size=(50, 2)), rng.normal(size=(50, 2)))
                     for _ in range(40)])
    assert abs(same.mean()) < 3 * same.std() / np.sqrt(len(same))
    assert same.min() < 0 < same.max()
    x, y = rng.normal(size=(200, 2)), rng.normal(size=(200, 2))
    shifted = [mmd_rbf(x, y + [d, 0.0]) for d in (0.0, 0.5, 1.0, 2.0)]
    assert np.all(np.diff(shifted) > 0) and shifted[2] > 5 * same.std()
