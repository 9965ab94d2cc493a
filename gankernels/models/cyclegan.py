"""CycleGAN (Zhu et al. 2017): two ResNet generators (A -> B and B -> A) and two PatchGAN
discriminators (one per domain) for unpaired image-to-image translation.

    G, D = build(in_channels=3, out_channels=3, img_size=64)
    b_hat = G(a, "a2b")               # G.a2b(a); (B, 3, 64, 64) in [-1, 1]
    a_rec = G(b_hat, "b2a")           # G.b2a(b_hat): the cycle
    logits = D(b_hat, "b")            # D.b(b_hat): (B, 1, 30, 30), domain B's patches

Sizes: 32, 64, 128 and 256.

ResNet generator (the paper's, after Johnson et al.): c7s1-w (7x7 conv on a reflection-
padded input, instance norm, ReLU), d2w and d4w (3x3 stride-2 convs, instance norm, ReLU),
`n_blocks` residual blocks at 4w channels (reflection pad, 3x3 conv, instance norm, ReLU,
reflection pad, 3x3 conv, instance norm, plus the input), u2w and uw (3x3 stride-2
transposed convs, instance norm, ReLU) and c7s1-out with tanh. n_blocks defaults to the
paper's 6 up to 128 px and 9 above. Weights N(0, 0.02). g_upsample="nearest" replaces each
transposed conv by nearest 2x upsampling and a 3x3 conv (Odena et al. 2016: no
checkerboard pattern from the uneven overlap of a stride-2 kernel); the gankernels build
folds the upsampling into the kernel (ops.upsample_conv2d).

Norm: instance norm, affine, as the paper and its reference implementation use (the
style of one image must not depend on the others in its batch). The reference
implementation's instance norm has no affine parameters and its convolutions a bias
instead; a bias before a norm is cancelled by it, so ours drop that bias and let the
norm's affine shift and scale do the work. The norm and the ReLU run as one fused pass.

The discriminators are unconditional `PatchDiscriminator`s (pix2pix.py, instance norm by
default; receptive fields listed there: 70x70 at 256 px).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from .layers import Layers, init_dcgan_
from .pix2pix import SIZES, PatchDiscriminator, check_image

DIRECTIONS = ("a2b", "b2a")
DOMAINS = ("a", "b")
G_NORMS = ("instance", "batch")
G_UPSAMPLES = ("transpose", "nearest")


def default_blocks(img_size: int) -> int:
    """The paper's residual block count: 6 up to 128 px, 9 above."""
    return 6 if img_size <= 128 else 9


