"""Generators as sample sources: draw images from G(z, y), and rebuild G from a training
checkpoint (OUT/last.pt of `gankernels train`)."""

from __future__ import annotations

import os

import torch
from torch import nn


def is_generator(source) -> bool:
    return isinstance(source, nn.Module) and hasattr(source, "z_dim")


def _balanced_labels(G: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor | None:
    num_classes = int(getattr(G, "num_classes", 0) or 0)
    if num_classes <= 0:
        return None
    labels = torch.arange(n) % num_classes
    return labels[torch.randperm(n, generator=generator)]


def generator_labels(G: nn.Module, n: int, seed: int = 0) -> torch.Tensor | None:
    """The class labels sample_generator(G, n, seed=seed) gives G (None: unconditional)."""
    return _balanced_labels(G, n, torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample_generator(G: nn.Module, n: int, batch_size: int = 64, device=None, seed: int = 0):
    """Yield n generated images in batches, floats clamped to [-1, 1]. z ~ N(0, I) from a
    seeded generator; a class-conditional G (G.num_classes > 0) gets balanced labels (each
    class n/K times, in random order), so the generator, not the label draw, decides the
    class histogram."""
    if device is None:
        tensors = [*G.parameters(), *G.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
    generator = torch.Generator().manual_seed(seed)
    labels = _balanced_labels(G, n, generator)
    was_training = G.training
    G.eval()
    try:
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            z = torch.randn(count, G.z_dim, generator=generator).to(device)
            y = None if labels is None else labels[start : start + count].to(device)
            images = G(z, y)
            if not torch.isfinite(images).all():
                raise ValueError("images_or_generator: the generator produced NaN/inf images")
            yield images.float().clamp(-1, 1)
    finally:
        G.train(was_training)


def sample_conditioned(G: nn.Module, conditions: torch.Tensor, batch_size: int = 64, seed: int = 0):
    """Yield one image per condition (rows of `conditions`: labels or condition vectors)
    from G in eval mode, z ~ N(0, I) from a seeded generator, in batches."""
    tensors = [*G.parameters(), *G.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    generator = torch.Generator().manual_seed(seed)
    was_training = G.training
    G.eval()
    try:
        with torch.no_grad():
            for start in range(0, conditions.shape[0], batch_size):
                c = conditions[start : start + batch_size].to(device)
                z = torch.randn(c.shape[0], G.z_dim, generator=generator).to(device)
                yield G(z, c).float().clamp(-1, 1)
    finally:
        G.train(was_training)


def load_generator(checkpoint: str | os.PathLike, ema: bool = True, device="cpu") -> nn.Module:
    """G from a `gankernels train` checkpoint, in eval mode: the EMA weights (G_ema) when
    the run kept them and ema=True, else the trained G. The checkpoint is unpickled, so load
    only files you trust."""
    from .. import checkpoint as checkpoints
    from ..tasks import build_info_of, build_networks

    ckpt = checkpoints.load(checkpoint, kind="generation")
    G, _ = build_networks(build_info_of(ckpt))
    state = ckpt.get("G_ema") if ema and ckpt.get("G_ema") is not None else ckpt["G"]
    G.load_state_dict(state)
    return G.to(device).eval().requires_grad_(False)
