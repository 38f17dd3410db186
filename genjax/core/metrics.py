"""Sample-quality metrics: FID, Inception Score, KID, precision/recall over feature vectors;
2-Wasserstein distance and MMD between point sets.

All functions take features (or class probabilities) as arrays and return
floats; they run in float64 numpy, where the matrix square root of FID needs
the precision. Features come from a feature network (``genjax.eval``).

* Frechet distance between N(mu_1, Sigma_1) and N(mu_2, Sigma_2) (Heusel et al.):
      d^2 = ||mu_1 - mu_2||^2 + Tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^{1/2}).
  Tr((Sigma_1 Sigma_2)^{1/2}) = sum_i sqrt(lambda_i(A Sigma_2 A)) with A = Sigma_1^{1/2}
  (symmetric PSD square root by eigendecomposition): the eigenvalues of the
  symmetric matrix A Sigma_2 A equal those of Sigma_1 Sigma_2, and are real and
  >= 0, so nothing goes complex even for singular covariances.
* Inception Score (Salimans et al.): IS = exp(E_x KL(p(y|x) || p(y))), averaged
  over ``num_splits`` splits.
* Kernel Inception Distance (Binkowski et al.): the unbiased MMD^2 with the
  kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets.
* Improved precision / recall (Kynkaanniemi et al.): the fraction of generated
  samples inside the real manifold (union of k-NN balls of real features), and
  the fraction of real samples inside the generated manifold.
* Mode coverage of a mixture of K isotropic Gaussians N(c_k, sigma^2 I) (the 2-D protocol
  of VEEGAN and PacGAN): a sample is of high quality when it lies within 3 sigma of its
  nearest centre; a mode is covered when at least ``min_count`` high-quality samples fall
  on it; the reverse KL is KL(h || U) = sum_k h_k log(K h_k) of the histogram h of the
  high-quality samples over the modes against the uniform law U.

Sample-based distances between two point sets x [m, d] and y [n, d] (2-D toy data):

* 2-Wasserstein distance between the empirical laws of two sets of the same size n,
      W_2(x, y) = ( min_sigma (1/n) sum_i |x_i - y_sigma(i)|^2 )^{1/2},
  the minimum over permutations (for equal sizes and weights an optimal plan is a
  permutation, Birkhoff), solved exactly by :func:`genjax.core.assignment.linear_sum_assignment`.
* Unbiased squared maximum mean discrepancy (Gretton et al. 2012) with the kernel
  k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2)) over bandwidths s,
      MMD_u^2 = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
                - 2/(mn) sum_{i, j} k(x_i, y_j),
  an unbiased estimate of MMD^2 (so it may be slightly negative), 0 in expectation when
  x and y come from the same law.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax.core.assignment import linear_sum_assignment

# bandwidths of mmd_rbf: toy 2-D data spans a few units, its mixtures' modes ~0.02-0.2 wide
MMD_BANDWIDTHS = (0.1, 0.2, 0.5, 1.0, 2.0)


def psnr_from_mse(mse, peak):
    """Peak signal-to-noise ratio in dB, 10 log10(peak^2 / MSE): numpy in float64 for
    numbers and numpy arrays, jax (traceable) for jax arrays."""
    xp = jnp if isinstance(mse, jax.Array) else np
    return 10.0 * xp.log10(peak ** 2 / mse)


def psnr_per_image(images, others, num_levels: int) -> np.ndarray:
    """PSNR in dB of each image against its counterpart, on the levels: float64 [B],
    10 log10((L - 1)^2 / MSE_b) with MSE_b the mean squared difference over the sub-pixels
    of example b (inf where they are equal). images, others: integer levels [B, H, W, C]."""
    diff = np.asarray(images, np.float64) - np.asarray(others, np.float64)
    mse = np.mean(np.square(diff).reshape(len(diff), -1), axis=1)
    with np.errstate(divide="ignore"):
        return psnr_from_mse(mse, float(num_levels - 1))


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root by eigendecomposition (negative eigenvalues -> 0)."""
    eigvals, eigvecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def gaussian_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """features [N, d] -> (mean [d], covariance [d, d]) in float64 (unbiased covariance)."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must be [N >= 2, d], got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(Sigma1 + Sigma2 - 2 (Sigma1 Sigma2)^{1/2}); see module doc."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(
        np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"shape mismatch: {mu1.shape}, {mu2.shape}, {sigma1.shape}, "
                         f"{sigma2.shape}")
    root1 = _sqrtm_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    eigvals = np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)
    trace_sqrt = np.sqrt(eigvals).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def fid_from_features(features1, features2) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets [N, d]."""
    return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))