class ResnetBlock(nn.Module):
    """x + IN(conv3(reflect(ReLU(IN(conv3(reflect(x)))))))."""

    def __init__(self, L: Layers, ch: int, norm: str):
        super().__init__()
        self.conv1 = L.conv_reflect(ch, ch, 3, bias=False)
        self.norm1 = L.norm_act(ch, norm, "relu")
        self.conv2 = L.conv_reflect(ch, ch, 3, bias=False)
        self.norm2 = L.norm_act(ch, norm, "linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm2(self.conv2(self.norm1(self.conv1(x))))


class ResnetGenerator(nn.Module):
    """G(x) -> (B, out_channels, img_size, img_size) in [-1, 1]; see the module doc."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        img_size: int = 256,
        width: int = 64,
        n_blocks: int | None = None,
        norm: str = "instance",
        reference: bool = False,
        upsample: str = "transpose",
    ):
        super().__init__()
        if img_size not in SIZES:
            raise ValueError(
                f"cyclegan: img_size {img_size!r} is not supported; choose one of {SIZES}"
            )
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("width", width),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"cyclegan: {name} must be a positive int, got {value!r}")
        n_blocks = default_blocks(img_size) if n_blocks is None else n_blocks
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 0:
            raise ValueError(f"cyclegan: n_blocks must be an int >= 0, got {n_blocks!r}")
        if norm not in G_NORMS:
            raise ValueError(f"cyclegan: g_norm must be 'instance' or 'batch', got {norm!r}")
        if upsample not in G_UPSAMPLES:
            raise ValueError(f"cyclegan: g_upsample must be one of {G_UPSAMPLES}, got {upsample!r}")
        L = Layers(fused=not reference)
        self.in_channels, self.out_channels, self.img_size = in_channels, out_channels, img_size
        self.n_blocks = n_blocks
        w = width
        self.stem = nn.Sequential(
            L.conv_reflect(in_channels, w, 7, bias=False), L.norm_act(w, norm, "relu")
        )
        self.down = nn.Sequential(
            L.conv(w, 2 * w, 3, 2, 1, bias=False),
            L.norm_act(2 * w, norm, "relu"),
            L.conv(2 * w, 4 * w, 3, 2, 1, bias=False),
            L.norm_act(4 * w, norm, "relu"),
        )
        self.blocks = nn.Sequential(*[ResnetBlock(L, 4 * w, norm) for _ in range(n_blocks)])
        if upsample == "transpose":
            up = functools.partial(L.upconv, kernel_size=3, bias=False)
        else:
            up = functools.partial(L.upsample_conv, kernel_size=3, padding=1, bias=False)
        self.up = nn.Sequential(
            up(4 * w, 2 * w),
            L.norm_act(2 * w, norm, "relu"),
            up(2 * w, w),
            L.norm_act(w, norm, "relu"),
        )
        self.out = L.conv_reflect(w, out_channels, 7, act="tanh")
        init_dcgan_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image(self, x, self.in_channels, "the input x")
        return self.out(self.up(self.blocks(self.down(self.stem(x)))))


def _check_choice(model: nn.Module, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{type(model).__name__}: {name} must be one of {choices}, got {value!r}")


class CycleGenerator(nn.Module):
    """The two generators: `a2b` (in_channels -> out_channels) and `b2a` (back);
    forward(x, direction="a2b") runs one of them."""

    def __init__(self, a2b: ResnetGenerator, b2a: ResnetGenerator):
        super().__init__()
        self.a2b, self.b2a = a2b, b2a
        self.in_channels, self.out_channels = a2b.in_channels, a2b.out_channels
        self.img_size = a2b.img_size

    def forward(self, x: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        _check_choice(self, "direction", direction, DIRECTIONS)
        return self.a2b(x) if direction == "a2b" else self.b2a(x)


class CycleDiscriminator(nn.Module):
    """The two discriminators: `a` judges domain A images, `b` domain B images;
    forward(x, domain) runs one of them."""

    def __init__(self, a: PatchDiscriminator, b: PatchDiscriminator):
        super().__init__()
        self.a, self.b = a, b
        self.in_channels, self.out_channels = a.img_channels, b.img_channels
        self.img_size = a.img_size

    def forward(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        _check_choice(self, "domain", domain, DOMAINS)
        return self.a(x) if domain == "a" else self.b(x)


def build(
    *,
    in_channels: int,
    out_channels: int,
    img_size: int,
    width: int | None = None,
    reference: bool = False,
    g_width: int | None = None,
    d_width: int | None = None,
    n_blocks: int | None = None,
    g_norm: str = "instance",
    d_norm: str | None = "instance",
    d_layers: int | None = None,
    g_upsample: str = "transpose",
) -> tuple[CycleGenerator, CycleDiscriminator]:
    """(G, D) with G.a2b, G.b2a, D.a, D.b. width sets both (default 64, the paper's),
    g_width / d_width one of them; n_blocks the residual blocks of each generator;
    d_layers the PatchGANs' stride-2 layer count; g_upsample "transpose" (the paper's
    transposed convs) or "nearest" (upsampling, then a conv)."""
    width = 64 if width is None else width
    gw, dw = g_width or width, d_width or width

    def generator(cin, cout):
        return ResnetGenerator(cin, cout, img_size, gw, n_blocks, g_norm, reference, g_upsample)

    def discriminator(channels):
        return PatchDiscriminator(channels, 0, img_size, dw, d_norm, d_layers, reference)

    G = CycleGenerator(generator(in_channels, out_channels), generator(out_channels, in_channels))
    D = CycleDiscriminator(discriminator(in_channels), discriminator(out_channels))
    return G, D
