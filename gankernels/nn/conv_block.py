"""ConvBlock: the convolution + normalisation + activation block of DCGAN, pix2pix,
CycleGAN and SNGAN, built from the fused modules."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..ops.bias_act import ACTIVATIONS
from .bias_act import BiasAct
from .spectral_norm import spectral_norm

NORMS = (None, "batch", "instance")


class EqualizedWeight(nn.Module):
    """Equalised learning rate (ProGAN/StyleGAN): the weight is stored N(0, 1) and scaled
    by 1/sqrt(fan_in) when used, so that Adam's step is the same size for every layer."""

    def __init__(self, fan_in: int):
        super().__init__()
        self.scale = 1.0 / math.sqrt(fan_in)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale:.6g}"


class ConvBlock(nn.Module):
    """conv (or transposed conv) -> [batch or instance norm] -> activation.

    Without a norm the convolution runs without bias and BiasAct adds the bias, activates
    and applies the gain in one pass; with a norm (which would cancel a bias) the
    convolution has no bias and NormAct normalises and activates in one pass. sn=True
    spectrally normalises the weight (SNGAN); equalized_lr=True stores it N(0, 1) and
    scales it by 1/sqrt(fan_in) at run time (ProGAN/StyleGAN), and then the activation
    keeps its usual gain (sqrt(2) for lrelu); otherwise the gain is 1, as with torch's
    activation modules. alpha defaults to the activation's own (lrelu: 0.2).

    state_dict keys: conv.weight (conv.parametrizations.weight.* with sn or equalized_lr),
    then act.bias without a norm, or norm.weight/bias/running_* with one.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int = 0,
        transpose: bool = False,
        norm: str | None = None,
        act: str = "lrelu",
        sn: bool = False,
        equalized_lr: bool = False,
        alpha: float | None = None,
    ):
        super().__init__()
        for name, value in (("in_ch", in_ch), ("out_ch", out_ch)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ConvBlock: {name} must be an int >= 1, got {value!r}")
        if norm not in NORMS:
            raise ValueError(f"ConvBlock: norm must be one of {NORMS}, got {norm!r}")
        if act not in ACTIVATIONS:
            raise ValueError(f"ConvBlock: unknown act {act!r}; expected one of {list(ACTIVATIONS)}")
        if sn and equalized_lr:
            raise ValueError(
                "ConvBlock: sn=True and equalized_lr=True together: spectral norm divides the "
                "weight by its largest singular value, which undoes any fixed scale; choose one"
            )
        conv_type = nn.ConvTranspose2d if transpose else nn.Conv2d
        self.conv = conv_type(in_ch, out_ch, kernel_size, stride, padding, bias=False)
        if equalized_lr:
            nn.init.normal_(self.conv.weight)
            fan_in = in_ch * math.prod(self.conv.kernel_size)  # also for transposed convs
            parametrize.register_parametrization(self.conv, "weight", EqualizedWeight(fan_in))
        if sn:
            spectral_norm(self.conv)
        gain = None if equalized_lr else 1.0
        if norm is None:
            self.norm = None
            self.act = BiasAct(out_ch, act, alpha=alpha, gain=gain)
        else:
            from .norm_act import NormAct

            if equalized_lr:
                raise ValueError(
                    "ConvBlock: equalized_lr=True with a norm: the norm removes the weight's "
                    "scale, so equalisation has no effect; use norm=None"
                )
            if alpha is None:
                alpha = ACTIVATIONS[act].alpha
            self.norm = NormAct(
                out_ch, kind=norm, act=act, **({} if alpha is None else {"alpha": alpha})
            )
            self.act = None
        self.transpose, self.sn, self.equalized_lr = transpose, sn, equalized_lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.act(y) if self.norm is None else self.norm(y)
