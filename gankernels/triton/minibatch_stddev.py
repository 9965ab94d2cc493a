"""Triton kernels of minibatch_stddev (contract: gankernels.ops.minibatch_stddev).

x is a contiguous (N, C, H, W) tensor, N = G * M, C = F * c; the G samples of slot m are
n = g * M + m. One program per (slot m, channel group f) row of ROW = c * H * W elements
per sample, walked in BLOCK-sized chunks; the G group members of a chunk are loaded as a
(GP, BLOCK) tile (GP = next power of two >= G, masked), so the group mean and variance
are tile reductions. Arithmetic is float32 (float64 for float64 data).

minibatch_stddev_stats(x, G, F) -> (M, F), x's dtype
minibatch_stddev_stats_grad(ds, x, G, F) -> dx, contiguous like x
"""

from __future__ import annotations

import contextlib
import inspect

import torch
import triton
import triton.language as tl

from ..ops.minibatch_stddev import EPS
from . import next_pow2

_BLOCK = 256
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_EPS = tl.constexpr(EPS)


@triton.jit
def _mbstd_stats_kernel(
    x_ptr, s_ptr, M, F, ROW, G, GP: tl.constexpr, BLOCK: tl.constexpr, FP64: tl.constexpr
):
    r = tl.program_id(0)  # r = m * F + f
    m = r // F
    f = r % F
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    g = tl.arange(0, GP)[:, None]
    j = tl.arange(0, BLOCK)[None, :]
    base = (g * M + m).to(tl.int64) * F * ROW + f * ROW
    total = tl.zeros([BLOCK], dtype=ty)
    for j0 in range(0, ROW, BLOCK):
        mask = (g < G) & (j0 + j < ROW)
        v = tl.load(x_ptr + base + j0 + j, mask=mask, other=0.0).to(ty)
        mean = tl.sum(v, axis=0) / G
        d = tl.where(mask, v - mean[None, :], 0.0)
        sd = tl.sqrt(tl.sum(d * d, axis=0) / G + _EPS)
        total += tl.where(j0 + tl.arange(0, BLOCK) < ROW, sd, 0.0)
    tl.store(s_ptr + r, (tl.sum(total, axis=0) / ROW).to(s_ptr.dtype.element_ty))


@triton.jit
def _mbstd_grad_kernel(
    ds_ptr,
    x_ptr,
    dx_ptr,
    M,
    F,
    ROW,
    G,
    GP: tl.constexpr,
    BLOCK: tl.constexpr,
    FP64: tl.constexpr,
):
    r = tl.program_id(0)
    m = r // F
    f = r % F
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    scale = tl.load(ds_ptr + r).to(ty) / (ROW * G)
    g = tl.arange(0, GP)[:, None]
    j = tl.arange(0, BLOCK)[None, :]
    base = (g * M + m).to(tl.int64) * F * ROW + f * ROW
    for j0 in range(0, ROW, BLOCK):
        mask = (g < G) & (j0 + j < ROW)
        v = tl.load(x_ptr + base + j0 + j, mask=mask, other=0.0).to(ty)
        mean = tl.sum(v, axis=0) / G
        d = tl.where(mask, v - mean[None, :], 0.0)
        sd = tl.sqrt(tl.sum(d * d, axis=0) / G + _EPS)
        out = scale * d / sd[None, :]
        tl.store(dx_ptr + base + j0 + j, out.to(dx_ptr.dtype.element_ty), mask=mask)


def _device_ctx(t: torch.Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _check(x: torch.Tensor, G: int, F: int):
    if x.dtype not in _DTYPES:
        raise TypeError(f"minibatch_stddev: unsupported dtype {x.dtype}")
    if x.dim() != 4 or not x.is_contiguous():
        raise ValueError("minibatch_stddev: x must be a contiguous (N, C, H, W) tensor")
    N, C, H, W = x.shape
    if G < 1 or N == 0 or N % G or F < 1 or C % F:
        raise ValueError(f"minibatch_stddev: N={N} % G={G} and C={C} % F={F} must be 0")
    return N // G, C // F * H * W


def _meta(G: int, row: int, dtype: torch.dtype) -> dict:
    return dict(
        GP=next_pow2(G), BLOCK=min(_BLOCK, max(16, next_pow2(row))), FP64=dtype == torch.float64
    )


def minibatch_stddev_stats(x, G, F):
    G, F = int(G), int(F)
    M, row = _check(x, G, F)
    s = x.new_empty(M, F)
    with _device_ctx(x):
        _mbstd_stats_kernel[(M * F,)](x, s, M, F, row, G, **_meta(G, row, x.dtype))
    return s


def minibatch_stddev_stats_grad(ds, x, G, F):
    G, F = int(G), int(F)
    M, row = _check(x, G, F)
    if ds.shape != (M, F) or not ds.is_contiguous() or ds.dtype != x.dtype:
        raise ValueError(
            f"minibatch_stddev: ds must be a contiguous ({M}, {F}) tensor of x's dtype"
        )
    dx = torch.empty_like(x)
    with _device_ctx(x):
        _mbstd_grad_kernel[(M * F,)](ds, x, dx, M, F, row, G, **_meta(G, row, x.dtype))
    return dx


def _spec(kernel, dtype, G):
    names = ("ds_ptr", "x_ptr", "s_ptr", "dx_ptr")
    constexprs = dict(GP=next_pow2(G), BLOCK=_BLOCK, FP64=dtype == "fp64")
    signature = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in names:
            signature[name] = "*" + dtype
        else:
            signature[name] = "i32"
    return kernel, signature, constexprs


AOT_SPECS = [
    _spec(k, dtype, G)
    for k in (_mbstd_stats_kernel, _mbstd_grad_kernel)
    for dtype, G in (("fp32", 4), ("fp16", 4), ("bf16", 2), ("fp64", 3))
]
