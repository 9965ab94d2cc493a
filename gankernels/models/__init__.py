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
"""

from __future__ import annotations

from torch import nn

from . import dcgan, layers, sngan, stylegan2

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
    mapping_layers, mbstd_group_size."""
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


__all__ = ["MODELS", "SIZES", "build_models", "dcgan", "sngan", "stylegan2", "layers"]
