"""A small StyleGAN2 (Karras et al. 2020) built on gankernels' modulated convolution,
FIR resampling, bias + activation and minibatch stddev kernels.

G: a mapping network (equalised-lr linear layers, lrelu, learning rate x0.01) turns z
(and, conditional, an embedding of y, both normalised) into w; the synthesis network
starts from a learned constant and runs, per resolution, two modulated 3x3 convolutions
(the first upsampling x2 through upfirdn2d) with per-pixel noise of learned strength,
bias and lrelu, and a toRGB (modulated 1x1, no demodulation) whose output is added to the
FIR-upsampled image of the resolution below (skip architecture). One w drives every
layer (no style mixing, no truncation). The image goes through tanh (g_output="tanh", the
default); g_output="linear" is the paper's unbounded output, with which this small G
collapses to one image on MNIST: digits are mostly pixels at exactly -1, and a linear
output holds a flat background only by dropping its dependence on z, while tanh
saturates there (docs/training).

D: fromRGB, residual blocks (conv3-lrelu, FIR downsample, conv3-lrelu, plus a
downsampled 1x1 skip, summed and scaled by sqrt(1/2)), then minibatch stddev, conv3,
a linear layer and the logit; a conditional D adds a projection term
<embed(y), h> / sqrt(channels). The batch must be a multiple of min(mbstd_group_size, B).

Sizes 28 (7 -> 14 -> 28), 32 and 64 (from 4x4); every layer has `width` channels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nn.minibatch_stddev import MinibatchStdDev
from ..nn.modulated_conv import ModulatedConv2d
from ..nn.upfirdn2d import Downsample2d, Upsample2d
from .layers import Layers, check_labels, normalize_2nd_moment, resolution_plan

SIZES = (28, 32, 64)
G_OUTPUTS = ("tanh", "linear")


class MappingNetwork(nn.Module):
    """z (B, z_dim) [+ y] -> w (B, w_dim)."""

    def __init__(
        self,
        L: Layers,
        z_dim: int,
        w_dim: int,
        num_classes: int,
        num_layers: int = 4,
        lr_multiplier: float = 0.01,
    ):
        super().__init__()
        self.embed = L.embedding(num_classes, z_dim, init=nn.init.normal_) if num_classes else None
        dims = [z_dim * (2 if num_classes else 1)] + [w_dim] * num_layers
        self.layers = nn.Sequential(
            *[
                L.eq_linear(i, o, act="lrelu", lr_multiplier=lr_multiplier)
                for i, o in zip(dims[:-1], dims[1:], strict=True)
            ]
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        if self.embed is not None:
            x = torch.cat([x, normalize_2nd_moment(self.embed(y))], dim=1)
        return self.layers(x)


class StyleLayer(nn.Module):
    """Modulated conv (up=2 optionally), noise, bias, lrelu * sqrt(2)."""

    def __init__(self, L: Layers, in_ch: int, out_ch: int, w_dim: int, up: int = 1):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, up=up, fused=L.fused)
        self.act = L.noise_bias_act(out_ch)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        return self.act(self.conv(x, w), noise_mode)


class ToRGB(nn.Module):
    """Modulated 1x1 conv without demodulation, plus a bias."""

    def __init__(self, L: Layers, in_ch: int, img_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, img_channels, 1, w_dim, demodulate=False, fused=L.fused)
        self.bias = L.add_bias(img_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.bias(self.conv(x, w))


class SynthesisBlock(nn.Module):
    """One resolution doubling: two style layers and the skip image's update."""

    def __init__(self, L: Layers, ch: int, img_channels: int, w_dim: int):
        super().__init__()
        self.conv0 = StyleLayer(L, ch, ch, w_dim, up=2)
        self.conv1 = StyleLayer(L, ch, ch, w_dim)
        self.to_rgb = ToRGB(L, ch, img_channels, w_dim)
        self.upsample = Upsample2d(2)

    def forward(self, x, img, w, noise_mode):
        x = self.conv1(self.conv0(x, w, noise_mode), w, noise_mode)
        return x, self.upsample(img) + self.to_rgb(x, w)


