"""pix2pix (Isola et al. 2017): a U-Net generator and a conditional PatchGAN
discriminator for paired image-to-image translation.

    G, D = build(in_channels=1, out_channels=1, img_size=32)
    b_hat = G(a)                      # (B, 1, 32, 32) in [-1, 1]
    logits = D(b_hat, a)              # (B, 1, 14, 14): one logit per patch

Sizes: 32, 64, 128 and 256.

U-Net: the encoder halves the resolution with 4x4 stride-2 convolutions down to 1x1
(5 layers at 32 px, 8 at 256 px, the paper's depth), widths `width * 1, 2, 4, 8, 8, ...`;
the decoder doubles it back with 4x4 stride-2 transposed convolutions, and every decoder
layer after the first also sees the encoder's activation of the same resolution (the
skip connections). Encoder layers are conv-norm-LeakyReLU(0.2) (no norm on the first, as
in the paper, and none on the 1x1 bottleneck, which is conv-ReLU: a norm over one pixel
would zero it); decoder layers are convT-norm-ReLU, with dropout (p=0.5) on those at 8x8
and below (at 256 px the paper's first three), the paper's only noise source: it is
active in train mode, so keep G in train mode to sample varied outputs; the last layer
is convT-tanh. Weights N(0, 0.02), as in the paper.

PatchGAN: C64 (stride 2, no norm) - C128 - C256 ... (stride 2) - one stride-1 conv -
a stride-1 conv to one logit per patch, all 4x4 with LeakyReLU(0.2). Each logit sees a
square of the input, the receptive field, set by the number of stride-2 layers
(`d_layers`): at 256 px the paper's 70x70 (3 layers, 30x30 logits), scaled down to about
a quarter of the image side below: 34x34 at 128 px (2 layers, 30x30 logits), 16x16 at
64 px (1 layer, 30x30 logits) and 16x16 at 32 px (1 layer, 14x14 logits: a 7x7 field
with no downsampling at all would see only texture). The conditional D judges
concat(condition, image); with cond_channels=0 it is unconditional (CycleGAN's D).

Norms: `g_norm` and `d_norm` default to "instance". The paper uses batch norm with batch
size 1 and keeps batch statistics at test time: per-image statistics, which is what
instance norm computes at any batch size and in eval mode too. Batch norm with batch > 1
couples the samples of a batch, which a gradient penalty (R1, WGAN-GP) must not see, and
its eval-mode running statistics change the outputs. "batch" gives the paper's layers
(use it with batch size 1), None plain conv + bias + activation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import Layers, init_dcgan_

SIZES = (32, 64, 128, 256)
NORMS = (None, "batch", "instance")
# Stride-2 layers of the PatchGAN per image size (receptive field in the module doc).
D_LAYERS = {32: 1, 64: 1, 128: 2, 256: 3}
# Decoder layers at this resolution and below get dropout.
DROPOUT_MAX_RES = 8


def _check_size(model: str, img_size) -> None:
    if img_size not in SIZES:
        raise ValueError(f"{model}: img_size {img_size!r} is not supported; choose one of {SIZES}")


def _check_channels(model: str, **channels) -> None:
    for name, value in channels.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{model}: {name} must be a positive int, got {value!r}")


def _check_norm(model: str, name: str, norm) -> None:
    if norm not in NORMS:
        raise ValueError(f"{model}: {name} must be one of {NORMS}, got {norm!r}")


def check_image(model: nn.Module, x: torch.Tensor, channels: int, what: str) -> None:
    """x must be (B, channels, img_size, img_size) floats."""
    size = model.img_size
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1:] != (channels, size, size):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"{type(model).__name__}: {what} must be (B, {channels}, {size}, {size}), got {got}"
        )


def conv_norm_act(L: Layers, in_ch, out_ch, norm, act, *args, transpose=False) -> list[nn.Module]:
    """A 4x4 (transposed) convolution, then norm + act in one fused pass; without a norm
    the convolution's bias and the activation are fused instead."""
    conv = L.conv_transpose if transpose else L.conv
    if norm is None:
        return [conv(in_ch, out_ch, *args, act=act, alpha=0.2 if act == "lrelu" else None)]
    return [conv(in_ch, out_ch, *args, bias=False), L.norm_act(out_ch, norm, act, 0.2)]


