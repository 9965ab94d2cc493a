"""Edge maps for paired translation data (edges -> photo, as in pix2pix's edges2shoes):
a Canny detector (Canny 1986) in torch, batched over whole data sets.

    edges = canny(images)            # uint8 (N, H, W) -> bool (N, H, W)
    sketch = edge_sketch(images)     # uint8: black edge lines on white, like edges2shoes

Steps: Gaussian smoothing (sigma, truncated at 4 sigma, edge pixels replicated), Sobel
gradients, non-maximum suppression along the gradient direction quantised to 0, 45, 90
or 135 degrees, then hysteresis: pixels whose gradient magnitude is at least `high` are
edges, and so is every pixel at least `low` connected to one of them (8-neighbourhood).
Thresholds are in units of the Sobel magnitude of an image scaled to [0, 1] (a step of
height 1 gives 4), the scale scikit-image's `canny` uses for its defaults 0.1 and 0.2.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _taps(x: torch.Tensor, weights, dim: int) -> torch.Tensor:
    """Correlate x (already padded by len(weights) // 2 along `dim`) with `weights` as a
    sum of shifted slices: cheaper than a one-channel conv2d on the CPU."""
    n = x.shape[dim] - len(weights) + 1
    out = None
    for i, w in enumerate(weights):
        if w == 0:
            continue
        term = x.narrow(dim, i, n) * w
        out = term if out is None else out.add_(term)
    return out


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(4.0 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).tolist()
    x = F.pad(x.unsqueeze(1), (radius, radius, radius, radius), mode="replicate").squeeze(1)
    return _taps(_taps(x, kernel, 1), kernel, 2)


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[n, r, c] = x[n, r + dy, c + dx], zero outside."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    return padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def _dilate(x: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation of bool (N, H, W), as two 1-D passes."""
    rows = x.clone()
    rows[:, 1:] |= x[:, :-1]
    rows[:, :-1] |= x[:, 1:]
    out = rows.clone()
    out[:, :, 1:] |= rows[:, :, :-1]
    out[:, :, :-1] |= rows[:, :, 1:]
    return out


def _canny_chunk(x: torch.Tensor, sigma: float, low: float, high: float) -> torch.Tensor:
    """x: float (N, H, W) in [0, 1] -> bool edges (N, H, W)."""
    if sigma > 0:
        x = _gaussian_blur(x, sigma)
    x = F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    # Sobel: smooth [1, 2, 1] across, difference [-1, 0, 1] along.
    gx = _taps(_taps(x, (1.0, 2.0, 1.0), 1), (-1.0, 0.0, 1.0), 2)  # d/d(column)
    gy = _taps(_taps(x, (1.0, 2.0, 1.0), 2), (-1.0, 0.0, 1.0), 1)  # d/d(row)
    magnitude = torch.hypot(gx, gy)

    # The gradient direction in [0, 180) degrees, quantised to 4 bins; compare each pixel
    # with its two neighbours along that direction (rows grow downwards, as gy does).
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
    bins = ((angle + 22.5) // 45.0).long() % 4
    keep = torch.zeros_like(magnitude, dtype=torch.bool)
    for b, (dy, dx) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        forward, backward = _shift(magnitude, dy, dx), _shift(magnitude, -dy, -dx)
        # >= on one side and > on the other: a plateau two pixels wide keeps one of them
        keep |= (bins == b) & (magnitude >= forward) & (magnitude > backward)
    weak = keep & (magnitude >= low)
    grown = weak & (magnitude >= high)

    # Hysteresis: grow the strong edges through connected weak pixels until stable,
    # iterating only over the images that still change.
    active = torch.arange(x.shape[0])
    while active.numel():
        before = grown[active]
        after = _dilate(before) & weak[active]
        changed = (after != before).flatten(1).any(dim=1)
        grown[active] = after
        active = active[changed]
    return grown


def canny(
    images,
    sigma: float = 1.0,
    low: float = 0.1,
    high: float = 0.2,
    chunk: int = 8192,
) -> torch.Tensor:
    """Canny edges of greyscale images: uint8 (N, H, W) (0..255) or floats in [0, 1],
    numpy or torch -> bool tensor (N, H, W), True on edges. See the module doc."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor) or images.dim() != 3:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise ValueError(f"canny: images must be (N, H, W) greyscale, got {shape}")
    if not 0 <= low <= high:
        raise ValueError(f"canny: thresholds must satisfy 0 <= low <= high, got {low}, {high}")
    if sigma < 0:
        raise ValueError(f"canny: sigma must be >= 0, got {sigma}")
    out = torch.empty(images.shape, dtype=torch.bool)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        out[start : start + chunk] = _canny_chunk(x, sigma, low, high)
    return out


def edge_sketch(images, **canny_options) -> np.ndarray:
    """uint8 (N, H, W): 0 (black) on the Canny edges of `images`, 255 elsewhere."""
    edges = canny(images, **canny_options).numpy()
    return np.where(edges, 0, 255).astype(np.uint8)
