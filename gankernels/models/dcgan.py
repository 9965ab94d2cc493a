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

from .layers import Layers, check_labels, init_dcgan_, resolution_plan, run_layers

SIZES = (28, 32, 64)
D_NORMS = (None, "batch", "instance")


G_CONDS = ("cbn", "concat")


class Generator(nn.Module):
    """G(z, y=None) -> (B, img_channels, img_size, img_size) in [-1, 1] (tanh). g_norm
    "batch" is the paper's; None (bias + ReLU) keeps every sample independent of the others.

    A conditional G embeds y (a learned vector per class when num_classes > 0; a linear map
    of a condition vector when cond_dim > 0) and, with g_cond="cbn" (the default),
    modulates every norm layer with it (conditional batch norm: a gain and shift per class
    or per condition), so that z alone feeds the first layer; with
    g_cond="concat" it concatenates the embedding to z instead, the classic cGAN input,
    with which G learns to ignore z on MNIST (one image per class: see docs/training)."""

    def __init__(
        self,
        z_dim: int = 100,
        img_channels: int = 1,
        img_size: int = 28,
        num_classes: int = 0,
        width: int = 64,
        reference: bool = False,
        g_norm: str | None = "batch",
        g_cond: str | None = None,
        cond_dim: int = 0,
        embed_dim: int = 128,
    ):
        super().__init__()
        if g_norm not in D_NORMS:
            raise ValueError(f"dcgan: g_norm must be one of {D_NORMS}, got {g_norm!r}")
        g_cond = g_cond or ("cbn" if g_norm else "concat")
        if g_cond not in G_CONDS:
            raise ValueError(f"dcgan: g_cond must be one of {G_CONDS}, got {g_cond!r}")
        conditional = bool(num_classes or cond_dim)
        if g_cond == "cbn" and g_norm is None and conditional:
            raise ValueError("dcgan: g_cond='cbn' modulates G's norm layers; g_norm=None has none")
        start, doublings = resolution_plan("dcgan", img_size, SIZES)
        L = Layers(fused=not reference)
        cbn = conditional and g_cond == "cbn"

        def up(in_ch, out_ch, *args):
            if g_norm is None:
                return [L.conv_transpose(in_ch, out_ch, *args, act="relu")]
            conv = L.conv_transpose(in_ch, out_ch, *args, bias=False)
            if cbn:
                return [conv, L.cond_norm_act(out_ch, embed_dim, g_norm, "relu")]
            return [conv, L.norm_act(out_ch, g_norm, "relu")]

        self.z_dim, self.num_classes, self.cond_dim = z_dim, num_classes, cond_dim
        self.g_cond = g_cond
        self.img_channels, self.img_size = img_channels, img_size
        embed_dim = embed_dim if cbn else z_dim
        self.embed = L.condition(num_classes, cond_dim, embed_dim, act="lrelu")
        ch = width * 2 ** (doublings - 1)
        in_dim = z_dim * (2 if conditional and not cbn else 1)
        layers = up(in_dim, ch, start)
        for _ in range(doublings - 1):
            layers += up(ch, ch // 2, 4, 2, 1)
            ch //= 2
        layers.append(L.conv_transpose(ch, img_channels, 4, 2, 1, act="tanh"))
        self.net = nn.Sequential(*layers)
        init_dcgan_(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, y, z.shape[0])
        e = None if self.embed is None else self.embed(y)
        if e is not None and self.g_cond == "concat":
            z, e = torch.cat([z, e], dim=1), None
        return run_layers(self.net, z[:, :, None, None], e)


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
        cond_dim: int = 0,
    ):
        super().__init__()
        if d_norm not in D_NORMS:
            raise ValueError(f"dcgan: d_norm must be one of {D_NORMS}, got {d_norm!r}")
        start, doublings = resolution_plan("dcgan", img_size, SIZES)
        L = Layers(fused=not reference)
        self.num_classes, self.img_channels, self.img_size = num_classes, img_channels, img_size
        self.cond_dim = cond_dim
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
        self.embed = L.condition(num_classes, cond_dim, ch, sn=d_sn, init=small)
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
    g_cond: str | None = None,
    g_width: int | None = None,
    d_width: int | None = None,
    cond_dim: int = 0,
) -> tuple[Generator, Discriminator]:
    """(G, D); width sets both (default 64), g_width / d_width one of them; g_cond "cbn"
    or "concat" chooses how a conditional G takes its label; cond_dim > 0 (instead of
    num_classes) conditions both on (B, cond_dim) vectors (text or sound embeddings)."""
    width = 64 if width is None else width
    G = Generator(
        100 if z_dim is None else z_dim,
        img_channels,
        img_size,
        num_classes,
        g_width or width,
        reference,
        g_norm,
        g_cond,
        cond_dim,
    )
    D = Discriminator(
        img_channels, img_size, num_classes, d_width or width, d_norm, reference, d_sn, cond_dim
    )
    return G, D
