"""Triton kernels of the modulated convolution's weight preparation (contract:
gankernels.ops.modulated_conv2d).

weight (O, I, kh, kw), styles (N, I) and dw (N, O, I, kh, kw) are contiguous tensors of
one dtype; ROW = I * K elements per filter (K = kh * kw). Arithmetic is float32 (float64
for float64 data).

modconv_weight(weight, styles, demodulate, eps) -> (N, O, I, kh, kw)
    One program per (n, o) filter: the sum of squares of weight * style over the row,
    then the scaled row (dcoef = 1 without demodulation).
modconv_weight_grad(dw, weight, styles, demodulate, eps) -> (dweight, dstyles)
    With g = dcoef * dw - c * weight * style, c = dcoef^3 * sum(dw * weight * style):
    _modconv_coef_kernel, per (n, o): dcoef and c (only with demodulation; else 1 and 0);
    _modconv_dweight_kernel, per (o, chunk of the row): sum over n of g * style;
    _modconv_dstyles_kernel, per (n, block of channels): sum over o and k of g * weight.
eps travels as the int64 bit pattern of its float64 value (a float argument would be
passed as fp32).
"""

from __future__ import annotations

import contextlib
import inspect
import struct

import torch
import triton
import triton.language as tl

from . import cdiv, next_pow2

