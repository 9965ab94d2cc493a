"""upfirdn2d: zero-insertion upsampling, padding (or cropping), a 2-D FIR filter and
downsampling in one pass, the resampling op of StyleGAN-style generators and
discriminators; with gradients of every order.

Definition. With x of shape (N, C, H, W), integer factors up = (ux, uy), down = (dx, dy),
padding (px0, px1, py0, py1) (negative values crop) and a filter f of shape (fh, fw):
  1. u = x with ux - 1 zeros after every column and uy - 1 zeros after every row
     (H*uy x W*ux);
  2. p = u padded with px0 zero columns on the left, px1 on the right, py0 rows on top and
     py1 at the bottom (a negative pad removes that many);
  3. z = gain * (p convolved with f): z[i, j] = gain * sum_{a,b} p[i + a, j + b] * g[a, b],
     where g = f flipped in both dims (flip_filter=False, a true convolution, the default)
     or g = f itself (flip_filter=True, a correlation); only positions where f fits
     entirely inside p are kept;
  4. y = z[::dy, ::dx].
  Output size: OW = (W*ux + px0 + px1 - fw) // dx + 1, OH likewise; both must be >= 1.
A 1-D filter f of length k means the separable filter f[:, None] * f[None, :], applied as
two 1-D passes; `gain` is the total gain (sqrt(gain) per dim for a separable filter).

Kernel, one per backend (the gradient is the same kernel):
  upfirdn2d_forward(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain) -> y
Kernel contract: x is contiguous or channels_last (N, C, H, W) of float32, float64,
float16 or bfloat16; f is a contiguous 1-D (separable) or 2-D float32 tensor (float64 for
float64 x) on x's device; flip as flip_filter; the arguments give an output of at least
1 x 1. Arithmetic is float32 (float64 for float64 data). y is channels_last when x is
channels_last and not contiguous, else contiguous.

Gradient. The input gradient of upfirdn2d is upfirdn2d of dy with the same filter flipped
the other way, up and down swapped and the padding
  (fw - px0 - 1, W*ux - OW*dx + px0 - ux + 1, fh - py0 - 1, H*uy - OH*dy + py0 - uy + 1),
which returns exactly H x W. That op is again differentiable the same way, so gradients of
every order work. The filter is a constant: no gradient flows to f.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .. import _backend
from .._checks import finite_number
from ._layout import dense

# ---------------------------------------------------------------------------------------
# Reference kernel (plain torch): the ground truth of every backend, and the baseline of
# the benchmarks. Zero insertion by reshape + pad, padding by F.pad (slicing for negative
# pads), a grouped conv2d with the filter, a strided subsample.


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _out_layout(x: torch.Tensor) -> torch.memory_format:
    """channels_last when x is channels_last and not also contiguous (the kernels' rule)."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def out_size(
    h: int, w: int, fh: int, fw: int, upx, upy, downx, downy, px0, px1, py0, py1
) -> tuple[int, int]:
    """(OH, OW) of upfirdn2d (may be <= 0 for arguments that crop everything)."""
    oh = (h * upy + py0 + py1 - fh) // downy + 1
    ow = (w * upx + px0 + px1 - fw) // downx + 1
    return oh, ow


