"""The layers the models are built from, each in two implementations with the same
parameters, buffers, state_dict keys and random draws at construction:

  fused      gankernels' layers: our spectral norm, and for each bias + activation and
             norm + activation the faster of our fused kernel and the plain torch path,
             measured per shape (gankernels.fusion; `fusion_report(model)` says which)
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

from ..fusion import FusionChoice
from ..nn.layer_act import (
    Conv2dAct,
    Conv2dAvgPoolAct,
    ConvTranspose2dAct,
    LinearAct,
    UpsampleConv2dAct,
    activation_,
    torch_activation,
)
from ..nn.norm_act import NormAct
from ..nn.spectral_norm import spectral_norm as fused_spectral_norm
from ..ops.bias_act import ACTIVATIONS, bias_act_code, piecewise_linear_
from ..ops.norm_act import norm_act, resolve_alpha

_SQRT2 = math.sqrt(2)


def _check_act(act: str) -> None:
    if act not in ("linear", "relu", "lrelu", "tanh", "sigmoid"):
        raise ValueError(f"unsupported act {act!r}; the models use linear, relu, lrelu, tanh")


class Activation(FusionChoice, nn.Module):
    """A parameter-free activation: bias_act without a bias or the torch activation (out
    of place: the input may be read elsewhere), whichever gankernels.fusion chose; the
    torch one in the reference build."""

    _fusion_op = "activation"

    def __init__(self, act: str, alpha: float | None = None, fused: bool = True):
        super().__init__()
        _check_act(act)
        self.act, self.alpha, self.fused = act, alpha, fused
        self._alpha = resolve_alpha("Activation", act, alpha)

    def _fusion_config(self) -> str:
        return f"act {self.act} {self._alpha:g}"

    def _fusion_forward(self, impl: str, tensors: list) -> torch.Tensor:
        (x,) = tensors
        if impl == "fused":
            return bias_act_code(x, None, 1, ACTIVATIONS[self.act].code, self._alpha, 1.0, -1.0)
        return torch_activation(x, self.act, self._alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return torch_activation(x, self.act, self.alpha)
        return self._fusion_forward(self._fusion_impl(x, [x]), [x])

    def extra_repr(self) -> str:
        impl = self._fusion_repr() if self.fused else "reference"
        return f"act={self.act!r}, {impl}"


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


class ConditionalNormAct(FusionChoice, nn.Module):
    """act(norm(x) * (1 + gain(e)) + shift(e)): batch (or instance) norm without its own
    affine, then a per-sample scale and shift computed from the condition embedding e
    (B, embed_dim) by two linear maps: conditional batch norm (de Vries et al. 2017; the
    projection-discriminator paper's G, where e is a class embedding). The condition
    modulates every layer instead of entering once beside z, so it cannot drown z out.
    `conditional = True` tells the models to call it as m(x, e).

    The gankernels build chooses (gankernels.fusion) between our norm kernel with
    bias_act for the activation, and torch's norm with the activation in place."""

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
        self._alpha = resolve_alpha("ConditionalNormAct", act, alpha)

    @property
    def _fusion_op(self) -> str:
        return f"norm_act {self.kind} conditional"

    def _fusion_config(self) -> str:
        mode = "train" if self.training else "eval"
        return f"act {self.act} {self._alpha:g}, embed {self.gain_weight.shape[1]}, {mode}"

    def _fusion_forward(self, impl: str, tensors: list) -> torch.Tensor:
        x, e, gain_weight, shift_weight, running_mean, running_var = tensors
        gain = (1 + F.linear(e, gain_weight)).to(x.dtype)[:, :, None, None]
        shift = F.linear(e, shift_weight).to(x.dtype)[:, :, None, None]
        norm = self.norm
        batch_stats = norm.training or running_mean is None
        if impl == "fused":
            h = norm_act(
                x, None, None, self.kind, "linear", None, norm.eps, running_mean, running_var,
                norm.momentum, norm.training,
            )  # fmt: skip
            h = torch.addcmul(shift, h, gain)
            return bias_act_code(h, None, 1, ACTIVATIONS[self.act].code, self._alpha, 1.0, -1.0)
        f = F.instance_norm if self.kind == "instance" else F.batch_norm
        h = f(x, running_mean, running_var, None, None, batch_stats, norm.momentum, norm.eps)
        return activation_(torch.addcmul(shift, h, gain), self.act, self._alpha)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            gain = (1 + F.linear(e, self.gain_weight)).to(x.dtype)[:, :, None, None]
            shift = F.linear(e, self.shift_weight).to(x.dtype)[:, :, None, None]
            return torch_activation(torch.addcmul(shift, self.norm(x), gain), self.act, self.alpha)
        norm = self.norm
        if norm.training and norm.track_running_stats and self.kind == "batch":
            norm.num_batches_tracked.add_(1)
        tensors = [x, e, self.gain_weight, self.shift_weight, norm.running_mean, norm.running_var]
        return self._fusion_forward(self._fusion_impl(x, tensors), tensors)

    def extra_repr(self) -> str:
        impl = self._fusion_repr() if self.fused else "reference"
        return f"kind={self.kind!r}, act={self.act!r}, {impl}"


def run_layers(layers: nn.Module, x: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
    """x through a Sequential whose conditional layers also take the embedding e."""
    for layer in layers:
        x = layer(x, e) if getattr(layer, "conditional", False) else layer(x)
    return x


# ---------------------------------------------------------------------------------------
# StyleGAN2's layers: equalised learning rate (weights stored N(0, 1) / lr_multiplier,
# scaled at run time) and activations with gain sqrt(2) for lrelu. In the gankernels
# build each chooses (gankernels.fusion) between bias_act and torch's layer with its bias
# and the activation in place; relu and lrelu are positively homogeneous, so there the
# gain is folded into the weight and bias (one scaling of the small weight instead of a
# pass over the output).


def _gain(act: str) -> float:
    return ACTIVATIONS[act].gain  # sqrt(2) for relu and lrelu, 1 for linear


def _torch_bias_act(layer, x, w, b, act: str) -> torch.Tensor:
    """act(layer(x, w, b)) * gain, torch's way, on the fresh output of layer."""
    gain = _gain(act)
    if gain != 1.0 and act in ("relu", "lrelu"):
        w, b = w * gain, None if b is None else b * gain
        gain = 1.0
    y = activation_(layer(x, w, b), act, 0.2)
    return y if gain == 1.0 else y * gain


class EqualizedLinear(FusionChoice, nn.Module):
    """act(x @ (W * gain)^T + b * lr_multiplier) * act_gain, StyleGAN2's FullyConnected:
    lr_multiplier < 1 slows the mapping network's learning rate."""

    _fusion_op = "linear+bias_act"

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

    def _fusion_config(self) -> str:
        return f"weight {tuple(self.weight.shape)}, act {self.act} gain {_gain(self.act):g}"

    def _fusion_forward(self, impl: str, tensors: list) -> torch.Tensor:
        x, weight, bias = tensors
        w, b = weight * self.weight_gain, bias * self.lr_multiplier
        if impl == "fused":
            spec = ACTIVATIONS[self.act]
            y = F.linear(x, w)
            return bias_act_code(y, b.to(y.dtype), 1, spec.code, spec.alpha or 0.0, spec.gain, -1.0)
        return _torch_bias_act(F.linear, x, w, b, self.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            w, b = self.weight * self.weight_gain, self.bias * self.lr_multiplier
            return torch_activation(F.linear(x, w, b), self.act, None) * _gain(self.act)
        tensors = [x, self.weight, self.bias]
        return self._fusion_forward(self._fusion_impl(x, tensors), tensors)

    def extra_repr(self) -> str:
        out, inp = self.weight.shape
        impl = self._fusion_repr() if self.fused else "reference"
        return f"{inp}, {out}, act={self.act!r}, lr_multiplier={self.lr_multiplier}, {impl}"


class EqualizedConv2d(FusionChoice, nn.Module):
    """act(conv2d(x, W * gain, padding=k // 2) + b) * act_gain; bias=False for the
    linear skip convolutions."""

    _fusion_op = "conv2d+bias_act"

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

    def _fusion_applies(self) -> bool:
        return self.fused and (self.bias is not None or self.act != "linear")

    def _conv(self, x, w, b=None):
        return F.conv2d(x, w, b, padding=self.padding)

    def _fusion_config(self) -> str:
        return f"weight {tuple(self.weight.shape)}, act {self.act} gain {_gain(self.act):g}"

    def _fusion_forward(self, impl: str, tensors: list) -> torch.Tensor:
        x, weight, bias = tensors
        w = weight * self.weight_gain
        if impl == "fused":
            spec = ACTIVATIONS[self.act]
            y = self._conv(x, w)
            b = None if bias is None else bias.to(y.dtype)
            return bias_act_code(y, b, 1, spec.code, spec.alpha or 0.0, spec.gain, -1.0)
        return _torch_bias_act(self._conv, x, w, bias, self.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            y = self._conv(x, self.weight * self.weight_gain, self.bias)
            return torch_activation(y, self.act, None) * _gain(self.act)
        if not self._fusion_applies():  # nothing to fuse
            return self._conv(x, self.weight * self.weight_gain)
        tensors = [x, self.weight, self.bias]
        return self._fusion_forward(self._fusion_impl(x, tensors), tensors)

    def extra_repr(self) -> str:
        out, inp, k, _ = self.weight.shape
        impl = self._fusion_repr() if self.fused else "reference"
        return (
            f"{inp}, {out}, kernel_size={k}, act={self.act!r}, bias={self.bias is not None}, {impl}"
        )


class NoiseBiasAct(FusionChoice, nn.Module):
    """StyleGAN2's tail of a synthesis layer: x + strength * noise, then the bias and
    lrelu * sqrt(2). Noise is one N(0, 1) map per sample, broadcast over the channels;
    `noise_strength` starts at 0 and is learned."""

    _fusion_op = "bias_act"

    def __init__(self, channels: int, fused: bool = True):
        super().__init__()
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.fused = fused

    def _fusion_config(self) -> str:
        return "act lrelu 0.2 gain 1.41"

    def _fusion_forward(self, impl: str, tensors: list) -> torch.Tensor:
        x, bias = tensors
        if impl == "fused":
            return bias_act_code(
                x, bias.to(x.dtype), 1, ACTIVATIONS["lrelu"].code, 0.2, _SQRT2, -1.0
            )
        # lrelu(z) * g = lrelu(z * g) for g > 0: one new tensor, then in place.
        y = torch.add(x, bias.to(x.dtype)[:, None, None], alpha=1.0).mul_(_SQRT2)
        return piecewise_linear_(y, "lrelu", 0.2)

    def forward(self, x: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device)
            x = x + noise.to(x.dtype) * self.noise_strength
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be 'random' or 'none', got {noise_mode!r}")
        if not self.fused:
            return F.leaky_relu(x + self.bias[:, None, None], 0.2) * math.sqrt(2)
        tensors = [x, self.bias]
        return self._fusion_forward(self._fusion_impl(x, tensors), tensors)

    def extra_repr(self) -> str:
        return self._fusion_repr() if self.fused else "reference"


class AddBias(FusionChoice, nn.Module):
    """x + bias per channel (StyleGAN2's toRGB output): bias_act 'linear' or torch."""

    _fusion_op = "bias_act"

    def __init__(self, channels: int, fused: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.fused = fused

    def _fusion_config(self) -> str:
        return "act linear"

    def _fusion_forward(self, impl: str, tensors: list) -> torch.Tensor:
        x, bias = tensors
        if impl == "fused":
            return bias_act_code(x, bias.to(x.dtype), 1, 0, 0.0, 1.0, -1.0)
        return x + bias.view(1, -1, *[1] * (x.dim() - 2)).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return x + self.bias.view(1, -1, *[1] * (x.dim() - 2))
        tensors = [x, self.bias]
        return self._fusion_forward(self._fusion_impl(x, tensors), tensors)

    def extra_repr(self) -> str:
        return self._fusion_repr() if self.fused else "reference"


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

    def upsample_conv(self, in_ch, out_ch, kernel_size, padding=0, **kwargs) -> nn.Module:
        """Nearest 2x upsampling, then Conv2d (stride 1), then act: the keys of a Conv2d.
        The gankernels build folds the upsampling into the kernel (ops.upsample_conv2d).
        kwargs: act, alpha, bias, sn, init as for conv."""
        return self._resample_conv(UpsampleConv2dAct, in_ch, out_ch, kernel_size, padding, **kwargs)

    def conv_avgpool(self, in_ch, out_ch, kernel_size, padding=0, **kwargs) -> nn.Module:
        """Conv2d (stride 1), then 2x average pooling, then act: the keys of a Conv2d.
        The gankernels build folds the pooling into the kernel (ops.conv2d_avgpool)."""
        return self._resample_conv(Conv2dAvgPoolAct, in_ch, out_ch, kernel_size, padding, **kwargs)

    def _resample_conv(
        self, cls, in_ch, out_ch, kernel_size, padding, *, act="linear", alpha=None, bias=True,
        sn=False, init=None,
    ) -> nn.Module:  # fmt: skip
        m = cls(
            in_ch, out_ch, kernel_size, 1, padding, bias=bias, act=act, alpha=alpha,
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
            linear = self.linear(cond_dim, dim, act=act, sn=sn, init=init)
            linear.register_forward_pre_hook(_unit_condition)
            return linear
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


def _unit_condition(module: nn.Module, args: tuple) -> tuple:
    """Condition vectors enter on the unit sphere. Under Adam a vector's length acts as a
    learning-rate multiplier on the layers it feeds (a step moves W y by about lr * |y|):
    an encoder with outputs of length 12 (the spoken-digit classifier's features) made G
    and D unstable where unit-length sentence embeddings and one-hot labels were not."""
    return (F.normalize(args[0], dim=1), *args[1:])


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