class Generator(nn.Module):
    """G(z, y=None, noise_mode='random') -> (B, img_channels, img_size, img_size), through
    tanh or linear (g_output, see the module docstring). noise_mode='none' leaves the
    noise out (deterministic output)."""

    def __init__(
        self,
        z_dim: int = 128,
        img_channels: int = 1,
        img_size: int = 28,
        num_classes: int = 0,
        width: int = 64,
        reference: bool = False,
        w_dim: int | None = None,
        mapping_layers: int = 4,
        g_output: str = "tanh",
    ):
        super().__init__()
        if g_output not in G_OUTPUTS:
            raise ValueError(f"stylegan2: g_output must be one of {G_OUTPUTS}, got {g_output!r}")
        start, doublings = resolution_plan("stylegan2", img_size, SIZES)
        L = Layers(fused=not reference)
        self.z_dim, self.num_classes = z_dim, num_classes
        self.img_channels, self.img_size = img_channels, img_size
        self.w_dim = z_dim if w_dim is None else w_dim
        self.mapping = MappingNetwork(L, z_dim, self.w_dim, num_classes, mapping_layers)
        self.const = nn.Parameter(torch.randn(width, start, start))
        self.conv = StyleLayer(L, width, width, self.w_dim)
        self.to_rgb = ToRGB(L, width, img_channels, self.w_dim)
        self.blocks = nn.ModuleList(
            [SynthesisBlock(L, width, img_channels, self.w_dim) for _ in range(doublings)]
        )
        self.output = L.act("tanh") if g_output == "tanh" else nn.Identity()

    def forward(
        self, z: torch.Tensor, y: torch.Tensor | None = None, noise_mode: str = "random"
    ) -> torch.Tensor:
        check_labels(self, y, z.shape[0])
        w = self.mapping(z, y)
        x = self.const.unsqueeze(0).expand(z.shape[0], -1, -1, -1)
        x = self.conv(x, w, noise_mode)
        img = self.to_rgb(x, w)
        for block in self.blocks:
            x, img = block(x, img, w, noise_mode)
        return self.output(img)


class DBlock(nn.Module):
    """Residual down-block: (skip + main) * sqrt(1/2), both halving the resolution."""

    def __init__(self, L: Layers, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = L.eq_conv(in_ch, in_ch, 3, act="lrelu")
        self.conv1 = L.eq_conv(in_ch, out_ch, 3, act="lrelu")
        self.skip = L.eq_conv(in_ch, out_ch, 1, bias=False)
        self.downsample = Downsample2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(self.downsample(x))
        x = self.conv1(self.downsample(self.conv0(x)))
        return (skip + x) * math.sqrt(0.5)


class Discriminator(nn.Module):
    """D(x, y=None) -> (B,) logits."""

    def __init__(
        self,
        img_channels: int = 1,
        img_size: int = 28,
        num_classes: int = 0,
        width: int = 64,
        reference: bool = False,
        mbstd_group_size: int = 4,
    ):
        super().__init__()
        start, doublings = resolution_plan("stylegan2", img_size, SIZES)
        L = Layers(fused=not reference)
        self.num_classes, self.img_channels, self.img_size = num_classes, img_channels, img_size
        self.from_rgb = L.eq_conv(img_channels, width, 1, act="lrelu")
        self.blocks = nn.Sequential(*[DBlock(L, width, width) for _ in range(doublings)])
        self.mbstd = MinibatchStdDev(mbstd_group_size, 1)
        self.conv = L.eq_conv(width + 1, width, 3, act="lrelu")
        self.fc = L.eq_linear(width * start * start, width, act="lrelu")
        self.out = L.eq_linear(width, 1)
        self.embed = L.embedding(num_classes, width, init=nn.init.normal_) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, y, x.shape[0])
        h = self.conv(self.mbstd(self.blocks(self.from_rgb(x))))
        h = self.fc(h.flatten(1))
        logits = self.out(h).flatten()
        if self.embed is not None:
            logits = logits + (self.embed(y) * h).sum(dim=1) / math.sqrt(h.shape[1])
        return logits


def build(
    *,
    img_channels: int = 1,
    img_size: int = 28,
    z_dim: int | None = None,
    num_classes: int = 0,
    width: int | None = None,
    reference: bool = False,
    g_width: int | None = None,
    d_width: int | None = None,
    w_dim: int | None = None,
    mapping_layers: int = 4,
    mbstd_group_size: int = 4,
    g_output: str = "tanh",
) -> tuple[Generator, Discriminator]:
    """(G, D); width sets both (default 64), g_width / d_width one of them."""
    width = 64 if width is None else width
    G = Generator(
        128 if z_dim is None else z_dim,
        img_channels,
        img_size,
        num_classes,
        g_width or width,
        reference,
        w_dim,
        mapping_layers,
        g_output,
    )
    D = Discriminator(
        img_channels, img_size, num_classes, d_width or width, reference, mbstd_group_size
    )
    return G, D
