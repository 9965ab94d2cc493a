"""A conv, transposed conv or linear layer followed by an activation: act(layer(x) + bias).

Subclasses of the torch layers (same parameters, buffers and state_dict keys) with two
implementations chosen per call signature by gankernels.fusion:

  fused  the layer without its bias, then bias + activation in one bias_act pass
  torch  the layer with its bias (oneDNN and cuDNN add it inside the matmul), then the
         activation in place on the layer's fresh output

`fused=False` gives the plain torch reference (the activation out of place, as a model
written with torch modules computes it), which never chooses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..fusion import FusionChoice
from ..ops import resample_conv
from ..ops.bias_act import ACTIVATIONS, bias_act_code, piecewise_linear_
from ..ops.norm_act import resolve_alpha

ACTS = tuple(ACTIVATIONS)  # the activations bias_act and NormAct run


def torch_activation(x: torch.Tensor, act: str, alpha: float | None) -> torch.Tensor:
    """act(x) in plain torch, out of place (gain 1); alpha None: the activation's default."""
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
    if act == "elu":
        return F.elu(x, 1.0 if alpha is None else alpha)
    if act == "selu":
        return F.selu(x)
    if act == "softplus":
        return F.softplus(x)
    if act == "swish":
        return F.silu(x)
    raise ValueError(f"torch_activation: unsupported act {act!r}")


