"""Full-reference image scores for translation (output vs its ground-truth target):
mean absolute error, PSNR and SSIM, each the mean over images of a per-image value.

    gk.metrics.psnr(output, target, data_range=2.0)   # images in [-1, 1]
    gk.metrics.ssim(output, target, data_range=2.0)

SSIM is the Wang et al. (2004) setting that scikit-image's `structural_similarity` uses
with `gaussian_weights=True, sigma=1.5, use_sample_covariance=False`: local statistics
under an 11x11 Gaussian window (sigma 1.5), constants K1 = 0.01, K2 = 0.03, the map
averaged over the pixels whose window lies inside the image, then over channels. The
window sums are separable convolutions in float64, so a batch costs four small
convolutions rather than a Python loop over images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scipy's gaussian_filter radius: int(truncate * sigma + 0.5) = 5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _pair(x: torch.Tensor, y: torch.Tensor, data_range, name: str) -> tuple[torch.Tensor, ...]:
    for arg, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name}: {arg} must be an (N, C, H, W) tensor, got {shape}")
    if x.shape != y.shape:
        raise ValueError(
            f"{name}: x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name}: x and y hold no images")
    if isinstance(data_range, bool) or not (
        isinstance(data_range, int | float) and math.isfinite(data_range) and data_range > 0
    ):
        raise ValueError(f"{name}: data_range must be a positive number, got {data_range!r}")
    return x.detach().to(torch.float64), y.detach().to(x.device, torch.float64)


def l1(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean absolute difference of two image batches (N, C, H, W)."""
    x, y = _pair(x, y, 1.0, "l1")
    return float((x - y).abs().mean())


def psnr_per_image(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """10 log10(data_range^2 / MSE) of each image pair, (N,) float64; inf where equal."""
    x, y = _pair(x, y, data_range, "psnr")
    mse = (x - y).square().flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, the mean over images (as scikit-image's
    `peak_signal_noise_ratio` per image)."""
    return float(psnr_per_image(x, y, data_range).mean())


def _gaussian_window(device: torch.device) -> torch.Tensor:
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    w = torch.exp(-0.5 * (t / SSIM_SIGMA) ** 2)
    return w / w.sum()


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """Mean SSIM of each image pair over its channels, (N,) float64."""
    x, y = _pair(x, y, data_range, "ssim")
    n, c, h, w = x.shape
    window = _gaussian_window(x.device)
    k = window.numel()
    if h < k or w < k:
        raise ValueError(f"ssim: images must be at least {k}x{k} pixels, got {h}x{w}")
    # Only pixels whose whole window lies inside the image are averaged (scikit-image
    # crops the same border), so a 'valid' filter needs no padding rule.
    rows = window.view(1, 1, k, 1).expand(c * 5, 1, k, 1)
    cols = window.view(1, 1, 1, k).expand(c * 5, 1, 1, k)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    filtered = F.conv2d(F.conv2d(stack, rows, groups=c * 5), cols, groups=c * 5)
    ux, uy, uxx, uyy, uxy = filtered.split(c, dim=1)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float) -> float:
    """Structural similarity, the mean over images (see the module docstring)."""
    return float(ssim_per_image(x, y, data_range).mean())


__all__ = ["l1", "psnr", "psnr_per_image", "ssim", "ssim_per_image"]
