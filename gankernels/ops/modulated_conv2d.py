"""modulated_conv2d: StyleGAN2's modulated (and demodulated) convolution, with first and
second order gradients.

Per sample n the weight is scaled by that sample's styles along the input channels and,
with demodulation, each output filter renormalised to unit norm:
    a[n, o, i, k] = weight[o, i, k] * styles[n, i]
    w[n, o, i, k] = a[n, o, i, k] * dcoef[n, o],  dcoef = rsqrt(sum_{i,k} a^2 + eps)
and the N per-sample weights run as one grouped convolution (groups=N). up=2 is a
stride-2 transposed convolution followed by the FIR resample filter (upfirdn2d, gain 4);
down=2 is the filter followed by a stride-2 convolution (StyleGAN2's resampling).

Two kernels per backend prepare the weights (the convolution is torch's):
  modconv_weight(weight, styles, demodulate, eps)          -> w (N, O, I, kh, kw)
  modconv_weight_grad(dw, weight, styles, demodulate, eps) -> (dweight, dstyles)
Kernel contract: weight (O, I, kh, kw), styles (N, I) and dw (N, O, I, kh, kw) are
contiguous, of one dtype; outputs are contiguous in that dtype. Arithmetic is float32
(float64 for float64 data). With g = dcoef * dw - dcoef^3 * t * a, t = sum_{i,k} dw * a
(g = dw without demodulation):
  dweight[o, i, k] = sum_n g[n, o, i, k] * styles[n, i]
  dstyles[n, i]    = sum_{o, k} g[n, o, i, k] * weight[o, i, k]
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as torch_F

from .. import _backend
from .upfirdn2d import setup_filter, upfirdn2d

EPS = 1e-8


# ---------------------------------------------------------------------------------------
# Reference kernels (plain torch), with the backends' signatures.


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _modulated(weight, styles):
    """(a, dcoef-less) a = weight * styles in the accumulator type, (N, O, I, K)."""
    acc = _acc_dtype(weight.dtype)
    C_out, C_in = weight.shape[:2]
    w = weight.to(acc).reshape(1, C_out, C_in, -1)
    return w * styles.to(acc).reshape(-1, 1, C_in, 1)


def reference_modconv_weight(weight, styles, demodulate, eps):
    a = _modulated(weight, styles)
    if demodulate:
        a = a * (a.square().sum([2, 3], keepdim=True) + eps).rsqrt()
    return a.reshape(styles.shape[0], *weight.shape).to(weight.dtype)


def reference_modconv_weight_grad(dw, weight, styles, demodulate, eps):
    acc = _acc_dtype(weight.dtype)
    C_out, C_in = weight.shape[:2]
    N = styles.shape[0]
    g = dw.to(acc).reshape(N, C_out, C_in, -1)
    if demodulate:
        a = _modulated(weight, styles)
        dcoef = (a.square().sum([2, 3], keepdim=True) + eps).rsqrt()
        t = (g * a).sum([2, 3], keepdim=True)
        g = dcoef * g - dcoef.pow(3) * t * a
    dweight = (g * styles.to(acc).reshape(N, 1, C_in, 1)).sum(0)
    dstyles = (g * weight.to(acc).reshape(1, C_out, C_in, -1)).sum([1, 3])
    return dweight.reshape(weight.shape).to(weight.dtype), dstyles.to(styles.dtype)


_KERNELS = ("modconv_weight", "modconv_weight_grad")


@functools.cache
def _kernels(backend: str) -> dict:
    return _backend.kernel_table(backend, _KERNELS, globals(), "modulated_conv")


def _kernel(name: str, device: torch.device):
    return _kernels(_backend.resolve(device))[name]


# ---------------------------------------------------------------------------------------
# torch.library ops. modconv_weight's gradient is the fused modconv_weight_grad kernel; the
# gradient of that (second order: path length regularisation differentiates through G) is
# recomputed through the reference's differentiable torch ops.


@torch.library.custom_op("gankernels::modconv_weight", mutates_args=())
def modconv_weight(
    weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, eps: float
) -> torch.Tensor:
    return _kernel("modconv_weight", weight.device)(
        weight.contiguous(), styles.contiguous(), demodulate, eps
    )


@modconv_weight.register_fake
def _(weight, styles, demodulate, eps):
    return weight.new_empty(styles.shape[0], *weight.shape)


@torch.library.custom_op("gankernels::modconv_weight_grad", mutates_args=())
def modconv_weight_grad(
    dw: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    return _kernel("modconv_weight_grad", weight.device)(
        dw.contiguous(), weight.contiguous(), styles.contiguous(), demodulate, eps
    )


@modconv_weight_grad.register_fake
def _(dw, weight, styles, demodulate, eps):
    return weight.new_empty(weight.shape), styles.new_empty(styles.shape)


def _weight_setup(ctx, inputs, output):
    weight, styles, demodulate, eps = inputs
    ctx.demodulate, ctx.eps = demodulate, eps
    ctx.save_for_backward(weight, styles)


def _weight_backward(ctx, dw):
    weight, styles = ctx.saved_tensors
    dweight, dstyles = modconv_weight_grad(dw, weight, styles, ctx.demodulate, ctx.eps)
    return dweight, dstyles, None, None


def _grad_setup(ctx, inputs, output):
    dw, weight, styles, demodulate, eps = inputs
    ctx.demodulate, ctx.eps = demodulate, eps
    ctx.save_for_backward(dw, weight, styles)


def _grad_backward(ctx, h_weight, h_styles):
    dw, weight, styles = ctx.saved_tensors
    demodulate, eps = ctx.demodulate, ctx.eps
    # Either output's incoming gradient may be None (unused output): zeros stand in.
    h_weight = torch.zeros_like(weight) if h_weight is None else h_weight
    h_styles = torch.zeros_like(styles) if h_styles is None else h_styles
    _, vjp = torch.func.vjp(
        lambda dw_, w_, s_: reference_modconv_weight_grad(dw_, w_, s_, demodulate, eps),
        dw,
        weight,
        styles,
    )
    grad_dw, grad_weight, grad_styles = vjp((h_weight, h_styles))
    return grad_dw, grad_weight, grad_styles, None, None


modconv_weight.register_autograd(_weight_backward, setup_context=_weight_setup)
modconv_weight_grad.register_autograd(_grad_backward, setup_context=_grad_setup)


# ---------------------------------------------------------------------------------------
# Public op.


def _what(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor of shape {tuple(v.shape)}"
    return type(v).__name__


def _int_pair(name: str, v) -> tuple[int, int]:
    vals = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, list | tuple) else None
    if vals is None or len(vals) != 2 or not all(isinstance(p, int) and p >= 0 for p in vals):
        raise ValueError(
            f"modulated_conv2d: {name} must be an int >= 0 or a pair of them, got {v!r}"
        )
    return vals


SUPPORTED_FACTORS = (1, 2)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: int = 1,
    down: int = 1,
    padding: int | tuple[int, int] = 0,
    resample_filter: torch.Tensor | None = None,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution. x (N, I, H, W), weight (O, I, kh, kw), styles
    (N, I) -> (N, O, H', W'). Each sample's weight is scaled by its styles along the
    input channels and, with demodulate, every output filter normalised to unit norm;
    then one grouped convolution (groups=N) with `padding`. up/down (1 or 2) resample
    with `resample_filter`: a filter tensor as upfirdn2d takes it, or a list / tuple of
    taps (normalised by setup_filter); [1, 3, 3, 1] when None.

    fused=False computes the same in plain torch the way StyleGAN2 trains: the input
    scaled by the styles, one convolution with the shared weight, the output scaled by
    the demodulation coefficients; no per-sample weights (gk.nn.ModulatedConv2d picks
    the faster of the two per shape)."""
    for name, t, dims in (("x", x, 4), ("weight", weight, 4), ("styles", styles, 2)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() != dims:
            shape = (
                "(N, I, H, W)"
                if name == "x"
                else "(O, I, kh, kw)"
                if name == "weight"
                else "(N, I)"
            )
            raise ValueError(
                f"modulated_conv2d: {name} must be a {dims}-D floating-point {shape} tensor, "
                f"got {_what(t)}"
            )
    N, C_in, H, W = x.shape
    C_out, wI, kh, kw = weight.shape
    if wI != C_in:
        raise ValueError(
            f"modulated_conv2d: weight has {wI} input channels (weight.shape[1]) but x has "
            f"{C_in} (x.shape[1])"
        )
    if tuple(styles.shape) != (N, C_in):
        raise ValueError(
            f"modulated_conv2d: styles must have shape (N, I) = ({N}, {C_in}) for x of shape "
            f"{tuple(x.shape)}, got {tuple(styles.shape)}"
        )
    for name, t in (("weight", weight), ("styles", styles)):
        if t.device != x.device:
            raise ValueError(f"modulated_conv2d: {name} is on {t.device} but x is on {x.device}")
    for name, f in (("up", up), ("down", down)):
        if not isinstance(f, int) or f < 1:
            raise ValueError(f"modulated_conv2d: {name} must be an int >= 1, got {f!r}")
        if f not in SUPPORTED_FACTORS:
            raise ValueError(
                f"modulated_conv2d: {name}={f} is not supported; supported: {SUPPORTED_FACTORS}"
            )
    if up > 1 and down > 1:
        raise ValueError(
            f"modulated_conv2d: up and down cannot both be > 1, got up={up}, down={down}"
        )
    padding = _int_pair("padding", padding)
    if not isinstance(demodulate, bool):
        raise ValueError(f"modulated_conv2d: demodulate must be a bool, got {demodulate!r}")
    if not isinstance(fused, bool):
        raise ValueError(f"modulated_conv2d: fused must be a bool, got {fused!r}")
    if not fused:
        return _modulated_conv2d_unfused(
            x, weight, styles, demodulate, up, down, padding, resample_filter
        )

    w = modconv_weight(weight.to(x.dtype), styles.to(x.dtype), demodulate, EPS)
    w = w.reshape(N * C_out, C_in, kh, kw)
    xg = x.reshape(1, N * C_in, H, W)
    if up == 1 and down == 1:
        y = torch_F.conv2d(xg, w, padding=padding, groups=N)
    else:
        f = _resample_filter(resample_filter, x)
        y = _resampled_conv(xg, w, N, up, down, padding, f)
    return y.reshape(N, C_out, *y.shape[2:])


def _modulated_conv2d_unfused(x, weight, styles, demodulate, up, down, padding, f):
    """The per-sample weights never made: sum_i w[o, i] s[n, i] x[n, i] = conv(x * s)."""
    N, C_in = styles.shape
    weight, styles = weight.to(x.dtype), styles.to(x.dtype)
    x = x * styles.reshape(N, C_in, 1, 1)
    if up == 1 and down == 1:
        y = torch_F.conv2d(x, weight, padding=padding)
    else:
        y = _resampled_conv(x, weight, 1, up, down, padding, _resample_filter(f, x))
    if demodulate:  # dcoef[n, o] = rsqrt(sum_{i,k} (weight[o, i, k] s[n, i])^2 + eps)
        dcoef = torch.rsqrt(styles.square() @ weight.square().sum([2, 3]).t() + EPS)
        y = y * dcoef.reshape(N, -1, 1, 1)
    return y


def _resample_filter(f, x: torch.Tensor) -> torch.Tensor:
    """The FIR filter for up/down: [1, 3, 3, 1] when None, a list / tuple through
    setup_filter (normalised), a tensor as given."""
    if f is None:
        f = (1, 3, 3, 1)
    if not isinstance(f, torch.Tensor):
        f = setup_filter(f)
    return f.to(x.device)


def _resampled_conv(xg, w, groups, up, down, padding, f):
    """StyleGAN2's resampled convolution of the grouped input xg with the (groups * O, I,
    kh, kw) weight w. up=2: a stride-2 transposed convolution, then the filter (gain 4);
    down=2: the filter, then a stride-2 convolution. padding (py, px) is the padding of
    the convolution; the filter's own padding keeps the output at exactly twice / half
    the size of a same-size convolution."""
    fh, fw = (f.shape[0], f.shape[0]) if f.dim() == 1 else tuple(f.shape)
    kh, kw = w.shape[2:]
    py0 = py1 = padding[0]
    px0 = px1 = padding[1]
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
        xg = upfirdn2d(xg, f, padding=(px0, px1, py0, py1))
        return torch_F.conv2d(xg, w, stride=down, groups=groups)
    # The filter's padding after a transposed convolution of size (H - 1) * up + k; the
    # part of it that is a crop on both sides is done by the transposed convolution.
    px0, px1 = px0 + (fw + up - 1) // 2 - (kw - 1), px1 + (fw - up) // 2 - (kw - up)
    py0, py1 = py0 + (fh + up - 1) // 2 - (kh - 1), py1 + (fh - up) // 2 - (kh - up)
    pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
    # conv_transpose2d takes (in, out / groups, kh, kw) per group.
    C_out, C_in = w.shape[0] // groups, w.shape[1]
    wt = w.reshape(groups, C_out, C_in, kh, kw).transpose(1, 2)
    wt = wt.reshape(groups * C_in, C_out, kh, kw)
    y = torch_F.conv_transpose2d(xg, wt, stride=up, padding=(pyt, pxt), groups=groups)
    return upfirdn2d(y, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up * up)