def activation_(y: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    """act(y) in place where autograd allows it (the backward then needs only the
    result); y must be a fresh tensor no one else reads. alpha: the resolved value."""
    if act == "linear":
        return y
    if act == "relu" or (act == "lrelu" and alpha >= 0):  # in place needs a slope >= 0
        return piecewise_linear_(y, act, alpha)
    if act == "tanh":
        return y.tanh_()
    if act == "sigmoid":
        return y.sigmoid_()
    if act == "elu" and alpha >= 0:
        return F.elu_(y, alpha)
    return torch_activation(y, act, alpha)  # selu, softplus, swish: out of place


def _resolved_alpha(act: str, alpha: float | None) -> float:
    return resolve_alpha("layer activation", act, alpha)


class LayerAct(FusionChoice):
    """Mixin for the layer classes below: see the module doc. The layer's own `bias`
    parameter is the bias either way, so the keys are those of the torch layer."""

    def _setup_act(self, act: str, alpha: float | None, fused: bool) -> None:
        if act not in ACTS:
            raise ValueError(f"{type(self).__name__}: unknown act {act!r}; expected one of {ACTS}")
        self.act, self.alpha, self.fused = act, alpha, fused
        self._alpha = _resolved_alpha(act, alpha)

    def _raw_weight(self) -> torch.Tensor:
        """The weight without its parametrization (reading self.weight would run a
        spectral norm's power iteration)."""
        if parametrize.is_parametrized(self, "weight"):
            return self.parametrizations.weight.original
        return self.weight

    def _fusion_config(self) -> str:
        w = self._raw_weight()
        parts = [f"weight {tuple(w.shape)}", f"act {self.act} {self._alpha:g}"]
        for name in ("stride", "padding", "output_padding", "dilation", "groups", "padding_mode"):
            if hasattr(self, name):
                parts.append(f"{name} {getattr(self, name)}")
        return ", ".join(parts)

    def _fusion_applies(self) -> bool:
        return self.fused and self.bias is not None and self.act != "linear"

    def _fusion_tensors_raw(self, tensors: list) -> list:
        return [tensors[0], self._raw_weight(), *tensors[2:]]  # no power iteration

    def _fusion_forward(self, impl: str, tensors: list) -> torch.Tensor:
        x, w, b = tensors
        if impl == "fused":
            y = self._layer(x, w, None)
            dim = y.dim() - self._channels_from_end
            return bias_act_code(
                y, b.to(y.dtype), dim, ACTIVATIONS[self.act].code, self._alpha, 1.0, -1.0
            )
        return activation_(self._layer(x, w, b), self.act, self._alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight, self.bias
        if not self.fused:  # the plain torch reference
            return torch_activation(self._layer(x, w, b), self.act, self.alpha)
        if b is None or self.act == "linear":  # nothing to fuse: one pass either way
            return activation_(self._layer(x, w, b), self.act, self._alpha)
        tensors = [x, w, b]
        return self._fusion_forward(self._fusion_impl(x, tensors), tensors)

    def extra_repr(self) -> str:
        text = f"{super().extra_repr()}, act={self.act!r}"
        if self.act in ("lrelu", "elu"):
            text += f", alpha={self._alpha:g}"
        if not self.fused:
            return text + ", reference"
        if not self._fusion_applies():
            return f"{text}, impl: torch (nothing to fuse)"
        return f"{text}, {self._fusion_repr()}"


def _all(values, target: int) -> bool:
    return all(v == target for v in values)


def _channels_innermost(t: torch.Tensor) -> bool:
    """channels_last order (also for a slice of a channels_last tensor)."""
    return t.dim() == 4 and t.stride(1) == 1 and t.shape[1] > 1


def _channels_inner(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W, C): a free view of a channels_last tensor."""
    return t.permute(0, 2, 3, 1)


def conv_covering_input(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None):
    """conv(x, w, b) for a kernel as large as x's spatial size (no padding, dilation or
    groups): one output position per sample, so a matrix product. A channels_last x is
    read in its own order (no copy of the activations)."""
    if _channels_innermost(x):
        x, w = _channels_inner(x), _channels_inner(w)
    y = F.linear(x.flatten(1), w.flatten(1), b)
    return y.view(*y.shape, *[1] * (w.dim() - 2))


def conv_transpose_from_one_position(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
) -> torch.Tensor:
    """conv_transpose(x, w, b) for an input of spatial size 1 (no padding, output padding,
    dilation or groups): a matrix product again; the bias repeats over the kernel's
    positions. A channels_last weight (a model in channels_last) gives a channels_last
    output, as the convolution would, without copying the weight."""
    positions = w[0, 0].numel()
    if _channels_innermost(w):
        bias = None if b is None else b.repeat(positions)
        y = F.linear(x.flatten(1), _channels_inner(w).flatten(1).t(), bias)
        return y.view(x.shape[0], *w.shape[2:], w.shape[1]).permute(0, 3, 1, 2)
    bias = None if b is None else b.repeat_interleave(positions)
    y = F.linear(x.flatten(1), w.flatten(1).t(), bias)
    return y.view(x.shape[0], w.shape[1], *w.shape[2:])


class _Conv(LayerAct):
    def _layer(self, x, w, b):
        taps = self._taps_on_input(x) if self.fused else None
        if taps is not None:
            return conv_covering_input(x, w[(slice(None), slice(None), *taps)], b)
        return self._conv_forward(x, w, b)

    def _taps_on_input(self, x: torch.Tensor) -> list[slice] | None:
        """With a single output position per sample (the last layer of DCGAN's D, the
        innermost down layer of a U-Net) the convolution is a matrix product with the
        kernel taps that meet the input, which oneDNN's convolution runs several times
        slower on CPUs: those taps, or None for any other convolution."""
        k = len(self.kernel_size)
        if x.dim() != k + 2 or self.groups != 1 or not _all(self.dilation, 1):
            return None
        if isinstance(self.padding, str):
            if self.padding != "valid":
                return None
            pads = (0,) * k
        else:
            pads = self.padding
            if any(pads) and self.padding_mode != "zeros":
                return None
        taps = []
        for n, p, size, s in zip(x.shape[2:], pads, self.kernel_size, self.stride, strict=True):
            # every input inside the one window, and room for one output only
            if n + p > size or not 0 <= n + 2 * p - size < s:
                return None
            taps.append(slice(p, p + n))
        return taps

    @property
    def _channels_from_end(self) -> int:  # (N, C, *spatial) or (C, *spatial)
        return len(self.kernel_size) + 1


class _ConvTranspose(LayerAct):
    def _layer(self, x, w, b):
        taps = self._taps_from_one_position(x) if self.fused else None
        if taps is not None:
            return conv_transpose_from_one_position(x, w[(slice(None), slice(None), *taps)], b)
        fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[len(self.kernel_size) - 1]
        args = (self.stride, self.padding, self.output_padding, self.groups, self.dilation)
        return fn(x, w, b, *args)

    def _taps_from_one_position(self, x: torch.Tensor) -> list[slice] | None:
        """From a single input position per sample (DCGAN G's first layer, the innermost
        up layer of a U-Net) each output is one kernel tap times the input: a matrix
        product with the taps that land inside the output, or None."""
        k = len(self.kernel_size)
        if x.dim() != k + 2 or not _all(x.shape[2:], 1):
            return None
        if self.groups != 1 or not _all(self.dilation, 1):
            return None
        taps = []
        for p, extra, size in zip(self.padding, self.output_padding, self.kernel_size, strict=True):
            if extra > p or size - 2 * p + extra < 1:  # a tap beyond the kernel, or no output
                return None
            taps.append(slice(p, size - p + extra))
        return taps

    @property
    def _channels_from_end(self) -> int:
        return len(self.kernel_size) + 1


def _init(self, base, args, kwargs):
    act = kwargs.pop("act", "linear")
    alpha = kwargs.pop("alpha", None)
    fused = kwargs.pop("fused", True)
    base.__init__(self, *args, **kwargs)
    self._setup_act(act, alpha, fused)


class Conv1dAct(_Conv, nn.Conv1d):
    """act(conv1d(x) + bias); nn.Conv1d's arguments plus act, alpha, fused."""

    _fusion_op = "conv1d+bias_act"

    def __init__(self, *args, **kwargs):
        _init(self, nn.Conv1d, args, kwargs)


class Conv2dAct(_Conv, nn.Conv2d):
    """act(conv2d(x) + bias); nn.Conv2d's arguments plus act, alpha, fused."""

    _fusion_op = "conv2d+bias_act"

    def __init__(self, *args, **kwargs):
        _init(self, nn.Conv2d, args, kwargs)


class Conv3dAct(_Conv, nn.Conv3d):
    """act(conv3d(x) + bias); nn.Conv3d's arguments plus act, alpha, fused."""

    _fusion_op = "conv3d+bias_act"

    def __init__(self, *args, **kwargs):
        _init(self, nn.Conv3d, args, kwargs)


class _ResampleConv2dAct(Conv2dAct):
    """Conv2dAct with a 2x resampling folded into its kernel (ops.resample_conv). The
    choice here is between that folded convolution ("fused") and the plain torch
    composition ("torch"); the bias stays inside the convolution either way."""

    _folded = None  # the ops.resample_conv function
    _plain = None  # its plain torch composition

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        what = type(self).__name__
        if self.stride != (1, 1) or self.dilation != (1, 1) or self.groups != 1:
            raise ValueError(f"{what}: stride, dilation and groups must be 1")
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError(f"{what}: padding must be numbers (zero padding)")
        if not all(0 <= p < k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ValueError(
                f"{what}: padding must be below the kernel size {self.kernel_size}, "
                f"got {self.padding}"
            )

    def _fusion_applies(self) -> bool:
        return self.fused

    def _layer(self, x, w, b):
        return type(self)._plain(x, w, b, self.padding)

    def _fusion_forward(self, impl: str, tensors: list) -> torch.Tensor:
        x, w, b = tensors
        y = type(self)._folded(x, w, b, self.padding) if impl == "fused" else self._layer(x, w, b)
        return activation_(y, self.act, self._alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight, self.bias
        if not self.fused:  # the plain torch reference
            return torch_activation(self._layer(x, w, b), self.act, self.alpha)
        tensors = [x, w, b]
        return self._fusion_forward(self._fusion_impl(x, tensors), tensors)


class UpsampleConv2dAct(_ResampleConv2dAct):
    """act(conv2d(nearest 2x upsampling of x) + bias): nn.Conv2d's arguments (stride 1)
    plus act, alpha, fused; the keys of nn.Conv2d. The upsampling is folded into a
    stride-2 transposed convolution at the input's resolution (2.25x fewer multiply-adds
    for a 3x3 kernel) where that measures faster."""

    _fusion_op = "upsample2x+conv2d"
    _folded = staticmethod(resample_conv.upsample_conv2d)
    _plain = staticmethod(resample_conv.reference_upsample_conv2d)


class Conv2dAvgPoolAct(_ResampleConv2dAct):
    """act(avg_pool2d(conv2d(x) + bias, 2)): nn.Conv2d's arguments (stride 1) plus act,
    alpha, fused; the keys of nn.Conv2d. The pooling is folded into a stride-2
    convolution (2.25x fewer multiply-adds for a 3x3 kernel) where that measures faster."""

    _fusion_op = "conv2d+avgpool2x"
    _folded = staticmethod(resample_conv.conv2d_avgpool)
    _plain = staticmethod(resample_conv.reference_conv2d_avgpool)


class ConvTranspose1dAct(_ConvTranspose, nn.ConvTranspose1d):
    """act(conv_transpose1d(x) + bias); nn.ConvTranspose1d's arguments plus act, alpha."""

    _fusion_op = "convtranspose1d+bias_act"

    def __init__(self, *args, **kwargs):
        _init(self, nn.ConvTranspose1d, args, kwargs)


class ConvTranspose2dAct(_ConvTranspose, nn.ConvTranspose2d):
    """act(conv_transpose2d(x) + bias); nn.ConvTranspose2d's arguments plus act, alpha."""

    _fusion_op = "convtranspose2d+bias_act"

    def __init__(self, *args, **kwargs):
        _init(self, nn.ConvTranspose2d, args, kwargs)


class ConvTranspose3dAct(_ConvTranspose, nn.ConvTranspose3d):
    """act(conv_transpose3d(x) + bias); nn.ConvTranspose3d's arguments plus act, alpha."""

    _fusion_op = "convtranspose3d+bias_act"

    def __init__(self, *args, **kwargs):
        _init(self, nn.ConvTranspose3d, args, kwargs)


class LinearAct(LayerAct, nn.Linear):
    """act(x @ W^T + bias); nn.Linear's arguments plus act, alpha, fused."""

    _fusion_op = "linear+bias_act"
    _channels_from_end = 1

    def __init__(self, *args, **kwargs):
        _init(self, nn.Linear, args, kwargs)

    def _layer(self, x, w, b):
        return F.linear(x, w, b)


# torch layer class -> its act class (exact types: a subclass may have its own forward).
ACT_CLASSES = {
    nn.Conv1d: Conv1dAct,
    nn.Conv2d: Conv2dAct,
    nn.Conv3d: Conv3dAct,
    nn.ConvTranspose1d: ConvTranspose1dAct,
    nn.ConvTranspose2d: ConvTranspose2dAct,
    nn.ConvTranspose3d: ConvTranspose3dAct,
    nn.Linear: LinearAct,
}


def plain_layer_class(module: nn.Module) -> type | None:
    """The torch layer class of `module` (through a parametrization's injected class), or
    None if it is not exactly one of ACT_CLASSES' keys."""
    cls = type(module)
    if parametrize.is_parametrized(module):
        cls = cls.__bases__[0]
    return cls if cls in ACT_CLASSES else None


def adopt(module: nn.Module, act: str, alpha: float | None) -> None:
    """Turn a torch layer into its act class in place, keeping the object (its
    parameters, hooks and parametrizations): it then applies `act` itself. A parametrized
    layer gets a parametrized act class built the way torch.nn.utils.parametrize builds
    its own (the injected properties copied over), so that removing the parametrization
    later leaves the act class."""
    base = plain_layer_class(module)
    if base is None:
        raise TypeError(f"adopt: {type(module).__name__} is not one of {list(ACT_CLASSES)}")
    target = ACT_CLASSES[base]
    if parametrize.is_parametrized(module):  # torch injects one class per module
        skip = ("__module__", "__dict__", "__weakref__", "__doc__")
        body = {k: v for k, v in vars(type(module)).items() if k not in skip}
        target = type(f"Parametrized{target.__name__}", (target,), body)
    module.__class__ = target
    module._setup_act(act, alpha, True)
