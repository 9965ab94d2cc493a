"""Triton kernel of upfirdn2d: upsample, pad, FIR filter and downsample in one pass.

Contract (that of gankernels.ops.upfirdn2d): x is a contiguous or channels_last
(N, C, H, W) tensor of float32, float64, float16 or bfloat16; f a contiguous 1-D
(separable) or 2-D filter of the accumulation dtype (float32; float64 for float64 x);
flip=False convolves with f, flip=True correlates. The output is channels_last when x is
channels_last and not contiguous, else contiguous.

upfirdn2d_forward(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain) -> y

The kernel is direct: each program computes BLOCK outputs (flat over N, C, OH, OW) and
loops over the TY x TX filter taps (TY = ceil(fh / uy), TX = ceil(fw / ux)) that can land
on real input samples; the first such input index is ceil((o * down - pad0) / up), and
the tap that meets input i is i * up - o * down + pad0 (masked when it is past the filter
or i is outside the image). The filter is oriented for correlation and scaled by the gain
on the host (for a separable one, the row filter carries the gain).
"""

from __future__ import annotations

import contextlib
import inspect

import torch
import triton
import triton.language as tl

from . import cdiv

_BLOCK = 256
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@triton.jit
def _upfirdn2d_kernel(
    x_ptr, fx_ptr, fy_ptr, y_ptr,
    C, H, W, OH, OW, numel,
    sxn, sxc, sxh, sxw, syn, syc, syh, syw,
    upx, upy, downx, downy, px0, py0, fh, fw, biasx, biasy,
    TX: tl.constexpr, TY: tl.constexpr, SEPARABLE: tl.constexpr, FP64: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = offs < numel
    ox = offs % OW
    rest = offs // OW
    oy = rest % OH
    rest = rest // OH
    c = rest % C
    n = rest // C
    # First real input index: ceil((o * down - pad0) / up), kept non-negative before the
    # division by adding bias * up (bias chosen on the host so the numerator is >= 0).
    ix0 = (ox * downx - px0 + upx - 1 + biasx * upx) // upx - biasx
    iy0 = (oy * downy - py0 + upy - 1 + biasy * upy) // upy - biasy
    acc_ty = tl.float64 if FP64 else tl.float32
    acc = tl.zeros([BLOCK], dtype=acc_ty)
    x_base = x_ptr + n * sxn + c * sxc
    for ty in tl.static_range(TY):
        iy = iy0 + ty
        a = iy * upy - oy * downy + py0  # filter row (correlation orientation)
        ok_y = mask & (a < fh) & (iy >= 0) & (iy < H)
        for tx in tl.static_range(TX):
            ix = ix0 + tx
            b = ix * upx - ox * downx + px0
            ok = ok_y & (b < fw) & (ix >= 0) & (ix < W)
            if SEPARABLE:
                wgt = tl.load(fx_ptr + b, mask=ok, other=0.0) * tl.load(
                    fy_ptr + a, mask=ok, other=0.0
                )
            else:
                wgt = tl.load(fx_ptr + a * fw + b, mask=ok, other=0.0)
            v = tl.load(x_base + iy * sxh + ix * sxw, mask=ok, other=0.0)
            acc += v.to(acc_ty) * wgt.to(acc_ty)
    out = y_ptr + n * syn + c * syc + oy * syh + ox * syw
    tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=mask)


def _device_ctx(t: torch.Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def upfirdn2d_forward(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain):
    """upfirdn2d of x with filter f (see the module docstring)."""
    if x.dtype not in _DTYPES or x.dim() != 4:
        raise TypeError(f"upfirdn2d: x must be a 4-D float tensor, got {x.dtype} {tuple(x.shape)}")
    contiguous = x.is_contiguous()
    channels_last = not contiguous and x.is_contiguous(memory_format=torch.channels_last)
    if not (contiguous or channels_last):
        raise ValueError("upfirdn2d: x must be contiguous or channels_last")
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    if f.dtype != acc or f.device != x.device or f.dim() not in (1, 2) or f.numel() == 0:
        raise TypeError(f"upfirdn2d: f must be a non-empty 1-D or 2-D {acc} tensor on x's device")
    upx, upy, downx, downy = int(upx), int(upy), int(downx), int(downy)
    px0, px1, py0, py1 = int(px0), int(px1), int(py0), int(py1)
    n, c, h, w = x.shape
    separable = f.dim() == 1
    fh, fw = (f.shape[0], f.shape[0]) if separable else tuple(f.shape)
    oh = (h * upy + py0 + py1 - fh) // downy + 1
    ow = (w * upx + px0 + px1 - fw) // downx + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"upfirdn2d: the padding leaves no output ({oh}x{ow})")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    y = torch.empty((n, c, oh, ow), dtype=x.dtype, device=x.device, memory_format=fmt)
    numel = y.numel()
    if numel == 0:
        return y
    g = f if flip else f.flip(list(range(f.dim())))  # correlation orientation
    fx = (g * gain).contiguous()
    fy = g.contiguous() if separable else fx
    tx, ty = cdiv(fw, upx), cdiv(fh, upy)
    with _device_ctx(x):
        _upfirdn2d_kernel[(cdiv(numel, _BLOCK),)](
            x, fx, fy, y, c, h, w, oh, ow, numel, *x.stride(), *y.stride(),
            upx, upy, downx, downy, px0, py0, fh, fw,
            max(0, cdiv(px0, upx)) + 1, max(0, cdiv(py0, upy)) + 1,
            TX=tx, TY=ty, SEPARABLE=separable, FP64=x.dtype == torch.float64, BLOCK=_BLOCK,
        )  # fmt: skip
    return y


# ---------------------------------------------------------------------------------------
# Ahead-of-time compile specs: (kernel, signature, constexprs).


def _spec(dtype, tx, ty, separable):
    acc = "fp64" if dtype == "fp64" else "fp32"
    constexprs = dict(TX=tx, TY=ty, SEPARABLE=separable, FP64=dtype == "fp64", BLOCK=_BLOCK)
    signature = {}
    for name in inspect.signature(_upfirdn2d_kernel.fn).parameters:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in ("x_ptr", "y_ptr"):
            signature[name] = "*" + dtype
        elif name in ("fx_ptr", "fy_ptr"):
            signature[name] = "*" + acc
        else:
            signature[name] = "i32"
    signature["numel"] = "i64"
    return _upfirdn2d_kernel, signature, constexprs


# 2x up / 2x down with a 4-tap separable filter (StyleGAN2), a 2-D one, other dtypes.
AOT_SPECS = [
    _spec("fp32", 2, 2, True),
    _spec("fp32", 4, 4, True),
    _spec("fp32", 3, 3, False),
    _spec("fp16", 2, 2, True),
    _spec("bf16", 4, 4, True),
    _spec("fp64", 2, 2, False),
]
