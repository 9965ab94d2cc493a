"""SNGAN (Miyato et al. 2018), the ResNet architecture of its CIFAR experiments, scaled
down: residual up-blocks (BN-ReLU-upsample-conv-BN-ReLU-conv) in G, residual
down-blocks with spectral norm on every convolution, linear layer and embedding in D.

Sizes: 28 (7 -> 14 -> 28), 32 (4 -> 8 -> 16 -> 32) and 64 (4 -> ... -> 64). Every block
has `width` channels (the paper: 256 in G, 128 in D at 32x32). D downsamples to the
start size, then runs one block without downsampling (the paper runs two), ReLU, a sum
over space and a linear layer; a conditional D adds the projection <embed(y), h>. A
conditional G modulates its batch norms with an embedding of y (or concatenates it to
z). Weights are Xavier-uniform (gain sqrt(2) in the residual paths, 1 elsewhere) as in
the paper's code.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Layers, check_labels, resolution_plan, run_layers

SIZES = (28, 32, 64)

_residual_init = functools.partial(nn.init.xavier_uniform_, gain=math.sqrt(2))
_plain_init = nn.init.xavier_uniform_


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class GBlock(nn.Module):
    """x -> up(x) through a 1x1 conv (it commutes with nearest upsampling, so it runs at
    the low resolution) plus BN-ReLU-up-conv3-BN-ReLU-conv3, the up-conv3 one layer
    (Layers.upsample_conv: the upsampling folded into the kernel in the gankernels
    build); with embed_dim > 0 the batch norms are conditional (called as block(x, e))."""

    def __init__(self, L: Layers, in_ch: int, out_ch: int, embed_dim: int = 0):
        super().__init__()
        self.conditional = embed_dim > 0

        def norm(ch):
            if embed_dim:
                return L.cond_norm_act(ch, embed_dim, "batch", "relu")
            return L.norm_act(ch, "batch", "relu")

        self.norm1 = norm(in_ch)
        self.conv1 = L.upsample_conv(in_ch, out_ch, 3, 1, init=_residual_init)
        self.norm2 = norm(out_ch)
        self.conv2 = L.conv(out_ch, out_ch, 3, 1, 1, init=_residual_init)
        self.shortcut = L.conv(in_ch, out_ch, 1, init=_plain_init)

    def forward(self, x: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        norm = (lambda m, h: m(h, e)) if self.conditional else (lambda m, h: m(h))
        h = self.conv1(norm(self.norm1, x))
        h = self.conv2(norm(self.norm2, h))
        return h + _upsample(self.shortcut(x))


class DBlock(nn.Module):
    """[ReLU]-conv3-ReLU-conv3-[avgpool] plus a shortcut (1x1 conv, then avgpool) where
    the shape changes. The first block of D (first=True) skips the leading ReLU (its
    input is the image) and pools before its shortcut conv, as in the paper. Each
    conv-then-avgpool is one layer (Layers.conv_avgpool: the pooling folded into the
    kernel in the gankernels build)."""

    def __init__(self, L: Layers, in_ch: int, out_ch: int, down: bool, first: bool = False):
        super().__init__()
        self.first = first
        self.act = None if first else L.act("relu")
        self.conv1 = L.conv(in_ch, out_ch, 3, 1, 1, act="relu", sn=True, init=_residual_init)
        conv = L.conv_avgpool if down else L.conv
        self.conv2 = conv(out_ch, out_ch, 3, padding=1, sn=True, init=_residual_init)
        self.shortcut = None
        if first:  # pools the image first: a 1x1 conv commutes with the pooling
            self.shortcut = L.conv(in_ch, out_ch, 1, sn=True, init=_plain_init)
        elif down or in_ch != out_ch:
            self.shortcut = conv(in_ch, out_ch, 1, sn=True, init=_plain_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.act is None else self.act(x)
        h = self.conv2(self.conv1(h))  # pooled by conv2 when down
        if self.first:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        return h + (x if self.shortcut is None else self.shortcut(x))


G_CONDS = ("cbn", "concat")


class Generator(nn.Module):
    """G(z, y=None) -> (B, img_channels, img_size, img_size) in [-1, 1] (tanh). A
    conditional G (num_classes or cond_dim > 0) modulates its blocks' batch norms with an
    embedding of y (g_cond="cbn", the projection-discriminator paper's G) or concatenates
    it to z (g_cond="concat")."""

    def __init__(
        self,
        z_dim: int = 128,
        img_channels: int = 1,
        img_size: int = 28,
        num_classes: int = 0,
        width: int = 64,
        reference: bool = False,
        g_cond: str = "cbn",
        cond_dim: int = 0,
        embed_dim: int = 128,
    ):
        super().__init__()
        if g_cond not in G_CONDS:
            raise ValueError(f"sngan: g_cond must be one of {G_CONDS}, got {g_cond!r}")
        start, doublings = resolution_plan("sngan", img_size, SIZES)
        L = Layers(fused=not reference)
        self.z_dim, self.num_classes, self.cond_dim = z_dim, num_classes, cond_dim
        self.img_channels, self.img_size = img_channels, img_size
        self.start, self.width = start, width
        conditional = bool(num_classes or cond_dim)
        cbn = conditional and g_cond == "cbn"
        self.g_cond = g_cond
        embed_dim = embed_dim if cbn else z_dim
        self.embed = L.condition(num_classes, cond_dim, embed_dim, act="lrelu")
        in_dim = z_dim * (2 if conditional and not cbn else 1)
        self.fc = L.linear(in_dim, width * start * start, init=_plain_init)
        block_embed = embed_dim if cbn else 0
        self.blocks = nn.Sequential(
            *[GBlock(L, width, width, block_embed) for _ in range(doublings)]
        )
        self.norm = L.norm_act(width, "batch", "relu")
        self.to_rgb = L.conv(width, img_channels, 3, 1, 1, act="tanh", init=_plain_init)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, y, z.shape[0])
        e = None if self.embed is None else self.embed(y)
        if e is not None and self.g_cond == "concat":
            z, e = torch.cat([z, e], dim=1), None
        h = self.fc(z).view(z.shape[0], self.width, self.start, self.start)
        return self.to_rgb(self.norm(run_layers(self.blocks, h, e)))


class Discriminator(nn.Module):
    """D(x, y=None) -> (B,) logits, spectral norm on every weight."""

    def __init__(
        self,
        img_channels: int = 1,
        img_size: int = 28,
        num_classes: int = 0,
        width: int = 64,
        reference: bool = False,
        cond_dim: int = 0,
    ):
        super().__init__()
        _, doublings = resolution_plan("sngan", img_size, SIZES)
        L = Layers(fused=not reference)
        self.num_classes, self.img_channels, self.img_size = num_classes, img_channels, img_size
        self.cond_dim = cond_dim
        blocks = [DBlock(L, img_channels, width, down=True, first=True)]
        blocks += [DBlock(L, width, width, down=True) for _ in range(doublings - 1)]
        blocks.append(DBlock(L, width, width, down=False))
        self.blocks = nn.Sequential(*blocks)
        self.act = L.act("relu")
        self.out = L.linear(width, 1, sn=True, init=_plain_init)
        self.embed = L.condition(num_classes, cond_dim, width, sn=True, init=_plain_init)

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
    g_cond: str = "cbn",
    cond_dim: int = 0,
) -> tuple[Generator, Discriminator]:
    """(G, D); width sets both (default 64), g_width / d_width one of them; g_cond "cbn"
    or "concat" chooses how a conditional G takes its condition; cond_dim > 0 (instead of
    num_classes) conditions both on (B, cond_dim) vectors (text or sound embeddings)."""
    width = 64 if width is None else width
    z_dim = 128 if z_dim is None else z_dim
    G = Generator(
        z_dim, img_channels, img_size, num_classes, g_width or width, reference, g_cond, cond_dim
    )
    D = Discriminator(img_channels, img_size, num_classes, d_width or width, reference, cond_dim)
    return G, D
