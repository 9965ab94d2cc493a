"""GAN architectures: DCGAN, SNGAN (ResNet, spectral norm) and a small StyleGAN2, each
unconditional or class-conditional, each in a fused build (gankernels' kernels) and a
reference build (the same architecture in plain torch, same state_dict keys).

    G, D = gk.models.build_models("sngan", img_channels=3, img_size=32, num_classes=10)
    images = G(torch.randn(8, G.z_dim), y)      # (8, 3, 32, 32)
    logits = D(images, y)                       # (8,)
    gk.regularizers.batch_coupled_modules(D)    # layers that mix samples (BN, mbstd)

Every G has z_dim, num_classes (0 = unconditional), img_channels and img_size. Run a
reference build under `gk.use_backend("reference")` so that the gankernels modules it
keeps (StyleGAN2's modulated conv, FIR resampling, minibatch stddev) run as plain torch.

Image-to-image translation (pix2pix, CycleGAN) maps an image of domain A to domain B:

    G, D = gk.models.build_translation_models("pix2pix", in_channels=1, out_channels=3,
                                              img_size=64)
    b_hat = G(a); logits = D(b_hat, a)          # (B, 1, h, w): one logit per patch
    G, D = gk.models.build_translation_models("cyclegan", in_channels=3, out_channels=3,
                                              img_size=64)
    b_hat = G(a, "a2b"); a_rec = G(b_hat, "b2a"); logits = D(b_hat, "b")

Their G and D have in_channels (domain A), out_channels (domain B) and img_size.
"""

from __future__ import annotations

from torch import nn

from . import cyclegan, dcgan, layers, pix2pix, sngan, stylegan2

MODELS = ("dcgan", "sngan", "stylegan2")
_MODULES = {"dcgan": dcgan, "sngan": sngan, "stylegan2": stylegan2}
SIZES = {name: module.SIZES for name, module in _MODULES.items()}


def build_models(
    name: str,
    *,
    img_channels: int = 1,
    img_size: int = 28,
    z_dim: int | None = None,
    num_classes: int = 0,
    width: int | None = None,
    reference: bool = False,
    **kwargs,
) -> tuple[nn.Module, nn.Module]:
    """(G, D) of architecture `name`. z_dim and width default to each model's own;
    reference=True builds the plain-torch version. Model-specific options go in kwargs:
    dcgan d_norm / g_norm (None, "batch", "instance"), g_width / d_width (all), stylegan2 w_dim,
    mapping_layers, mbstd_group_size, g_output ("tanh" or "linear")."""
    if name not in _MODULES:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    for field, value in (("img_channels", img_channels), ("num_classes", num_classes)):
        if not isinstance(value, int) or value < (1 if field == "img_channels" else 0):
            raise ValueError(f"build_models: bad {field} {value!r}")
    if img_size not in SIZES[name]:
        raise ValueError(
            f"{name}: img_size {img_size!r} is not supported; choose one of {SIZES[name]}"
        )
    return _MODULES[name].build(
        img_channels=img_channels,
        img_size=img_size,
        z_dim=z_dim,
        num_classes=num_classes,
        width=width,
        reference=reference,
        **kwargs,
    )


TRANSLATION_MODELS = ("pix2pix", "cyclegan")
_TRANSLATION_MODULES = {"pix2pix": pix2pix, "cyclegan": cyclegan}
TRANSLATION_SIZES = {name: module.SIZES for name, module in _TRANSLATION_MODULES.items()}


def build_translation_models(
    name: str,
    *,
    in_channels: int,
    out_channels: int,
    img_size: int,
    width: int | None = None,
    reference: bool = False,
    **options,
) -> tuple[nn.Module, nn.Module]:
    """(G, D) of the translation model `name` from domain A (in_channels) to domain B
    (out_channels). width defaults to 64 (the papers'); reference=True builds the
    plain-torch version. Options: g_width, d_width, g_norm, d_norm (None, "batch",
    "instance"), d_layers (the PatchGAN's stride-2 layers); pix2pix dropout; cyclegan
    n_blocks."""
    if name not in _TRANSLATION_MODULES:
        raise ValueError(
            f"unknown translation model {name!r}; expected one of {TRANSLATION_MODELS}"
        )
    for field, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"build_translation_models: {field} must be a positive int (1 grey, 3 RGB), "
                f"got {value!r}"
            )
    sizes = TRANSLATION_SIZES[name]
    if img_size not in sizes:
        raise ValueError(f"{name}: img_size {img_size!r} is not supported; choose one of {sizes}")
    return _TRANSLATION_MODULES[name].build(
        in_channels=in_channels,
        out_channels=out_channels,
        img_size=img_size,
        width=width,
        reference=reference,
        **options,
    )


__all__ = [
    "MODELS",
    "SIZES",
    "TRANSLATION_MODELS",
    "TRANSLATION_SIZES",
    "build_models",
    "build_translation_models",
    "cyclegan",
    "dcgan",
    "layers",
    "pix2pix",
    "sngan",
    "stylegan2",
]