_BLOCK = 1024
_BLOCK_I = 32
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@triton.jit
def _modconv_weight_kernel(
    w_ptr,
    s_ptr,
    out_ptr,
    C_out,
    C_in,
    K,
    eps_bits,
    DEMOD: tl.constexpr,
    BLOCK: tl.constexpr,
    FP64: tl.constexpr,
):
    r = tl.program_id(0)  # r = n * O + o
    n = r // C_out
    o = r % C_out
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    row = C_in * K
    offs = tl.arange(0, BLOCK)
    dcoef = 1.0
    if DEMOD:
        sumsq = tl.zeros([BLOCK], dtype=ty)
        for j0 in range(0, row, BLOCK):
            j = j0 + offs
            mask = j < row
            w = tl.load(w_ptr + o * row + j, mask=mask, other=0.0).to(ty)
            s = tl.load(s_ptr + n * C_in + j // K, mask=mask, other=0.0).to(ty)
            a = w * s
            sumsq += a * a
        eps = eps_bits.to(tl.int64).to(tl.float64, bitcast=True).to(ty)
        dcoef = 1.0 / tl.sqrt(tl.sum(sumsq, axis=0) + eps)
    for j0 in range(0, row, BLOCK):
        j = j0 + offs
        mask = j < row
        w = tl.load(w_ptr + o * row + j, mask=mask, other=0.0).to(ty)
        s = tl.load(s_ptr + n * C_in + j // K, mask=mask, other=0.0).to(ty)
        out = w * (s * dcoef)
        tl.store(out_ptr + r.to(tl.int64) * row + j, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _modconv_coef_kernel(
    dw_ptr,
    w_ptr,
    s_ptr,
    dcoef_ptr,
    c_ptr,
    C_out,
    C_in,
    K,
    eps_bits,
    BLOCK: tl.constexpr,
    FP64: tl.constexpr,
):
    r = tl.program_id(0)
    n = r // C_out
    o = r % C_out
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    row = C_in * K
    offs = tl.arange(0, BLOCK)
    sumsq = tl.zeros([BLOCK], dtype=ty)
    dot = tl.zeros([BLOCK], dtype=ty)
    for j0 in range(0, row, BLOCK):
        j = j0 + offs
        mask = j < row
        w = tl.load(w_ptr + o * row + j, mask=mask, other=0.0).to(ty)
        s = tl.load(s_ptr + n * C_in + j // K, mask=mask, other=0.0).to(ty)
        g = tl.load(dw_ptr + r.to(tl.int64) * row + j, mask=mask, other=0.0).to(ty)
        a = w * s
        sumsq += a * a
        dot += g * a
    eps = eps_bits.to(tl.int64).to(tl.float64, bitcast=True).to(ty)
    dcoef = 1.0 / tl.sqrt(tl.sum(sumsq, axis=0) + eps)
    tl.store(dcoef_ptr + r, dcoef)
    tl.store(c_ptr + r, dcoef * dcoef * dcoef * tl.sum(dot, axis=0))


@triton.jit
def _modconv_dweight_kernel(
    dw_ptr,
    w_ptr,
    s_ptr,
    dcoef_ptr,
    c_ptr,
    dweight_ptr,
    N,
    C_out,
    C_in,
    K,
    BLOCK: tl.constexpr,
    FP64: tl.constexpr,
):
    o = tl.program_id(0)
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    row = C_in * K
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = j < row
    i = j // K
    w = tl.load(w_ptr + o * row + j, mask=mask, other=0.0).to(ty)
    acc = tl.zeros([BLOCK], dtype=ty)
    for n in range(0, N):
        r = n * C_out + o
        dc = tl.load(dcoef_ptr + r)
        c = tl.load(c_ptr + r)
        s = tl.load(s_ptr + n * C_in + i, mask=mask, other=0.0).to(ty)
        g = tl.load(dw_ptr + r.to(tl.int64) * row + j, mask=mask, other=0.0).to(ty)
        acc += s * (dc * g - c * s * w)
    tl.store(dweight_ptr + o * row + j, acc.to(dweight_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _modconv_dstyles_kernel(
    dw_ptr,
    w_ptr,
    s_ptr,
    dcoef_ptr,
    c_ptr,
    dstyles_ptr,
    C_out,
    C_in,
    K,
    BLOCK_I: tl.constexpr,
    KP: tl.constexpr,
    FP64: tl.constexpr,
):
    n = tl.program_id(0)
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    row = C_in * K
    i = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    k = tl.arange(0, KP)
    mask_i = i < C_in
    mask = mask_i[:, None] & (k[None, :] < K)
    s = tl.load(s_ptr + n * C_in + i, mask=mask_i, other=0.0).to(ty)
    offs = i[:, None] * K + k[None, :]
    total = tl.zeros([BLOCK_I], dtype=ty)
    for o in range(0, C_out):
        r = n * C_out + o
        dc = tl.load(dcoef_ptr + r)
        c = tl.load(c_ptr + r)
        w = tl.load(w_ptr + o * row + offs, mask=mask, other=0.0).to(ty)
        g = tl.load(dw_ptr + r.to(tl.int64) * row + offs, mask=mask, other=0.0).to(ty)
        total += dc * tl.sum(w * g, axis=1) - c * s * tl.sum(w * w, axis=1)
    tl.store(dstyles_ptr + n * C_in + i, total.to(dstyles_ptr.dtype.element_ty), mask=mask_i)


# ---------------------------------------------------------------------------------------
# Launchers.


def _bits(v: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(v)))[0]


def _device_ctx(t: torch.Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _check(weight, styles, dw=None):
    if weight.dtype not in _DTYPES:
        raise TypeError(f"modconv_weight: unsupported dtype {weight.dtype}")
    if weight.dim() != 4 or not weight.is_contiguous():
        raise ValueError("modconv_weight: weight must be a contiguous (O, I, kh, kw) tensor")
    C_out, C_in, kh, kw = weight.shape
    if styles.dim() != 2 or styles.shape[1] != C_in or not styles.is_contiguous():
        raise ValueError(f"modconv_weight: styles must be a contiguous (N, {C_in}) tensor")
    if styles.dtype != weight.dtype or styles.device != weight.device:
        raise TypeError("modconv_weight: styles must have weight's dtype and device")
    N = styles.shape[0]
    if dw is not None:
        if (
            dw.shape != (N, C_out, C_in, kh, kw)
            or not dw.is_contiguous()
            or dw.dtype != weight.dtype
        ):
            raise ValueError(
                f"modconv_weight: dw must be a contiguous {(N, C_out, C_in, kh, kw)} tensor "
                "of weight's dtype"
            )
    return N, C_out, C_in, kh * kw


def _acc(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def modconv_weight(weight, styles, demodulate, eps):
    N, C_out, C_in, K = _check(weight, styles)
    out = weight.new_empty(N, *weight.shape)
    if out.numel() == 0:
        return out
    block = min(_BLOCK, max(16, next_pow2(C_in * K)))
    with _device_ctx(weight):
        _modconv_weight_kernel[(N * C_out,)](
            weight, styles, out, C_out, C_in, K, _bits(eps),
            DEMOD=bool(demodulate), BLOCK=block, FP64=weight.dtype == torch.float64,
        )  # fmt: skip
    return out


def modconv_weight_grad(dw, weight, styles, demodulate, eps):
    N, C_out, C_in, K = _check(weight, styles, dw)
    dweight, dstyles = torch.empty_like(weight), torch.empty_like(styles)
    if dweight.numel() == 0 or dstyles.numel() == 0:
        return dweight.zero_(), dstyles.zero_()
    fp64 = weight.dtype == torch.float64
    block = min(_BLOCK, max(16, next_pow2(C_in * K)))
    with _device_ctx(weight):
        if demodulate:
            dcoef = torch.empty(N, C_out, dtype=_acc(weight), device=weight.device)
            c = torch.empty_like(dcoef)
            _modconv_coef_kernel[(N * C_out,)](
                dw, weight, styles, dcoef, c, C_out, C_in, K, _bits(eps), BLOCK=block, FP64=fp64
            )
        else:
            dcoef = torch.ones(N, C_out, dtype=_acc(weight), device=weight.device)
            c = torch.zeros_like(dcoef)
        _modconv_dweight_kernel[(C_out, cdiv(C_in * K, block))](
            dw, weight, styles, dcoef, c, dweight, N, C_out, C_in, K, BLOCK=block, FP64=fp64
        )
        block_i = min(_BLOCK_I, next_pow2(C_in))
        _modconv_dstyles_kernel[(N, cdiv(C_in, block_i))](
            dw, weight, styles, dcoef, c, dstyles, C_out, C_in, K,
            BLOCK_I=block_i, KP=next_pow2(K), FP64=fp64,
        )  # fmt: skip
    return dweight, dstyles


# ---------------------------------------------------------------------------------------
# Ahead-of-time compile specs.

_ACC_PTRS = ("dcoef_ptr", "c_ptr")


def _spec(kernel, dtype, **constexprs):
    constexprs.setdefault("FP64", dtype == "fp64")
    acc = "fp64" if dtype == "fp64" else "fp32"
    signature = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in _ACC_PTRS:
            signature[name] = "*" + acc
        elif name.endswith("_ptr"):
            signature[name] = "*" + dtype
        else:
            signature[name] = "i64" if name == "eps_bits" else "i32"
    return kernel, signature, constexprs


AOT_SPECS = [
    spec
    for dtype in ("fp32", "fp16", "bf16", "fp64")
    for spec in (
        _spec(_modconv_weight_kernel, dtype, DEMOD=True, BLOCK=_BLOCK),
        _spec(_modconv_weight_kernel, dtype, DEMOD=False, BLOCK=_BLOCK),
        _spec(_modconv_coef_kernel, dtype, BLOCK=_BLOCK),
        _spec(_modconv_dweight_kernel, dtype, BLOCK=_BLOCK),
        _spec(_modconv_dstyles_kernel, dtype, BLOCK_I=_BLOCK_I, KP=16),
    )
]