def reference_upfirdn2d_forward(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain):
    n, c, h, w = x.shape
    acc = _acc_dtype(x.dtype)
    z = x.to(acc)
    if upx > 1 or upy > 1:  # zero insertion: a zero column/row after each sample
        z = z.reshape(n, c, h, 1, w, 1)
        z = F.pad(z, [0, upx - 1, 0, 0, 0, upy - 1])
        z = z.reshape(n, c, h * upy, w * upx)
    z = F.pad(z, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    z = z[:, :, max(-py0, 0) : z.shape[2] - max(-py1, 0), max(-px0, 0) : z.shape[3] - max(-px1, 0)]
    g = f.to(acc)
    if not flip:  # conv2d correlates; flipping the filter makes it a convolution
        g = g.flip(list(range(g.dim())))
    if g.dim() == 2:
        weight = (g * gain).expand(c, 1, *g.shape)
        z = F.conv2d(z, weight, groups=c)
    else:  # separable: a row pass then a column pass; the gain once
        k = g.numel()
        z = F.conv2d(z, (g * gain).expand(c, 1, 1, k), groups=c)
        z = F.conv2d(z, g.reshape(k, 1).expand(c, 1, k, 1), groups=c)
    z = z[:, :, ::downy, ::downx]
    return z.to(x.dtype).contiguous(memory_format=_out_layout(x))


_KERNELS = ("upfirdn2d_forward",)


@functools.cache
def _kernels(backend: str) -> dict:
    return _backend.kernel_table(backend, _KERNELS, globals(), "upfirdn2d")


def _kernel(name: str, device: torch.device):
    return _kernels(_backend.resolve(device))[name]


def _filter_size(f: torch.Tensor) -> tuple[int, int]:
    """(fh, fw); a 1-D filter is square."""
    return (f.shape[0], f.shape[0]) if f.dim() == 1 else (f.shape[0], f.shape[1])


# ---------------------------------------------------------------------------------------
# torch.library op. Its gradient is itself with the transposed arguments (see the module
# docstring), so every order of gradient goes through the same kernel.


@torch.library.custom_op("gankernels::upfirdn2d", mutates_args=())
def upfirdn2d_op(
    x: torch.Tensor,
    f: torch.Tensor,
    upx: int,
    upy: int,
    downx: int,
    downy: int,
    px0: int,
    px1: int,
    py0: int,
    py1: int,
    flip: bool,
    gain: float,
) -> torch.Tensor:
    x = dense(x)
    f = f.to(_acc_dtype(x.dtype)).contiguous()
    return _kernel("upfirdn2d_forward", x.device)(
        x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain
    )


@upfirdn2d_op.register_fake
def _(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain):
    n, c, h, w = x.shape
    fh, fw = _filter_size(f)
    oh, ow = out_size(h, w, fh, fw, upx, upy, downx, downy, px0, px1, py0, py1)
    return torch.empty(
        (n, c, oh, ow), dtype=x.dtype, device=x.device, memory_format=_out_layout(dense(x))
    )


def _setup(ctx, inputs, output):
    x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain = inputs
    fh, fw = _filter_size(f)
    h, w = x.shape[2:]
    oh, ow = output.shape[2:]
    ctx.save_for_backward(f)
    ctx.args = (
        downx,
        downy,
        upx,
        upy,
        fw - px0 - 1,
        w * upx - ow * downx + px0 - upx + 1,
        fh - py0 - 1,
        h * upy - oh * downy + py0 - upy + 1,
        not flip,
        gain,
    )


def _backward(ctx, dy):
    (f,) = ctx.saved_tensors
    dx = upfirdn2d_op(dy, f, *ctx.args) if ctx.needs_input_grad[0] else None
    return (dx,) + (None,) * 11


upfirdn2d_op.register_autograd(_backward, setup_context=_setup)


# ---------------------------------------------------------------------------------------
# Public op and helpers.


def _what(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor of shape {tuple(v.shape)} on {v.device}"
    return f"{v!r}"


def _pair(name: str, v) -> tuple[int, int]:
    """An int or (x, y) pair of ints >= 1."""
    vals = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, list | tuple) else None
    if vals is None or len(vals) != 2 or not all(isinstance(i, int) and i >= 1 for i in vals):
        raise ValueError(f"upfirdn2d: {name} must be an int >= 1 or a pair of them, got {v!r}")
    return vals


def _padding(v) -> tuple[int, int, int, int]:
    """An int, (px, py) or (px0, px1, py0, py1)."""
    vals = (v,) if isinstance(v, int) else tuple(v) if isinstance(v, list | tuple) else ()
    if len(vals) in (1, 2, 4) and all(isinstance(i, int) for i in vals):
        if len(vals) == 1:
            return vals * 4
        if len(vals) == 2:
            return vals[0], vals[0], vals[1], vals[1]
        return vals
    raise ValueError(
        f"upfirdn2d: padding must be an int, (px, py) or (px0, px1, py0, py1) of ints, got {v!r}"
    )


def _check_filter(f, x: torch.Tensor, fn: str = "upfirdn2d") -> torch.Tensor:
    if f is None:
        return torch.ones(1, 1, dtype=torch.float32, device=x.device)
    if not isinstance(f, torch.Tensor) or not f.is_floating_point():
        raise TypeError(f"{fn}: f must be a floating-point tensor, got {_what(f)}")
    if f.dim() not in (1, 2) or f.numel() == 0:
        raise ValueError(
            f"{fn}: f must be a non-empty 1-D (separable) or 2-D filter, got {_what(f)}"
        )
    if f.device != x.device:
        raise ValueError(f"{fn}: f is on {f.device} but x is on {x.device}")
    if f.requires_grad:
        raise ValueError(
            f"{fn}: f must not require grad (the filter is a constant and gets no "
            "gradient); pass f.detach()"
        )
    return f


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up=1,
    down=1,
    padding=0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Upsample x by zero insertion, pad, FIR-filter and downsample, in one pass.

    x: (N, C, H, W); the output keeps its layout (contiguous or channels_last).
    f: a 2-D (fh, fw) filter, a 1-D one meaning f[:, None] * f[None, :] (run separably),
       or None for no filtering. A constant: it must not require grad.
    up, down: int or (ux, uy) / (dx, dy), >= 1.
    padding: int, (px, py) or (px0, px1, py0, py1); negative values crop.
    flip_filter: False (default) convolves with f (the filter is flipped for the
       correlation), True correlates with f.
    gain: scales the output (the whole filter; sqrt(gain) per dim of a separable one).
    Gradients of every order with respect to x.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4:
        raise ValueError(f"upfirdn2d: x must be a 4-D (N, C, H, W) float tensor, got {_what(x)}")
    f = _check_filter(f, x)
    upx, upy = _pair("up", up)
    downx, downy = _pair("down", down)
    px0, px1, py0, py1 = _padding(padding)
    gain = finite_number("upfirdn2d: gain", gain)
    fh, fw = _filter_size(f)
    oh, ow = out_size(x.shape[2], x.shape[3], fh, fw, upx, upy, downx, downy, px0, px1, py0, py1)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"upfirdn2d: padding {padding!r} leaves no output: a {tuple(x.shape[2:])} input "
            f"with up={up!r}, down={down!r} and a {fh}x{fw} filter gives {oh}x{ow}"
        )
    return upfirdn2d_op(x, f, upx, upy, downx, downy, px0, px1, py0, py1, bool(flip_filter), gain)


