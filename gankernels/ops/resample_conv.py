"""Convolutions fused with 2x nearest upsampling or 2x average pooling, by folding the
resampling into the kernel: the same numbers (to rounding) for less than half the work.

  upsample_conv2d(x, w, b, p) = conv2d(upsample_nearest_2x(x), w, b, padding=p)
  conv2d_avgpool(x, w, b, p)  = avg_pool2d(conv2d(x, w, b, padding=p), 2)

Both resamplings are linear and shift-invariant per output phase, so each composition is
one convolution with a (k+1) x (k+1) kernel made from w:

  up:   a stride-2 transposed convolution with K = flip(S(w)), where S sums each 2x2
        window of w zero-padded by one (every input pixel feeds a 2x2 block of the
        upsampled image, so the four output phases see 2x2 sums of w's taps)
  pool: a stride-2 convolution with K = S(w) / 4 (each pooled output averages the conv
        at four shifts)

A 3x3 convolution at the upsampled (or pre-pooling) resolution costs 9 multiply-adds per
output pixel there; the folded form costs 16 per low-resolution pixel, i.e. 4 per
high-resolution one: 2.25x fewer, and the upsampled image or the unpooled output is
never written. Building K is a few tiny ops on the weight; autograd differentiates
through it (and through the convolution twice, for R1 / WGAN-GP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _window_sums(w: torch.Tensor) -> torch.Tensor:
    """S(w): (..., kh, kw) -> (..., kh + 1, kw + 1), the sums of w's 2x2 windows with one
    zero row and column on each side."""
    s = F.pad(w, (1, 1, 1, 1))
    s = s[..., :-1, :] + s[..., 1:, :]
    return s[..., :-1] + s[..., 1:]


def _check(name: str, x: torch.Tensor, weight: torch.Tensor, bias, padding) -> tuple[int, int]:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{name}: x must be a 4-D (N, C, H, W) tensor, got {_shape(x)}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise ValueError(
            f"{name}: weight must be a 4-D (out, in, kh, kw) tensor, got {_shape(weight)}"
        )
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"{name}: weight has {weight.shape[1]} input channels but x has {x.shape[1]}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{name}: bias must have shape ({weight.shape[0]},), got {_shape(bias)}")
    kh, kw = weight.shape[-2:]
    if padding is None:
        padding = (kh // 2, kw // 2)
    pads = (padding, padding) if isinstance(padding, int) else padding
    pads = tuple(pads) if isinstance(pads, tuple | list) else ()
    fits = zip(pads, (kh, kw), strict=False)
    if len(pads) != 2 or not all(isinstance(p, int) and 0 <= p < k for p, k in fits):
        raise ValueError(
            f"{name}: padding must be an int or a pair with 0 <= padding < kernel size "
            f"({kh}, {kw}), got {padding!r}"
        )
    return pads


def _shape(t) -> str:
    return f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__


def upsample_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """conv2d(nearest 2x upsampling of x, weight, bias, stride 1, padding) as one stride-2
    transposed convolution. padding: per side, default kernel // 2 ("same")."""
    ph, pw = _check("upsample_conv2d", x, weight, bias, padding)
    kh, kw = weight.shape[-2:]
    kernel = _window_sums(weight).flip(-2, -1).transpose(0, 1)
    return F.conv_transpose2d(x, kernel, bias, stride=2, padding=(kh - 1 - ph, kw - 1 - pw))


def conv2d_avgpool(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """avg_pool2d(conv2d(x, weight, bias, stride 1, padding), 2) as one stride-2
    convolution (an odd-sized conv output loses its last row / column, as avg_pool2d's)."""
    pads = _check("conv2d_avgpool", x, weight, bias, padding)
    return F.conv2d(x, _window_sums(weight) * 0.25, bias, stride=2, padding=pads)


def reference_upsample_conv2d(x, weight, bias=None, padding=None):
    pads = _check("upsample_conv2d", x, weight, bias, padding)
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=pads)


def reference_conv2d_avgpool(x, weight, bias=None, padding=None):
    pads = _check("conv2d_avgpool", x, weight, bias, padding)
    return F.avg_pool2d(F.conv2d(x, weight, bias, padding=pads), 2)
