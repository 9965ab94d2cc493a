"""Improved precision and recall (Kynkäänniemi et al. 2019).

Each set's manifold is the union of balls around its points with radius the distance to
the k-th nearest neighbour in the same set. Precision = fraction of generated samples
inside the real manifold (fidelity); recall = fraction of real samples inside the
generated manifold (coverage).
"""

from __future__ import annotations

import torch

from ._checks import as_features, positive_int, same_width


def _kth_neighbour_radii(features: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (the row itself excluded)."""
    radii = []
    for start in range(0, features.shape[0], chunk):
        distances = torch.cdist(features[start : start + chunk], features)
        # the smallest distance is the point itself (0), so take the (k+1)-th smallest
        radii.append(distances.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _inside_manifold(
    queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int
) -> torch.Tensor:
    """For each query: is it within radii[j] of some support point j?"""
    inside = []
    for start in range(0, queries.shape[0], chunk):
        distances = torch.cdist(queries[start : start + chunk], support)
        inside.append((distances <= radii.unsqueeze(0)).any(dim=1))
    return torch.cat(inside)


def precision_recall(
    real_features, fake_features, k: int = 3, chunk: int = 1024
) -> tuple[float, float]:
    """(precision, recall) with k-nearest-neighbour radii; distances in float64, computed
    `chunk` rows at a time so memory stays O(chunk * N)."""
    real = as_features(real_features, "real_features").to(torch.float64)
    fake = as_features(fake_features, "fake_features").to(real.device, torch.float64)
    same_width(real, fake, "real_features", "fake_features")
    k = positive_int(k, "k")
    chunk = positive_int(chunk, "chunk")
    for name, feats in (("real_features", real), ("fake_features", fake)):
        if feats.shape[0] <= k:
            raise ValueError(f"{name} needs more than k={k} rows, got {feats.shape[0]}")
    real_radii = _kth_neighbour_radii(real, k, chunk)
    fake_radii = _kth_neighbour_radii(fake, k, chunk)
    precision = _inside_manifold(fake, real, real_radii, chunk).double().mean()
    recall = _inside_manifold(real, fake, fake_radii, chunk).double().mean()
    return float(precision), float(recall)
