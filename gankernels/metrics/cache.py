"""Features of real images, extracted once and kept on disk: keyed by data set, split,
image count, extractor and resolution, under ~/.cache/gankernels/features
(GANKERNELS_CACHE moves it)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..images import atomic_write
from .extractors import extract

# bumped when extractors change their numbers, so older cache files are not read
CACHE_VERSION = 2


def cache_dir() -> Path:
    root = os.environ.get("GANKERNELS_CACHE") or Path.home() / ".cache" / "gankernels"
    return Path(root) / "features"


def real_features_key(data: str, split: str, count: int, size: int, extractor: str) -> str:
    """The cache key of the real features of `count` images of a data set's split."""
    return f"{data}-{split}-n{count}-{size}px-{extractor}"


def cached_features(
    model, images, key: str, batch_size: int = 256, device=None, progress: bool = True
) -> dict[str, torch.Tensor]:
    """extract(model, images) from the cache file `key`.pt, or extracted and stored there."""
    path = cache_dir() / f"{key}.v{CACHE_VERSION}.pt"
    if path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a file from another version: extract again
            pass
    features = extract(model, images, batch_size, device, progress, name="real_images")
    atomic_write(path, lambda f: torch.save(features, f))
    return features