def inception_score(probs, num_splits: int = 10) -> tuple[float, float]:
    """(mean, std) over splits of exp(E_x KL(p(y|x) || p(y))); probs [N, K] rows sum to 1."""
    probs = np.asarray(probs, np.float64)
    scores = []
    for part in np.array_split(probs, num_splits):
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _polynomial_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.mean())


def kernel_inception_distance(features1, features2, *, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 with the cubic polynomial kernel over random
    subsets of ``min(subset_size, N1, N2)`` rows. Unbiased: may be slightly negative."""
    x = np.asarray(features1, np.float64)
    y = np.asarray(features2, np.float64)
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    values = [_polynomial_mmd2_unbiased(x[rng.choice(len(x), size, replace=False)],
                                        y[rng.choice(len(y), size, replace=False)])
              for _ in range(num_subsets)]
    return float(np.mean(values)), float(np.std(values))


def _pairwise_sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(sq, 0.0)


def _manifold_coverage(reference: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Fraction of ``queries`` within the k-th nearest neighbour radius of some reference row."""
    d_ref = _pairwise_sq_dists(reference, reference)
    radii = np.sort(d_ref, axis=1)[:, k]            # column 0 is the point itself
    d = _pairwise_sq_dists(queries, reference)
    return float(np.mean((d <= radii[None, :]).any(axis=1)))


def precision_recall(real_features, fake_features, k: int = 3) -> tuple[float, float]:
    """Improved precision (fake inside the real manifold) and recall (real inside the fake
    manifold), with k-NN radii (Kynkaanniemi et al. 2019). Features [N, d]."""
    real = np.asarray(real_features, np.float64)
    fake = np.asarray(fake_features, np.float64)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall needs more than k = {k} samples per set")
    return _manifold_coverage(real, fake, k), _manifold_coverage(fake, real, k)


def mode_coverage(samples, centres, std: float, *, min_count: int = 1,
                  radius: float = 3.0) -> dict:
    """Mode coverage of ``samples`` [N, d] against a mixture with ``centres`` [K, d] and
    isotropic ``std``: {"modes_covered", "high_quality_fraction", "mode_reverse_kl"}.

    The reverse KL is over the modes hit by high-quality samples (inf when there are none).
    """
    x = np.asarray(samples, np.float64)
    c = np.asarray(centres, np.float64)
    d2 = _pairwise_sq_dists(x, c)
    nearest = np.argmin(d2, axis=1)
    good = d2[np.arange(len(x)), nearest] <= (radius * std) ** 2
    counts = np.bincount(nearest[good], minlength=len(c))
    if counts.sum() == 0:
        reverse_kl = float("inf")
    else:
        h = counts / counts.sum()
        hit = h > 0
        reverse_kl = float(np.sum(h[hit] * np.log(len(c) * h[hit])))
    return {"modes_covered": int(np.sum(counts >= min_count)),
            "high_quality_fraction": float(good.mean()),
            "mode_reverse_kl": reverse_kl}


_assign = jax.jit(linear_sum_assignment)


def _point_sets(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"point sets must be [N, d] with the same d, got {x.shape}, {y.shape}")
    return x, y


def wasserstein2(x, y) -> float:
    """Exact 2-Wasserstein distance between the empirical laws of x [n, d] and y [n, d]:
    sqrt of the mean |x_i - y_sigma(i)|^2 under the optimal assignment sigma (module doc).
    The assignment runs in float32 JAX (jitted once per n), the distance in float64."""
    x, y = _point_sets(x, y)
    if len(x) != len(y):
        raise ValueError(f"wasserstein2 needs sets of the same size, got {len(x)} and {len(y)}")
    if len(x) == 0:
        raise ValueError("wasserstein2 needs non-empty point sets")
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    perm = np.asarray(_assign(jnp.asarray(cost, jnp.float32)))
    return float(np.sqrt(cost[np.arange(len(x)), perm].mean()))


def mmd_rbf(x, y, bandwidths=MMD_BANDWIDTHS) -> float:
    """Unbiased MMD_u^2 between x [m, d] and y [n, d] with the sum of Gaussian kernels
    exp(-|a - b|^2 / (2 s^2)) over ``bandwidths`` s (default ``MMD_BANDWIDTHS``, 0.1 to 2;
    module doc). m, n >= 2."""
    x, y = _point_sets(x, y)
    m, n = len(x), len(y)
    if min(m, n) < 2:
        raise ValueError(f"mmd_rbf needs at least 2 points per set, got {m} and {n}")
    scales = 2.0 * np.asarray(bandwidths, np.float64) ** 2

    def kernel(a, b):
        d2 = _pairwise_sq_dists(a, b)
        return np.exp(-d2[..., None] / scales).sum(-1)

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.mean())
