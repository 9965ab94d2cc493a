"""StyleGAN2's modulated convolution layer around `gk.ops.modulated_conv2d`."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..fusion import FusionChoice
from ..ops.modulated_conv2d import SUPPORTED_FACTORS, modulated_conv2d
from ..ops.upfirdn2d import setup_filter


class ModulatedConv2d(FusionChoice, nn.Module):
    """forward(x, w): x (N, in_channels, H, W), w (N, style_dim) -> (N, out_channels, H', W').

    The styles are an affine map of w (bias 1 at first, so that they start near 1); the
    weight ~ N(0, 1) is scaled by 1 / sqrt(in_channels * k * k) at run time (equalised
    learning rate), as are the affine layer's weights by 1 / sqrt(style_dim). Padding
    k // 2 keeps the size (up=2 doubles it, down=2 halves it).

    Two implementations, chosen per input shape by gankernels.fusion: 'fused' (our
    kernel prepares the per-sample weights, one grouped convolution) and 'torch'
    (StyleGAN2's training path in plain torch: scale the input, convolve with the shared
    weight, scale the output). fused=False (the reference build) always takes the torch
    one."""

    _fusion_op = "modconv2d"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        up: int = 1,
        down: int = 1,
        resample_filter=(1, 3, 3, 1),
        fused: bool = True,
    ):
        super().__init__()
        for name, v in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("kernel_size", kernel_size),
            ("style_dim", style_dim),
        ):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"ModulatedConv2d: {name} must be an int >= 1, got {v!r}")
        for name, v in (("up", up), ("down", down)):
            if v not in SUPPORTED_FACTORS:
                raise ValueError(
                    f"ModulatedConv2d: {name} must be one of {SUPPORTED_FACTORS}, got {v!r}"
                )
        for name, v in (("demodulate", demodulate), ("fused", fused)):
            if not isinstance(v, bool):
                raise ValueError(f"ModulatedConv2d: {name} must be a bool, got {v!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.style_dim = kernel_size, style_dim
        self.demodulate, self.up, self.down, self.fused = demodulate, up, down, fused
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.affine_weight = nn.Parameter(torch.randn(in_channels, style_dim))
        self.affine_bias = nn.Parameter(torch.ones(in_channels))
        self.affine_gain = 1 / math.sqrt(style_dim)
        # Normalised to sum 1 (the up path's gain of 4 keeps the signal's level).
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        tensors = [x, w, self.weight, self.affine_weight, self.affine_bias]
        impl = self._fusion_impl(x, tensors) if self.fused else "torch"
        return self._fusion_forward(impl, tensors)

    def _fusion_config(self) -> str:
        k = self.kernel_size
        resample = f"up={self.up} down={self.down}"
        return f"{self.out_channels}x{k}x{k} demodulate={self.demodulate} {resample}"

    def _fusion_forward(self, impl: str, tensors: list) -> torch.Tensor:
        x, w, weight, affine_weight, affine_bias = tensors
        styles = torch.addmm(affine_bias, w, affine_weight.t() * self.affine_gain)
        return modulated_conv2d(
            x,
            weight * self.weight_gain,
            styles,
            demodulate=self.demodulate,
            up=self.up,
            down=self.down,
            padding=self.kernel_size // 2,
            resample_filter=self.resample_filter,
            fused=impl == "fused",
        )

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"style_dim={self.style_dim}, demodulate={self.demodulate}"
        )
        return (
            s
            + (f", up={self.up}" if self.up > 1 else "")
            + (f", down={self.down}" if self.down > 1 else "")
            + (f", {self._fusion_repr()}" if self.fused else ", reference")
        )
