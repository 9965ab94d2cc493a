"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2 with the cubic
polynomial kernel k(x, y) = (x . y / d + 1)^3, averaged over random subsets."""

from __future__ import annotations

import warnings

import torch

from ._checks import as_features, positive_int, same_width


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x . y / d + 1)^3 for every pair of rows."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def _mmd2_from_kernels(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> float:
    m = k_xx.shape[0]
    off_diagonal = m * (m - 1)
    xx = (k_xx.sum() - k_xx.diagonal().sum()) / off_diagonal
    yy = (k_yy.sum() - k_yy.diagonal().sum()) / off_diagonal
    return float(xx + yy - 2 * k_xy.mean())


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 = mean_{i!=j} k(x_i, x_j) + mean_{i!=j} k(y_i, y_j) - 2 mean k(x_i, y_j)
    for two sets of the same size m."""
    return _mmd2_from_kernels(
        polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    )


# Up to this many rows per set, the kernel matrices are computed once and the subsets
# index into them (3 x 2048^2 float64 = 100 MB) instead of recomputing them per subset.
_PRECOMPUTE_MAX_ROWS = 2048


def kid(
    feats_a, feats_b, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over `num_subsets` pairs of random subsets of
    `subset_size` rows (clipped, with a warning, to the smaller set). Computed in float64
    with a seeded generator, so repeated calls give the same numbers."""
    feats_a = as_features(feats_a, "feats_a", min_rows=2).to(torch.float64)
    feats_b = as_features(feats_b, "feats_b", min_rows=2).to(feats_a.device, torch.float64)
    same_width(feats_a, feats_b, "feats_a", "feats_b")
    num_subsets = positive_int(num_subsets, "num_subsets")
    subset_size = positive_int(subset_size, "subset_size", minimum=2)
    available = min(feats_a.shape[0], feats_b.shape[0])
    if subset_size > available:
        warnings.warn(
            f"kid: subset_size {subset_size} is more than the {available} samples available; "
            f"using {available}",
            stacklevel=2,
        )
        subset_size = available
    n_a, n_b = feats_a.shape[0], feats_b.shape[0]
    if subset_size == n_a == n_b:
        # every subset is the whole of both sets: one value, no spread
        return mmd2_unbiased(feats_a, feats_b), 0.0
    generator = torch.Generator().manual_seed(seed)
    precomputed = max(n_a, n_b) <= _PRECOMPUTE_MAX_ROWS
    if precomputed:
        k_aa = polynomial_kernel(feats_a, feats_a)
        k_bb = polynomial_kernel(feats_b, feats_b)
        k_ab = polynomial_kernel(feats_a, feats_b)
    values = []
    for _ in range(num_subsets):
        index_a = torch.randperm(n_a, generator=generator)[:subset_size].to(feats_a.device)
        index_b = torch.randperm(n_b, generator=generator)[:subset_size].to(feats_a.device)
        if precomputed:
            values.append(
                _mmd2_from_kernels(
                    k_aa[index_a][:, index_a],
                    k_bb[index_b][:, index_b],
                    k_ab[index_a][:, index_b],
                )
            )
        else:
            values.append(mmd2_unbiased(feats_a[index_a], feats_b[index_b]))
    values = torch.tensor(values, dtype=torch.float64)
    std = float(values.std()) if num_subsets > 1 else 0.0
    return float(values.mean()), std
