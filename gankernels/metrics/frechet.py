"""Fréchet distance between Gaussians fitted to features (FID when the features are
Inception pool3 activations), in float64.

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)

tr sqrt(S1 S2) is computed by eigen-decomposition instead of a matrix square root:
with R = sqrt(S1) (from eigh of the symmetric S1), S1 S2 is similar to R S2 R, which is
symmetric positive semi-definite, so tr sqrt(S1 S2) = sum_i sqrt(lambda_i(R S2 R)).
"""

from __future__ import annotations

import torch

from ._checks import as_features, same_width


def _psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix; tiny negative eigenvalues
    (rounding) are clamped to zero."""
    eigvals, eigvecs = torch.linalg.eigh(sigma)
    return (eigvecs * eigvals.clamp_min(0).sqrt()) @ eigvecs.T


def _as_matrix(x, name: str, dim: int, device) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64, device=device)
    if x.shape != (dim, dim):
        raise ValueError(f"{name} must have shape ({dim}, {dim}), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} has NaN/inf values")
    return x


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64 on
    the inputs' device: |mu1 - mu2|^2 + tr(S1 + S2) - 2 sum sqrt(eig(sqrt(S1) S2 sqrt(S1)))."""
    mu1 = torch.as_tensor(mu1)
    device = mu1.device
    mu1 = mu1.to(torch.float64)
    if mu1.dim() != 1:
        raise ValueError(f"mu1 must be a vector, got shape {tuple(mu1.shape)}")
    dim = mu1.shape[0]
    mu2 = torch.as_tensor(mu2, dtype=torch.float64, device=device)
    if mu2.shape != (dim,):
        raise ValueError(f"mu2 must have shape ({dim},), got {tuple(mu2.shape)}")
    if not (torch.isfinite(mu1).all() and torch.isfinite(mu2).all()):
        raise ValueError("mu1/mu2 have NaN/inf values")
    sigma1 = _as_matrix(sigma1, "sigma1", dim, device)
    sigma2 = _as_matrix(sigma2, "sigma2", dim, device)
    sigma1 = (sigma1 + sigma1.T) / 2
    sigma2 = (sigma2 + sigma2.T) / 2
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigvals = torch.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = eigvals.clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    distance = diff @ diff + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return max(float(distance), 0.0)


def feature_statistics(features, name: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, covariance) of (N, D) features in float64; covariance with 1/(N-1)."""
    features = as_features(features, name, min_rows=2).to(torch.float64)
    mu = features.mean(0)
    centred = features - mu
    sigma = centred.T @ centred / (features.shape[0] - 1)
    return mu, sigma


def _check_enough_samples(features: torch.Tensor, name: str) -> None:
    n, dim = features.shape
    if n <= dim:
        raise ValueError(
            f"{name}: {n} samples for {dim}-dimensional features leave the covariance "
            f"singular (rank <= {n - 1}), so FID would be unreliable; use more than {dim} "
            "samples (FID is usually reported on 10000-50000), or a smaller feature layer "
            "such as the digit classifier's 256 penultimate features (extractor='digits')"
        )


def fid(feats_a, feats_b) -> float:
    """Fréchet Inception Distance between two (N, D) feature sets (float64 statistics).
    Each set needs more samples than feature dimensions."""
    feats_a = as_features(feats_a, "feats_a", min_rows=2)
    feats_b = as_features(feats_b, "feats_b", min_rows=2)
    same_width(feats_a, feats_b, "feats_a", "feats_b")
    _check_enough_samples(feats_a, "feats_a")
    _check_enough_samples(feats_b, "feats_b")
    mu_a, sigma_a = feature_statistics(feats_a, "feats_a")
    mu_b, sigma_b = feature_statistics(feats_b.to(feats_a.device), "feats_b")
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
