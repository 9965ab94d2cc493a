"""L1, PSNR and SSIM of image batches: against scikit-image's per-image functions (SSIM
with Gaussian weights, sigma 1.5, no sample-covariance correction) and their formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gankernels as gk

skimage_metrics = pytest.importorskip("skimage.metrics")


def _pairs(n, c, h, w, noise=0.15, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g)
    y = (x + noise * torch.randn(n, c, h, w, generator=g)).clamp(0, 1)
    return x, y


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 32, 29), (1, 3, 11, 40)])
@pytest.mark.parametrize("data_range", [1.0, 2.0, 255.0])
def test_ssim_and_psnr_match_scikit_image(shape, data_range):
    x, y = _pairs(*shape)
    x, y = x * data_range, y * data_range
    ssim_ref, psnr_ref = [], []
    for a, b in zip(x.double().numpy(), y.double().numpy(), strict=True):
        ssim_ref.append(
            skimage_metrics.structural_similarity(
                a, b, data_range=data_range, channel_axis=0, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False,
            )
        )  # fmt: skip
        psnr_ref.append(skimage_metrics.peak_signal_noise_ratio(a, b, data_range=data_range))
    ours = gk.metrics.ssim_per_image(x, y, data_range)
    np.testing.assert_allclose(ours.numpy(), ssim_ref, atol=1e-4, rtol=0)
    assert abs(gk.metrics.ssim(x, y, data_range) - np.mean(ssim_ref)) < 1e-4
    np.testing.assert_allclose(gk.metrics.psnr_per_image(x, y, data_range), psnr_ref, rtol=1e-6)
    assert abs(gk.metrics.psnr(x, y, data_range) - np.mean(psnr_ref)) < 1e-4


def test_similarity_limits_and_l1():
    x, y = _pairs(4, 3, 16, 16)
    assert gk.metrics.ssim(x, x, 1.0) == pytest.approx(1.0, abs=1e-12)
    assert math.isinf(gk.metrics.psnr(x, x, 1.0))
    assert gk.metrics.ssim(x, y, 1.0) < 1.0
    assert gk.metrics.l1(x, y) == pytest.approx(float((x - y).abs().mean()), rel=1e-6)
    # PSNR's formula on one image
    mse = float((x[:1].double() - y[:1].double()).square().mean())
    assert gk.metrics.psnr(x[:1], y[:1], 1.0) == pytest.approx(10 * math.log10(1 / mse))
    # float16 inputs are scored in float64 too
    assert gk.metrics.ssim(x.half(), y.half(), 1.0) == pytest.approx(
        gk.metrics.ssim(x.half().float(), y.half().float(), 1.0), abs=1e-12
    )


def test_similarity_bad_input():
    x, y = _pairs(2, 1, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        gk.metrics.ssim(x, y[:, :, :15], 1.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        gk.metrics.psnr(x[0], y[0], 1.0)
    with pytest.raises(ValueError, match="data_range"):
        gk.metrics.ssim(x, y, 0)
    with pytest.raises(ValueError, match="at least 11x11"):
        gk.metrics.ssim(x[:, :, :8, :8], y[:, :, :8, :8], 1.0)
