"""Modules around `gk.ops.bias_act`: a learnable per-channel bias, then the activation,
gain and clamp, in one pass."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.bias_act import ACTIVATIONS, bias_act


class BiasAct(nn.Module):
    """y = clamp(gain * act(x + bias), -clamp, clamp), bias along `dim` (zeros at first)."""

    def __init__(
        self,
        channels: int,
        act: str = "linear",
        alpha: float | None = None,
        gain: float | None = None,
        clamp: float | None = None,
        bias: bool = True,
        dim: int = 1,
    ):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"BiasAct: unknown act {act!r}; expected one of {list(ACTIVATIONS)}")
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"BiasAct: channels must be an int >= 1, got {channels!r}")
        self.channels, self.act, self.alpha, self.gain = channels, act, alpha, gain
        self.clamp, self.dim = clamp, dim
        self.register_parameter("bias", nn.Parameter(torch.zeros(channels)) if bias else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x, self.bias, self.dim, self.act, self.alpha, self.gain, self.clamp)

    def extra_repr(self) -> str:
        parts = [f"{self.channels}", f"act={self.act!r}"]
        for name in ("alpha", "gain", "clamp"):
            if getattr(self, name) is not None:
                parts.append(f"{name}={getattr(self, name)}")
        if self.bias is None:
            parts.append("bias=False")
        return ", ".join(parts)


class FusedLeakyReLU(BiasAct):
    """The StyleGAN2 layer: leaky_relu(x + bias, negative_slope) * scale, same signature
    and state_dict key (`bias`) as the public ports."""

    def __init__(
        self,
        channels: int,
        bias: bool = True,
        negative_slope: float = 0.2,
        scale: float = math.sqrt(2),
    ):
        super().__init__(channels, "lrelu", alpha=negative_slope, gain=scale, bias=bias)
        self.negative_slope, self.scale = negative_slope, scale