class UNetGenerator(nn.Module):
    """G(a) -> (B, out_channels, img_size, img_size) in [-1, 1]; see the module doc."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        img_size: int = 256,
        width: int = 64,
        norm: str | None = "instance",
        dropout: float = 0.5,
        reference: bool = False,
    ):
        super().__init__()
        _check_size("pix2pix", img_size)
        _check_channels("pix2pix", in_channels=in_channels, out_channels=out_channels, width=width)
        _check_norm("pix2pix", "g_norm", norm)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"pix2pix: dropout must be in [0, 1), got {dropout!r}")
        L = Layers(fused=not reference)
        self.in_channels, self.out_channels, self.img_size = in_channels, out_channels, img_size
        depth = int(math.log2(img_size))
        widths = [width * min(2**i, 8) for i in range(depth)]
        self.depth = depth

        down = [nn.Sequential(L.conv(in_channels, widths[0], 4, 2, 1, act="lrelu", alpha=0.2))]
        for i in range(1, depth - 1):
            layers = conv_norm_act(L, widths[i - 1], widths[i], norm, "lrelu", 4, 2, 1)
            down.append(nn.Sequential(*layers))
        down.append(nn.Sequential(L.conv(widths[-2], widths[-1], 4, 2, 1, act="relu")))
        self.down = nn.ModuleList(down)

        # Decoder layer j outputs the resolution of encoder layer depth-2-j and its width.
        up = []
        for j in range(depth - 1):
            out_ch = widths[depth - 2 - j]
            in_ch = widths[-1] if j == 0 else widths[depth - 1 - j] * 2
            res = img_size >> (depth - 1 - j)
            layers = conv_norm_act(L, in_ch, out_ch, norm, "relu", 4, 2, 1, transpose=True)
            if dropout > 0 and res <= DROPOUT_MAX_RES:
                layers.append(L.dropout(dropout))
            up.append(nn.Sequential(*layers))
        self.up = nn.ModuleList(up)
        self.out = L.conv_transpose(widths[0] * 2, out_channels, 4, 2, 1, act="tanh")
        init_dcgan_(self)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        check_image(self, a, self.in_channels, "the input a")
        skips = []
        h = a
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        h = skips.pop()  # the bottleneck has no skip of its own
        for j, layer in enumerate(self.up):
            if j:
                h = torch.cat([h, skips.pop()], dim=1)
            h = layer(h)
        return self.out(torch.cat([h, skips.pop()], dim=1))


def patch_receptive_field(n_layers: int) -> int:
    """Side of the input square each PatchGAN logit sees, with `n_layers` stride-2 4x4
    convolutions followed by two stride-1 4x4 convolutions (70 for 3 layers)."""
    # Walk back from one output pixel: a k x k conv of stride s turns a field of f pixels
    # into (f - 1) * s + k.
    field = 1
    for stride in [1, 1] + [2] * n_layers:
        field = (field - 1) * stride + 4
    return field


class PatchDiscriminator(nn.Module):
    """D(x, cond=None) -> (B, 1, h, w) logits, one per overlapping patch of x (concatenated
    with cond when cond_channels > 0); see the module doc for the receptive fields."""

    def __init__(
        self,
        img_channels: int = 3,
        cond_channels: int = 0,
        img_size: int = 256,
        width: int = 64,
        norm: str | None = "instance",
        n_layers: int | None = None,
        reference: bool = False,
    ):
        super().__init__()
        _check_size("PatchDiscriminator", img_size)
        _check_channels("PatchDiscriminator", img_channels=img_channels, width=width)
        if (
            isinstance(cond_channels, bool)
            or not isinstance(cond_channels, int)
            or cond_channels < 0
        ):
            raise ValueError(
                f"PatchDiscriminator: cond_channels must be an int >= 0, got {cond_channels!r}"
            )
        _check_norm("PatchDiscriminator", "d_norm", norm)
        n_layers = D_LAYERS[img_size] if n_layers is None else n_layers
        max_layers = int(math.log2(img_size)) - 3  # keeps at least 2x2 logits
        if (
            isinstance(n_layers, bool)
            or not isinstance(n_layers, int)
            or not 1 <= n_layers <= max_layers
        ):
            raise ValueError(
                f"PatchDiscriminator: n_layers must be an int in [1, {max_layers}] at "
                f"{img_size} px, got {n_layers!r}"
            )
        L = Layers(fused=not reference)
        self.img_channels, self.cond_channels, self.img_size = img_channels, cond_channels, img_size
        self.n_layers = n_layers
        self.receptive_field = patch_receptive_field(n_layers)
        ch = width
        layers = [L.conv(img_channels + cond_channels, ch, 4, 2, 1, act="lrelu", alpha=0.2)]
        for i in range(1, n_layers + 1):
            out_ch = width * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += conv_norm_act(L, ch, out_ch, norm, "lrelu", 4, stride, 1)
            ch = out_ch
        self.features = nn.Sequential(*layers)
        self.out = L.conv(ch, 1, 4, 1, 1)
        init_dcgan_(self)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        check_image(self, x, self.img_channels, "the image x")
        if self.cond_channels == 0:
            if cond is not None:
                raise ValueError(
                    "PatchDiscriminator: a condition given to an unconditional D (cond_channels=0)"
                )
        else:
            if cond is None:
                raise ValueError(
                    f"PatchDiscriminator: a conditional D (cond_channels={self.cond_channels}) "
                    "needs cond"
                )
            check_image(self, cond, self.cond_channels, "the condition cond")
            if cond.shape[0] != x.shape[0]:
                raise ValueError(
                    f"PatchDiscriminator: cond has {cond.shape[0]} samples, x has {x.shape[0]}"
                )
            x = torch.cat([cond, x], dim=1)
        return self.out(self.features(x))


def build(
    *,
    in_channels: int,
    out_channels: int,
    img_size: int,
    width: int | None = None,
    reference: bool = False,
    g_width: int | None = None,
    d_width: int | None = None,
    g_norm: str | None = "instance",
    d_norm: str | None = "instance",
    dropout: float = 0.5,
    d_layers: int | None = None,
) -> tuple[UNetGenerator, PatchDiscriminator]:
    """(G, D): G(a) -> b_hat, D(b, a) -> patch logits. width sets both (default 64, the
    paper's), g_width / d_width one of them; d_layers overrides the PatchGAN's stride-2
    layer count (its receptive field)."""
    width = 64 if width is None else width
    G = UNetGenerator(
        in_channels, out_channels, img_size, g_width or width, g_norm, dropout, reference
    )
    D = PatchDiscriminator(
        out_channels, in_channels, img_size, d_width or width, d_norm, d_layers, reference
    )
    # The translation's two sides, on both networks.
    D.in_channels, D.out_channels = in_channels, out_channels
    return G, D
