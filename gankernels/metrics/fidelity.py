"""How well generated images follow their conditions (text captions, labels).

- `text_fidelity(logits, labels)`: the share of generated images that a classifier (for
  Fashion-MNIST, `FashionClassifier`) assigns to the class their caption names.
- `nearest_label_fidelity(fake, labels, real, real_labels)`: the share of generated
  images whose nearest real image, in a feature space (any extractor's features), has
  the label of their caption: for emoji, the caption's category.
"""

from __future__ import annotations

import torch


def _check_labels(labels, count: int, name: str) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point():
        raise ValueError(f"{name} must be an integer tensor (N,), got {labels!r:.60}")
    if len(labels) != count:
        raise ValueError(f"{name} has {len(labels)} entries for {count} images")
    return labels.long().cpu()


def _check_features(features, name: str) -> torch.Tensor:
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or len(features) == 0:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise ValueError(f"{name} must be a non-empty (N, D) tensor, got {shape}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} has NaN/inf values")
    return features


def text_fidelity(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of images whose argmax class (logits (N, K), or predicted classes (N,)) is
    the class their caption names (`labels` (N,))."""
    if isinstance(logits, torch.Tensor) and logits.dim() == 2:
        predicted = logits.argmax(1)
    elif isinstance(logits, torch.Tensor) and logits.dim() == 1 and not logits.is_floating_point():
        predicted = logits
    else:
        raise ValueError("logits must be (N, K) class scores or (N,) predicted classes")
    if len(predicted) == 0:
        raise ValueError("logits is empty: no images to score")
    labels = _check_labels(labels, len(predicted), "labels")
    return float((predicted.cpu() == labels).float().mean())


@torch.no_grad()
def nearest_neighbours(queries: torch.Tensor, keys: torch.Tensor, chunk: int = 1024):
    """Index (N,) of each query's nearest key in Euclidean distance (float64; ties: the
    lowest index)."""
    keys = keys.double()
    key_norms = (keys * keys).sum(1)
    out = []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk].to(keys.device).double()
        # ||q - k||^2 without the ||q||^2 term, which does not change the argmin
        out.append((key_norms[None, :] - 2.0 * q @ keys.T).argmin(1))
    return torch.cat(out).cpu()


def nearest_label_fidelity(
    fake_features: torch.Tensor,
    labels: torch.Tensor,
    real_features: torch.Tensor,
    real_labels: torch.Tensor,
) -> float:
    """Share of generated images (fake_features (N, D)) whose nearest real image
    (real_features (M, D), labelled real_labels (M,)) has the label their caption names
    (`labels` (N,)): emoji text fidelity, with the emoji category as label."""
    fake = _check_features(fake_features, "fake_features")
    real = _check_features(real_features, "real_features")
    if fake.shape[1] != real.shape[1]:
        raise ValueError(
            f"fake_features ({fake.shape[1]}-d) and real_features ({real.shape[1]}-d) must "
            "come from the same extractor"
        )
    labels = _check_labels(labels, len(fake), "labels")
    real_labels = _check_labels(real_labels, len(real), "real_labels")
    nearest = nearest_neighbours(fake, real)
    return float((real_labels[nearest] == labels).float().mean())
