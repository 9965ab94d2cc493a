"""DCGAN (Radford et al. 2016): transposed convolutions with batch norm and ReLU in G,
strided convolutions with LeakyReLU(0.2) in D, weights N(0, 0.02).

Sizes: 28 (7 -> 14 -> 28, MNIST), 32 (4 -> ... -> 32) and 64 (the paper's 4 -> ... -> 64).
G's widest layer has width * 2^(doublings - 1) channels, halving at each doubling; D
mirrors it. D has no norm by default (d_norm=None): batch norm couples the samples of a
batch, which a gradient penalty (WGAN-GP, R1) must not see, and the paper's D without it
trains well at these sizes; d_norm="batch" gives the paper's D, "instance" a per-sample
norm that a penalised critic accepts. d_sn=True puts spectral norm on every layer of D
(the "standard CNN" of the SNGAN paper).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Layers, check_labels, init_dcgan_, resolution_plan

SIZES = (28, 32, 64)
D_NORMS = (None, "batch", "instance")


class Generator(nn.Module):
    """G(z, y=None) -> (B, img_channels, img_size, img_size) in [-1, 1] (tanh). A
    conditional G concatenates a learned z_dim-sized embedding of y to z. g_norm="batch"
    is the paper's; None (bias + ReLU) keeps every sample independent of the others."""

    def __init__(
        self,
        z_dim: int = 100,
        img_channels: int = 1,
        img_size: int = 28,
        num_classes: int = 0,
        width: int = 64,
        reference: bool = False,
        g_norm: str | None = "batch",
    ):
        super().__init__()
        if g_norm not in D_NORMS:
            raise ValueError(f"dcgan: g_norm must be one of {D_NORMS}, got {g_norm!r}")
        start, doublings = resolution_plan("dcgan", img_size, SIZES)
        L = Layers(fused=not reference)

        def up(in_ch, out_ch, *args):
            if g_norm is None:
                return [L.conv_transpose(in_ch, out_ch, *args, act="relu")]
            conv = L.conv_transpose(in_ch, out_ch, *args, bias=False)
            return [conv, L.norm_act(out_ch, g_norm, "relu")]

        self.z_dim, self.num_classes = z_dim, num_classes
        self.img_channels, self.img_size = img_channels, img_size
        self.embed = L.embedding(num_classes, z_dim) if num_classes else None
        ch = width * 2 ** (doublings - 1)
        in_dim = z_dim * (2 if num_classes else 1)
        layers = up(in_dim, ch, start)
        for _ in range(doublings - 1):
            layers += up(ch, ch // 2, 4, 2, 1)
            ch //= 2
        layers.append(L.conv_transpose(ch, img_channels, 4, 2, 1, act="tanh"))
        self.net = nn.Sequential(*layers)
        init_dcgan_(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, y, z.shape[0])
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], dim=1)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """D(x, y=None) -> (B,) logits. The last convolution covers the whole final feature
    map (a linear layer on it); a conditional D adds the projection term
    <embed(y), sum over space of the features> (Miyato & Koyama 2018)."""

    def __init__(
        self,
        img_channels: int = 1,
        img_size: int = 28,
        num_classes: int = 0,
        width: int = 64,
        d_norm: str | None = None,
        reference: bool = False,
        d_sn: bool = False,
    ):
        super().__init__()
        if d_norm not in D_NORMS:
            raise ValueError(f"dcgan: d_norm must be one of {D_NORMS}, got {d_norm!r}")
        start, doublings = resolution_plan("dcgan", img_size, SIZES)
        L = Layers(fused=not reference)
        self.num_classes, self.img_channels, self.img_size = num_classes, img_channels, img_size
        ch = width
        # Small, like the other weights, so that the projection does not swamp the logit;
        # spectrally normalised weights are initialised before the wrapping.
        small = lambda w: nn.init.normal_(w, 0.0, 0.02)  # noqa: E731
        sn = dict(sn=True, init=small) if d_sn else {}
        # No norm on the first layer, as in the paper.
        layers = [L.conv(img_channels, ch, 4, 2, 1, act="lrelu", alpha=0.2, **sn)]
        for _ in range(doublings - 1):
            if d_norm is None:
                layers.append(L.conv(ch, ch * 2, 4, 2, 1, act="lrelu", alpha=0.2, **sn))
            else:
                layers += [
                    L.conv(ch, ch * 2, 4, 2, 1, bias=False, **sn),
                    L.norm_act(ch * 2, d_norm, "lrelu", 0.2),
                ]
            ch *= 2
        self.features = nn.Sequential(*layers)
        self.out = L.conv(ch, 1, start, **sn)
        self.embed = L.embedding(num_classes, ch, sn=d_sn, init=small) if num_classes else None
        init_dcgan_(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, y, x.shape[0])
        h = self.features(x)
        logits = self.out(h).flatten()
        if self.embed is not None:
            logits = logits + (self.embed(y) * h.sum(dim=(2, 3))).sum(dim=1)
        return logits


def build(
    *,
    img_channels: int = 1,
    img_size: int = 28,
    z_dim: int | None = None,
    num_classes: int = 0,
    width: int | None = None,
    reference: bool = False,
    d_norm: str | None = None,
    d_sn: bool = False,
    g_norm: str | None = "batch",
    g_width: int | None = None,
    d_width: int | None = None,
) -> tuple[Generator, Discriminator]:
    """(G, D); width sets both (default 64), g_width / d_width one of them."""
    width = 64 if width is None else width
    G = Generator(
        100 if z_dim is None else z_dim,
        img_channels,
        img_size,
        num_classes,
        g_width or width,
        reference,
        g_norm,
    )
    D = Discriminator(
        img_channels, img_size, num_classes, d_width or width, d_norm, reference, d_sn
    )
    return G, D
