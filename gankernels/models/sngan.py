"""SNGAN (Miyato et al. 2018), the ResNet architecture of its CIFAR experiments, scaled
down: residual up-blocks (BN-ReLU-upsample-conv-BN-ReLU-conv) in G, residual
down-blocks with spectral norm on every convolution, linear layer and embedding in D.

Sizes: 28 (7 -> 14 -> 28), 32 (4 -> 8 -> 16 -> 32) and 64 (4 -> ... -> 64). Every block
has `width` channels (the paper: 256 in G, 128 in D at 32x32). D downsamples to the
start size, then runs one block without downsampling (the paper runs two), ReLU, a sum
over space and a linear layer; a conditional D adds the projection <embed(y), h>. A
conditional G concatenates a learned embedding of y to z. Weights are Xavier-uniform
(gain sqrt(2) in the residual paths, 1 elsewhere) as in the paper's code.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Layers, check_labels, resolution_plan

SIZES = (28, 32, 64)

_residual_init = functools.partial(nn.init.xavier_uniform_, gain=math.sqrt(2))
_plain_init = nn.init.xavier_uniform_


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class GBlock(nn.Module):
    """x -> up(x) through a 1x1 conv (it commutes with nearest upsampling, so it runs at
    the low resolution) plus BN-ReLU-up-conv3-BN-ReLU-conv3."""

    def __init__(self, L: Layers, in_ch: int, out_ch: int):
        super().__init__()
        self.norm1 = L.norm_act(in_ch, "batch", "relu")
        self.conv1 = L.conv(in_ch, out_ch, 3, 1, 1, init=_residual_init)
        self.norm2 = L.norm_act(out_ch, "batch", "relu")
        self.conv2 = L.conv(out_ch, out_ch, 3, 1, 1, init=_residual_init)
        self.shortcut = L.conv(in_ch, out_ch, 1, init=_plain_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_upsample(self.norm1(x)))
        h = self.conv2(self.norm2(h))
        return h + _upsample(self.shortcut(x))


class DBlock(nn.Module):
    """[ReLU]-conv3-ReLU-conv3-[avgpool] plus a shortcut (1x1 conv, then avgpool) where
    the shape changes. The first block of D (first=True) skips the leading ReLU (its
    input is the image) and pools before its shortcut conv, as in the paper."""

    def __init__(self, L: Layers, in_ch: int, out_ch: int, down: bool, first: bool = False):
        super().__init__()
        self.first, self.down = first, down
        self.act = None if first else L.act("relu")
        self.conv1 = L.conv(in_ch, out_ch, 3, 1, 1, act="relu", sn=True, init=_residual_init)
        self.conv2 = L.conv(out_ch, out_ch, 3, 1, 1, sn=True, init=_residual_init)
        learnable = first or down or in_ch != out_ch
        self.shortcut = L.conv(in_ch, out_ch, 1, sn=True, init=_plain_init) if learnable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.act is None else self.act(x)
        h = self.conv2(self.conv1(h))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.first:
            s = self.shortcut(F.avg_pool2d(x, 2))
        elif self.shortcut is not None:
            s = self.shortcut(x)
            if self.down:
                s = F.avg_pool2d(s, 2)
        return h + s


class Generator(nn.Module):
    """G(z, y=None) -> (B, img_channels, img_size, img_size) in [-1, 1] (tanh)."""

    def __init__(
        self,
        z_dim: int = 128,
        img_channels: int = 1,
        img_size: int = 28,
        num_classes: int = 0,
        width: int = 64,
        reference: bool = False,
    ):
        super().__init__()
        start, doublings = resolution_plan("sngan", img_size, SIZES)
        L = Layers(fused=not reference)
        self.z_dim, self.num_classes = z_dim, num_classes
        self.img_channels, self.img_size = img_channels, img_size
        self.start, self.width = start, width
        self.embed = L.embedding(num_classes, z_dim) if num_classes else None
        in_dim = z_dim * (2 if num_classes else 1)
        self.fc = L.linear(in_dim, width * start * start, init=_plain_init)
        self.blocks = nn.Sequential(*[GBlock(L, width, width) for _ in range(doublings)])
        self.norm = L.norm_act(width, "batch", "relu")
        self.to_rgb = L.conv(width, img_channels, 3, 1, 1, act="tanh", init=_plain_init)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, y, z.shape[0])
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], dim=1)
        h = self.fc(z).view(z.shape[0], self.width, self.start, self.start)
        return self.to_rgb(self.norm(self.blocks(h)))


class Discriminator(nn.Module):
    """D(x, y=None) -> (B,) logits, spectral norm on every weight."""

    def __init__(
        self,
        img_channels: int = 1,
        img_size: int = 28,
        num_classes: int = 0,
        width: int = 64,
        reference: bool = False,
    ):
        super().__init__()
        _, doublings = resolution_plan("sngan", img_size, SIZES)
        L = Layers(fused=not reference)
        self.num_classes, self.img_channels, self.img_size = num_classes, img_channels, img_size
        blocks = [DBlock(L, img_channels, width, down=True, first=True)]
        blocks += [DBlock(L, width, width, down=True) for _ in range(doublings - 1)]
        blocks.append(DBlock(L, width, width, down=False))
        self.blocks = nn.Sequential(*blocks)
        self.act = L.act("relu")
        self.out = L.linear(width, 1, sn=True, init=_plain_init)
        self.embed = (
            L.embedding(num_classes, width, sn=True, init=_plain_init) if num_classes else None
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, y, x.shape[0])
        h = self.act(self.blocks(x)).sum(dim=(2, 3))
        logits = self.out(h).flatten()
        if self.embed is not None:
            logits = logits + (self.embed(y) * h).sum(dim=1)
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
) -> tuple[Generator, Discriminator]:
    """(G, D); width sets both (default 64), g_width / d_width one of them."""
    width = 64 if width is None else width
    z_dim = 128 if z_dim is None else z_dim
    G = Generator(z_dim, img_channels, img_size, num_classes, g_width or width, reference)
    D = Discriminator(img_channels, img_size, num_classes, d_width or width, reference)
    return G, D
