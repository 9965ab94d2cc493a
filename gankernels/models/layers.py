"""The layers the models are built from, each in two implementations with the same
parameters, buffers, state_dict keys and random draws at construction:

  fused      gankernels' kernels (bias + activation in one pass, NormAct, our spectral norm)
  reference  plain torch (nn.Conv2d then the activation, nn.BatchNorm2d then the
             activation, torch.nn.utils.parametrizations.spectral_norm)

so that a model built with `Layers(fused=False)` loads the state_dict of the one built
with `Layers(fused=True)` (and the other way round) and computes the same numbers. The
StyleGAN2 layers torch has no module for (modulated convolution, FIR resampling,
minibatch stddev) are gankernels' modules in both; run the reference model under
`gk.use_backend("reference")` to have them run as plain torch too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm

from ..nn.norm_act import NormAct
from ..nn.spectral_norm import spectral_norm as fused_spectral_norm
from ..ops.bias_act import ACTIVATIONS, bias_act


def torch_activation(x: torch.Tensor, act: str, alpha: float | None) -> torch.Tensor:
    """The activations the models use, in plain torch (gain 1)."""
    if act == "linear":
        return x
    if act == "relu":
        return F.relu(x)
    if act == "lrelu":
        return F.leaky_relu(x, 0.2 if alpha is None else alpha)
    if act == "tanh":
        return torch.tanh(x)
    if act == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(f"torch_activation: unsupported act {act!r}")


def _check_act(act: str) -> None:
    if act not in ("linear", "relu", "lrelu", "tanh", "sigmoid"):
        raise ValueError(f"unsupported act {act!r}; the models use linear, relu, lrelu, tanh")


class _ActMixin:
    """The activation after a layer whose bias it adds: one bias_act pass (fused) or the
    layer's own bias then the torch activation (reference). The bias stays the layer's
    `bias` parameter either way, so the keys are those of the torch layer."""

    def _setup_act(self, act: str, alpha: float | None, fused: bool) -> None:
        _check_act(act)
        self.act, self.alpha, self.fused = act, alpha, fused

    def _finish(self, y_without_bias: torch.Tensor) -> torch.Tensor:
        return bias_act(y_without_bias, self.bias, 1, self.act, self.alpha, 1.0)

    def extra_repr(self) -> str:
        impl = "fused" if self.fused else "reference"
        return f"{super().extra_repr()}, act={self.act!r}, {impl}"


class Conv2dAct(_ActMixin, nn.Conv2d):
    """act(conv2d(x) + bias): nn.Conv2d's parameters and keys."""

    def __init__(self, *args, act: str = "linear", alpha=None, fused: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self._setup_act(act, alpha, fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused and self.act != "linear" and self.bias is not None:
            return self._finish(self._conv_forward(x, self.weight, None))
        return torch_activation(super().forward(x), self.act, self.alpha)


class ConvTranspose2dAct(_ActMixin, nn.ConvTranspose2d):
    """act(conv_transpose2d(x) + bias): nn.ConvTranspose2d's parameters and keys."""

    def __init__(self, *args, act: str = "linear", alpha=None, fused: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self._setup_act(act, alpha, fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused and self.act != "linear" and self.bias is not None:
            y = F.conv_transpose2d(
                x,
                self.weight,
                None,
                self.stride,
                self.padding,
                self.output_padding,
                self.groups,
                self.dilation,
            )
            return self._finish(y)
        return torch_activation(super().forward(x), self.act, self.alpha)


class LinearAct(_ActMixin, nn.Linear):
    """act(x @ W^T + bias): nn.Linear's parameters and keys."""

    def __init__(self, *args, act: str = "linear", alpha=None, fused: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self._setup_act(act, alpha, fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused and self.act != "linear" and self.bias is not None:
            return self._finish(F.linear(x, self.weight))
        return torch_activation(super().forward(x), self.act, self.alpha)


class Activation(nn.Module):
    """A parameter-free activation: bias_act without a bias (fused) or the torch one."""

    def __init__(self, act: str, alpha: float | None = None, fused: bool = True):
        super().__init__()
        _check_act(act)
        self.act, self.alpha, self.fused = act, alpha, fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return bias_act(x, None, 1, self.act, self.alpha, 1.0)
        return torch_activation(x, self.act, self.alpha)

    def extra_repr(self) -> str:
        return f"act={self.act!r}, {'fused' if self.fused else 'reference'}"


class BatchNormAct2d(nn.BatchNorm2d):
    """nn.BatchNorm2d then an activation, in plain torch: the reference of NormAct."""

    def __init__(self, num_features: int, act: str = "relu", alpha=None, **kwargs):
        super().__init__(num_features, **kwargs)
        _check_act(act)
        self.act, self.alpha = act, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch_activation(super().forward(x), self.act, self.alpha)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, act={self.act!r}"


class InstanceNormAct2d(nn.InstanceNorm2d):
    """nn.InstanceNorm2d(affine=True) then an activation, in plain torch."""

    def __init__(self, num_features: int, act: str = "lrelu", alpha=None, **kwargs):
        super().__init__(num_features, affine=True, **kwargs)
        _check_act(act)
        self.act, self.alpha = act, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch_activation(super().forward(x), self.act, self.alpha)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, act={self.act!r}"


class ConditionalNormAct(nn.Module):
    """act(norm(x) * (1 + gain(e)) + shift(e)): batch (or instance) norm without its own
    affine, then a per-sample scale and shift computed from the condition embedding e
    (B, embed_dim) by two linear maps: conditional batch norm (de Vries et al. 2017; the
    projection-discriminator paper's G, where e is a class embedding). The condition
    modulates every layer instead of entering once beside z, so it cannot drown z out.
    `conditional = True` tells the models to call it as m(x, e)."""

    conditional = True

    def __init__(
        self, channels: int, embed_dim: int, kind: str = "batch", act: str = "relu",
        alpha: float | None = None, fused: bool = True,
    ):  # fmt: skip
        super().__init__()
        _check_act(act)
        if kind not in ("batch", "instance"):
            raise ValueError(f"norm kind must be 'batch' or 'instance', got {kind!r}")
        if fused:
            self.norm = NormAct(channels, kind, "linear", affine=False)
        elif kind == "batch":
            self.norm = nn.BatchNorm2d(channels, affine=False)
        else:
            self.norm = nn.InstanceNorm2d(channels, affine=False)
        # Zero: the layer starts as a plain norm and learns how the condition modulates it.
        self.gain_weight = nn.Parameter(torch.zeros(channels, embed_dim))
        self.shift_weight = nn.Parameter(torch.zeros(channels, embed_dim))
        self.kind, self.act, self.alpha, self.fused = kind, act, alpha, fused

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        gain = (1 + F.linear(e, self.gain_weight)).to(x.dtype)[:, :, None, None]
        shift = F.linear(e, self.shift_weight).to(x.dtype)[:, :, None, None]
        h = torch.addcmul(shift, self.norm(x), gain)
        if self.fused:
            return bias_act(h, None, 1, self.act, self.alpha, 1.0)
        return torch_activation(h, self.act, self.alpha)

    def extra_repr(self) -> str:
        impl = "fused" if self.fused else "reference"
        return f"kind={self.kind!r}, act={self.act!r}, {impl}"


def run_layers(layers: nn.Module, x: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
    """x through a Sequential whose conditional layers also take the embedding e."""
    for layer in layers:
        x = layer(x, e) if getattr(layer, "conditional", False) else layer(x)
    return x


# ---------------------------------------------------------------------------------------
# StyleGAN2's layers: equalised learning rate (weights stored N(0, 1) / lr_multiplier,
# scaled at run time) and activations with gain sqrt(2) for lrelu.


def _gain(act: str) -> float:
    return ACTIVATIONS[act].gain  # sqrt(2) for relu and lrelu, 1 for linear


class EqualizedLinear(nn.Module):
    """act(x @ (W * gain)^T + b * lr_multiplier) * act_gain, StyleGAN2's FullyConnected:
    lr_multiplier < 1 slows the mapping network's learning rate."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        act: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
        fused: bool = True,
    ):
        super().__init__()
        _check_act(act)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.lr_multiplier, self.act, self.fused = lr_multiplier, act, fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight * self.weight_gain, self.bias * self.lr_multiplier
        if self.fused:
            return bias_act(F.linear(x, w), b, 1, self.act)
        return torch_activation(F.linear(x, w, b), self.act, None) * _gain(self.act)

    def extra_repr(self) -> str:
        out, inp = self.weight.shape
        return f"{inp}, {out}, act={self.act!r}, lr_multiplier={self.lr_multiplier}"


class EqualizedConv2d(nn.Module):
    """act(conv2d(x, W * gain, padding=k // 2) + b) * act_gain; bias=False for the
    linear skip convolutions."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        act: str = "linear",
        bias: bool = True,
        fused: bool = True,
    ):
        super().__init__()
        _check_act(act)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.randn(shape))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding, self.act, self.fused = kernel_size // 2, act, fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.fused and (self.bias is not None or self.act != "linear"):
            return bias_act(F.conv2d(x, w, padding=self.padding), self.bias, 1, self.act)
        y = F.conv2d(x, w, self.bias, padding=self.padding)
        return torch_activation(y, self.act, None) * _gain(self.act)

    def extra_repr(self) -> str:
        out, inp, k, _ = self.weight.shape
        return f"{inp}, {out}, kernel_size={k}, act={self.act!r}, bias={self.bias is not None}"


class NoiseBiasAct(nn.Module):
    """StyleGAN2's tail of a synthesis layer: x + strength * noise, then the bias and
    lrelu * sqrt(2). Noise is one N(0, 1) map per sample, broadcast over the channels;
    `noise_strength` starts at 0 and is learned."""

    def __init__(self, channels: int, fused: bool = True):
        super().__init__()
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.fused = fused

    def forward(self, x: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device)
            x = x + noise.to(x.dtype) * self.noise_strength
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be 'random' or 'none', got {noise_mode!r}")
        if self.fused:
            return bias_act(x, self.bias, 1, "lrelu")
        return F.leaky_relu(x + self.bias[:, None, None], 0.2) * math.sqrt(2)


class AddBias(nn.Module):
    """x + bias per channel (StyleGAN2's toRGB output): bias_act 'linear' or torch."""

    def __init__(self, channels: int, fused: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return bias_act(x, self.bias, 1, "linear")
        return x + self.bias.view(1, -1, *[1] * (x.dim() - 2))


# ---------------------------------------------------------------------------------------


class Layers:
    """Builds each layer in the chosen implementation; the model code calls these and
    never names a module class, so one model definition gives both builds."""

    def __init__(self, fused: bool = True):
        self.fused = fused

    def _finish(self, m: nn.Module, sn: bool, init) -> nn.Module:
        """`init(weight)` first (spectral norm then sees the initialised weight), then the
        fused or torch spectral norm when asked for."""
        if init is not None:
            init(m.weight)
        if not sn:
            return m
        return fused_spectral_norm(m) if self.fused else torch_spectral_norm(m)

    def conv(
        self, in_ch, out_ch, kernel_size, stride=1, padding=0, *, act="linear", alpha=None,
        bias=True, sn=False, init=None,
    ) -> nn.Module:  # fmt: skip
        """Conv2d, then act."""
        m = Conv2dAct(
            in_ch, out_ch, kernel_size, stride, padding, bias=bias, act=act, alpha=alpha,
            fused=self.fused,
        )  # fmt: skip
        return self._finish(m, sn, init)

    def conv_transpose(
        self, in_ch, out_ch, kernel_size, stride=1, padding=0, *, act="linear", alpha=None,
        bias=True, sn=False, init=None,
    ) -> nn.Module:  # fmt: skip
        """ConvTranspose2d, then act."""
        m = ConvTranspose2dAct(
            in_ch, out_ch, kernel_size, stride, padding, bias=bias, act=act, alpha=alpha,
            fused=self.fused,
        )  # fmt: skip
        return self._finish(m, sn, init)

    def linear(
        self, in_features, out_features, *, act="linear", alpha=None, bias=True, sn=False, init=None
    ) -> nn.Module:
        m = LinearAct(in_features, out_features, bias=bias, act=act, alpha=alpha, fused=self.fused)
        return self._finish(m, sn, init)

    def embedding(self, num_embeddings, dim, *, sn=False, init=None) -> nn.Module:
        return self._finish(nn.Embedding(num_embeddings, dim), sn, init)

    def condition(self, num_classes, cond_dim, dim, *, act="linear", sn=False, init=None):
        """The embedding of a condition: a learned vector per class (num_classes > 0) or a
        linear map of a condition vector (cond_dim > 0), then act; None without one."""
        if num_classes:
            return self.embedding(num_classes, dim, sn=sn, init=init)
        if cond_dim:
            return self.linear(cond_dim, dim, act=act, sn=sn, init=init)
        return None

    def norm_act(self, channels, kind="batch", act="relu", alpha=None) -> nn.Module:
        """Batch or instance norm (affine), then act."""
        if kind not in ("batch", "instance"):
            raise ValueError(f"norm kind must be 'batch' or 'instance', got {kind!r}")
        if self.fused:
            if alpha is None and act == "lrelu":
                alpha = 0.2
            return NormAct(channels, kind, act, alpha)
        cls = BatchNormAct2d if kind == "batch" else InstanceNormAct2d
        return cls(channels, act, alpha)

    def act(self, act, alpha=None) -> nn.Module:
        return Activation(act, alpha, fused=self.fused)

    def cond_norm_act(self, channels, embed_dim, kind="batch", act="relu", alpha=None):
        """Conditional batch (or instance) norm, then act; called as m(x, e)."""
        if alpha is None and act == "lrelu":
            alpha = 0.2
        return ConditionalNormAct(channels, embed_dim, kind, act, alpha, fused=self.fused)

    def eq_linear(
        self, in_features, out_features, *, act="linear", lr_multiplier=1.0, bias_init=0.0
    ) -> nn.Module:
        return EqualizedLinear(
            in_features, out_features, act, lr_multiplier, bias_init, fused=self.fused
        )

    def eq_conv(self, in_ch, out_ch, kernel_size, *, act="linear", bias=True) -> nn.Module:
        return EqualizedConv2d(in_ch, out_ch, kernel_size, act, bias, fused=self.fused)

    def noise_bias_act(self, channels) -> nn.Module:
        return NoiseBiasAct(channels, fused=self.fused)

    def add_bias(self, channels) -> nn.Module:
        return AddBias(channels, fused=self.fused)

    # The image-to-image translation models' layers.

    def conv_reflect(
        self, in_ch, out_ch, kernel_size, stride=1, *, act="linear", alpha=None, bias=True,
        init=None,
    ) -> nn.Module:  # fmt: skip
        """Conv2d over a reflection-padded input (kernel_size // 2 on each side), then act:
        nn.Conv2d(padding_mode="reflect"), so the keys are those of a plain Conv2d."""
        m = Conv2dAct(
            in_ch, out_ch, kernel_size, stride, kernel_size // 2, bias=bias,
            padding_mode="reflect", act=act, alpha=alpha, fused=self.fused,
        )  # fmt: skip
        return self._finish(m, False, init)

    def upconv(
        self, in_ch, out_ch, kernel_size=3, *, act="linear", alpha=None, bias=True, init=None
    ) -> nn.Module:
        """Stride-2 ConvTranspose2d that exactly doubles H and W (padding kernel_size // 2,
        output_padding 1, for odd kernels), then act."""
        if kernel_size % 2 != 1:
            raise ValueError(f"upconv: kernel_size must be odd, got {kernel_size!r}")
        m = ConvTranspose2dAct(
            in_ch, out_ch, kernel_size, 2, kernel_size // 2, 1, bias=bias, act=act,
            alpha=alpha, fused=self.fused,
        )  # fmt: skip
        return self._finish(m, False, init)

    def dropout(self, p=0.5) -> nn.Module:
        """nn.Dropout in both builds: the same random draws under the same seed."""
        return nn.Dropout(p)


def init_dcgan_(model: nn.Module) -> nn.Module:
    """DCGAN's initialisation (Radford et al. 2016): conv and linear weights N(0, 0.02),
    their biases 0, norm scales N(1, 0.02) and shifts 0 (label embeddings keep N(0, 1)).
    Modules are visited in construction order, so both builds draw the same numbers."""
    with torch.no_grad():
        for m in model.modules():
            if parametrize.is_parametrized(m, "weight"):
                continue  # a spectrally normalised weight: initialise before wrapping
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d | NormAct):
                if m.weight is not None:
                    nn.init.normal_(m.weight, 1.0, 0.02)
                    nn.init.zeros_(m.bias)
    return model


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) over the features: StyleGAN's input normalisation."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def resolution_plan(model: str, img_size: int, sizes: tuple[int, ...]) -> tuple[int, int]:
    """(start, doublings): the models start at 7x7 for 28 (MNIST) and 4x4 for powers of
    two, and double the resolution until img_size."""
    if img_size not in sizes:
        raise ValueError(f"{model}: img_size {img_size!r} is not supported; choose one of {sizes}")
    start = 7 if img_size % 7 == 0 else 4
    return start, int(math.log2(img_size // start))


def check_labels(model: nn.Module, y: torch.Tensor | None, batch: int) -> None:
    """The condition a model takes: one class index per sample (num_classes > 0), one
    condition vector per sample (cond_dim > 0: a text or sound embedding), or none."""
    name = type(model).__name__
    cond_dim = getattr(model, "cond_dim", 0)
    if model.num_classes == 0 and not cond_dim:
        if y is not None:
            raise ValueError(f"{name}: a condition given to an unconditional model")
        return
    if y is None:
        what = f"num_classes={model.num_classes}" if model.num_classes else f"cond_dim={cond_dim}"
        raise ValueError(f"{name}: a conditional model ({what}) needs y, its condition")
    if model.num_classes:
        if y.dtype not in (torch.int64, torch.int32) or y.shape != (batch,):
            raise ValueError(
                f"{name}: y must be ({batch},) integer class indices, got {y.dtype} "
                f"{tuple(y.shape)}"
            )
    elif not y.is_floating_point() or y.shape != (batch, cond_dim):
        raise ValueError(
            f"{name}: y must be ({batch}, {cond_dim}) condition vectors, got {y.dtype} "
            f"{tuple(y.shape)}"
        )