def setup_filter(
    f,
    device: torch.device | str = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """A filter for upfirdn2d from a list, array or tensor: float32 on `device`.

    None gives [1]. A 1-D filter stays 1-D (separable) when `separable` is True, or by
    default when it has at least 8 taps; otherwise it becomes the 2-D outer product
    f[:, None] * f[None, :]. normalize=True scales it to sum 1 (over both dims for 2-D);
    flip_filter flips it; gain scales it (by sqrt(gain) for a 1-D filter, which is applied
    once per dim)."""
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32).detach()
    if f.dim() == 0:
        f = f.reshape(1)
    if f.dim() not in (1, 2) or f.numel() == 0:
        raise ValueError(f"setup_filter: f must be a non-empty 1-D or 2-D filter, got {_what(f)}")
    if separable is None:
        separable = f.dim() == 1 and f.numel() >= 8
    if separable and f.dim() != 1:
        raise ValueError(f"setup_filter: separable=True needs a 1-D f, got {_what(f)}")
    if f.dim() == 1 and not separable:
        f = f[:, None] * f[None, :]
    if normalize:
        total = f.sum()
        if total == 0:
            raise ValueError("setup_filter: f sums to 0 and cannot be normalised")
        f = f / total
    if flip_filter:
        f = f.flip(list(range(f.dim())))
    f = f * (gain ** (f.dim() / 2))
    return f.to(device)


def _resample_args(fn, x, f, name, factor, padding):
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4:
        raise ValueError(f"{fn}: x must be a 4-D (N, C, H, W) float tensor, got {_what(x)}")
    f = _check_filter(f, x, fn)
    fh, fw = _filter_size(f)
    ok = isinstance(factor, int) or (isinstance(factor, list | tuple) and len(factor) == 2)
    ok = ok and all(
        isinstance(i, int) and i >= 1 for i in ((factor,) if isinstance(factor, int) else factor)
    )
    if not ok:
        raise ValueError(f"{fn}: {name} must be an int >= 1 or a pair of them, got {factor!r}")
    return f, fh, fw, _pair(name, factor), _padding(padding)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1):
    """Upsample by `up` with filter f: output exactly (up*H, up*W) (plus `padding`). The
    gain is multiplied by ux*uy so that a normalised filter keeps the signal's level."""
    f, fh, fw, (upx, upy), (px0, px1, py0, py1) = _resample_args(
        "upsample2d", x, f, "up", up, padding
    )
    pad = (
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    )
    return upfirdn2d(
        x, f, up=(upx, upy), padding=pad, flip_filter=flip_filter, gain=gain * upx * upy
    )


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1):
    """Filter with f and downsample by `down`: output (H // dy, W // dx) (plus `padding`)."""
    f, fh, fw, (dx, dy), (px0, px1, py0, py1) = _resample_args(
        "downsample2d", x, f, "down", down, padding
    )
    pad = (
        px0 + (fw - dx + 1) // 2,
        px1 + (fw - dx) // 2,
        py0 + (fh - dy + 1) // 2,
        py1 + (fh - dy) // 2,
    )
    return upfirdn2d(x, f, down=(dx, dy), padding=pad, flip_filter=flip_filter, gain=gain)


def filter2d(x, f, padding=0, flip_filter=False, gain=1):
    """Filter with f, keeping the size (H, W) (plus `padding`)."""
    f, fh, fw, _, (px0, px1, py0, py1) = _resample_args("filter2d", x, f, "factor", 1, padding)
    pad = (px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2)
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain)
