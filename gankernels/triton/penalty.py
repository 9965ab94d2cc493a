"""Triton kernels of gradient penalties (GAN training).

Layout contract. Every tensor argument `x`, `real`, `fake`, `grad` is contiguous and is
viewed as (B, N): B samples of N elements each, sample b occupying the flat elements
[b*N, (b+1)*N). Per-sample coefficients `coef` / `alpha` are contiguous (B,) tensors of
float32 or float64 on the same device. Supported data dtypes: float32, float64, float16,
bfloat16. Arithmetic and sums are done in float32 (float64 for float64 data); results are
stored in the data dtype, except row_sumsq which returns its accumulation dtype. Flat
offsets are 32-bit when B*N < 2**31 and 64-bit otherwise.

row_sumsq(x, B, N) -> (B,) float32 (float64 for float64 x)
    out[b] = sum_n x[b, n]^2, one pass over x. 1-D grid of B * splits programs; program
    (b, s) reduces columns [s*chunk, (s+1)*chunk) of sample b. With several splits per
    sample, partial sums are combined with atomic adds into a zeroed output (so the
    summation order, hence the last bits, may vary between runs); with one split the sum
    is stored directly. On GPUs the split count aims at about two programs per SM, so
    that a large N with a small batch still spreads over the whole device.

row_scale(x, coef, B, N) -> like x
    out[b, n] = coef[b] * x[b, n]. One elementwise pass.

lerp_rows(real, fake, alpha, B, N) -> like real
    out[b, n] = fake[b, n] + alpha[b] * (real[b, n] - fake[b, n]). One pass.

lerp_rows_backward(grad, alpha, B, N) -> (grad_real, grad_fake), both like grad
    grad_real = alpha[b] * grad; grad_fake = grad - grad_real. One pass writing both.

The elementwise kernels use a 1-D grid of BLOCK-sized chunks of the B*N flat elements,
with the sample index b = offset // N.
"""

from __future__ import annotations

import inspect

import torch
import triton
import triton.language as tl

from . import cdiv, next_pow2, target_programs

_BLOCK_SUMSQ = 1024
_BLOCK_EW = 1024
_INT32_LIMIT = 2**31


# ---------------------------------------------------------------------------------------
# Kernels.


@triton.jit
def _row_sumsq_kernel(
    x_ptr,
    out_ptr,
    N,
    splits,
    chunk,
    BLOCK: tl.constexpr,
    ATOMIC: tl.constexpr,
    WIDE: tl.constexpr,
):
    """out[b] (+)= sum of x[b, n]^2 over the columns of split s; pid = b * splits + s."""
    pid = tl.program_id(0)
    b = pid // splits
    s = pid - b * splits
    acc_ty = out_ptr.dtype.element_ty
    if WIDE:
        base = b.to(tl.int64) * N
    else:
        base = b * N
    lo = s * chunk
    hi = tl.minimum(lo + chunk, N)
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=acc_ty)
    for c0 in range(lo, hi, BLOCK):
        cols = c0 + offs
        xx = tl.load(x_ptr + base + cols, mask=cols < hi, other=0.0).to(acc_ty)
        acc += xx * xx
    total = tl.sum(acc, axis=0)
    if ATOMIC:
        tl.atomic_add(out_ptr + b, total)
    else:
        tl.store(out_ptr + b, total)


@triton.jit
def _row_scale_kernel(
    x_ptr,
    coef_ptr,
    out_ptr,
    N,
    numel,
    BLOCK: tl.constexpr,
    WIDE: tl.constexpr,
    FP64: tl.constexpr,
):
    """out = coef[b] * x over one BLOCK-sized chunk of the flat elements."""
    pid = tl.program_id(0)
    if WIDE:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    b = offs // N
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    c = tl.load(coef_ptr + b, mask=mask, other=0.0).to(ty)
    xx = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ty)
    tl.store(out_ptr + offs, (c * xx).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _lerp_rows_kernel(
    real_ptr,
    fake_ptr,
    alpha_ptr,
    out_ptr,
    N,
    numel,
    BLOCK: tl.constexpr,
    WIDE: tl.constexpr,
    FP64: tl.constexpr,
):
    """out = fake + alpha[b] * (real - fake) over one chunk of the flat elements."""
    pid = tl.program_id(0)
    if WIDE:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    b = offs // N
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    a = tl.load(alpha_ptr + b, mask=mask, other=0.0).to(ty)
    rr = tl.load(real_ptr + offs, mask=mask, other=0.0).to(ty)
    ff = tl.load(fake_ptr + offs, mask=mask, other=0.0).to(ty)
    res = ff + a * (rr - ff)
    tl.store(out_ptr + offs, res.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _lerp_rows_bwd_kernel(
    g_ptr,
    alpha_ptr,
    gr_ptr,
    gf_ptr,
    N,
    numel,
    BLOCK: tl.constexpr,
    WIDE: tl.constexpr,
    FP64: tl.constexpr,
):
    """grad_real = alpha[b] * g; grad_fake = g - grad_real over one chunk."""
    pid = tl.program_id(0)
    if WIDE:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    b = offs // N
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    a = tl.load(alpha_ptr + b, mask=mask, other=0.0).to(ty)
    gg = tl.load(g_ptr + offs, mask=mask, other=0.0).to(ty)
    gr = a * gg
    gf = gg - gr
    tl.store(gr_ptr + offs, gr.to(gr_ptr.dtype.element_ty), mask=mask)
    tl.store(gf_ptr + offs, gf.to(gf_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------
# Launchers.


_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_COEF_DTYPES = (torch.float32, torch.float64)


class _NullCtx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _device_ctx(t: torch.Tensor):
    if t.is_cuda:
        return torch.cuda.device(t.device)
    return _NullCtx()


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_data(name: str, t: torch.Tensor, B: int, N: int, like: torch.Tensor | None = None):
    if t.dtype not in _DTYPES:
        raise TypeError(f"penalty: unsupported dtype {t.dtype} for {name}")
    # The kernels walk the flat storage: any dense layout with the batch outermost works.
    dense = t.is_contiguous() or (
        t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    )
    if not dense or t.numel() != B * N:
        raise ValueError(
            f"penalty: {name} must be contiguous or channels_last with B*N = {B * N} elements"
        )
    if like is not None and (t.dtype != like.dtype or t.device != like.device):
        raise TypeError(f"penalty: {name} must have the dtype and device of the first input")
    if like is not None and t.stride() != like.stride():
        raise ValueError(f"penalty: {name} must have the layout of the first input")


def _check_coef(name: str, c: torch.Tensor, B: int, like: torch.Tensor):
    if c.dtype not in _COEF_DTYPES:
        raise TypeError(f"penalty: {name} must be float32 or float64, got {c.dtype}")
    if c.device != like.device:
        raise TypeError(f"penalty: {name} must be on the data's device")
    if not c.is_contiguous() or c.numel() != B:
        raise ValueError(f"penalty: {name} must be contiguous with B = {B} elements")


def _ew_block(numel: int) -> int:
    return min(_BLOCK_EW, max(16, next_pow2(numel)))


def _sumsq_plan(B: int, N: int, target: int, block: int) -> tuple[int, int]:
    """(splits per sample, columns per split, a multiple of block)."""
    tiles = cdiv(N, block)
    want = max(1, min(tiles, cdiv(target, B)))
    per = cdiv(tiles, want)
    return cdiv(tiles, per), per * block


def row_sumsq(x: torch.Tensor, B: int, N: int) -> torch.Tensor:
    """Per-sample sum of squares of x viewed as (B, N)."""
    return _row_sumsq(x, B, N)


def _row_sumsq(x, B, N, *, splits=None, block=None):
    """row_sumsq with optional overrides of the launch plan (used by tests)."""
    B, N = int(B), int(N)
    _check_data("x", x, B, N)
    acc = _acc_dtype(x.dtype)
    if B == 0 or N == 0:
        return torch.zeros(B, dtype=acc, device=x.device)
    block = block or min(_BLOCK_SUMSQ, max(16, next_pow2(N)))
    if splits is None:
        splits, chunk = _sumsq_plan(B, N, target_programs(x.device, 16), block)
    else:
        per = cdiv(cdiv(N, block), max(1, int(splits)))
        chunk = per * block
        splits = cdiv(N, chunk)
    atomic = splits > 1
    out = (torch.zeros if atomic else torch.empty)(B, dtype=acc, device=x.device)
    with _device_ctx(x):
        _row_sumsq_kernel[(B * splits,)](
            x, out, N, splits, chunk,
            BLOCK=block, ATOMIC=atomic, WIDE=B * N >= _INT32_LIMIT,
            num_warps=max(1, min(4, block // 256)),
        )  # fmt: skip
    return out


def row_scale(x: torch.Tensor, coef: torch.Tensor, B: int, N: int) -> torch.Tensor:
    """out[b, n] = coef[b] * x[b, n], laid out like x."""
    B, N = int(B), int(N)
    _check_data("x", x, B, N)
    _check_coef("coef", coef, B, x)
    out = torch.empty_like(x)
    numel = B * N
    if numel == 0:
        return out
    block = _ew_block(numel)
    with _device_ctx(x):
        _row_scale_kernel[(cdiv(numel, block),)](
            x, coef, out, N, numel,
            BLOCK=block, WIDE=numel >= _INT32_LIMIT, FP64=x.dtype == torch.float64,
            num_warps=max(1, min(4, block // 256)),
        )  # fmt: skip
    return out


def lerp_rows(
    real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor, B: int, N: int
) -> torch.Tensor:
    """out = fake + alpha[b] * (real - fake), laid out like real."""
    B, N = int(B), int(N)
    _check_data("real", real, B, N)
    _check_data("fake", fake, B, N, like=real)
    _check_coef("alpha", alpha, B, real)
    out = torch.empty_like(real)
    numel = B * N
    if numel == 0:
        return out
    block = _ew_block(numel)
    with _device_ctx(real):
        _lerp_rows_kernel[(cdiv(numel, block),)](
            real, fake, alpha, out, N, numel,
            BLOCK=block, WIDE=numel >= _INT32_LIMIT, FP64=real.dtype == torch.float64,
            num_warps=max(1, min(4, block // 256)),
        )  # fmt: skip
    return out


def lerp_rows_backward(
    grad: torch.Tensor, alpha: torch.Tensor, B: int, N: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_real, grad_fake) = (alpha[b] * grad, grad - alpha[b] * grad)."""
    B, N = int(B), int(N)
    _check_data("grad", grad, B, N)
    _check_coef("alpha", alpha, B, grad)
    grad_real = torch.empty_like(grad)
    grad_fake = torch.empty_like(grad)
    numel = B * N
    if numel == 0:
        return grad_real, grad_fake
    block = _ew_block(numel)
    with _device_ctx(grad):
        _lerp_rows_bwd_kernel[(cdiv(numel, block),)](
            grad, alpha, grad_real, grad_fake, N, numel,
            BLOCK=block, WIDE=numel >= _INT32_LIMIT, FP64=grad.dtype == torch.float64,
            num_warps=max(1, min(4, block // 256)),
        )  # fmt: skip
    return grad_real, grad_fake


# ---------------------------------------------------------------------------------------
# Ahead-of-time compile specs: (kernel, signature, constexprs) for every kernel above.


_COEF_PTRS = ("coef_ptr", "alpha_ptr")


def _aot_spec(kernel, dtype, coef, constexprs, **types):
    """(kernel, signature, constexprs): data pointers of `dtype`, coefficient pointers of
    `coef`, `out_ptr` of row_sumsq its accumulation type, other arguments i32."""
    signature = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in types:
            signature[name] = types[name]
        elif name.endswith("_ptr"):
            signature[name] = "*" + (coef if name in _COEF_PTRS else dtype)
        else:
            signature[name] = "i32"
    return kernel, signature, dict(constexprs)


def _aot_specs():
    specs = []
    for dt in ("fp32", "fp64", "fp16", "bf16"):
        fp64 = dt == "fp64"
        acc = "*fp64" if fp64 else "*fp32"
        for atomic in (True, False):
            specs.append(
                _aot_spec(
                    _row_sumsq_kernel,
                    dt,
                    "fp32",
                    dict(BLOCK=1024, ATOMIC=atomic, WIDE=not atomic),
                    out_ptr=acc,
                )
            )
        for coef, wide in (("fp32", False), ("fp64", True)):
            flags = dict(BLOCK=1024, WIDE=wide, FP64=fp64)
            numel = "i64" if wide else "i32"
            specs += [
                _aot_spec(_row_scale_kernel, dt, coef, flags, numel=numel),
                _aot_spec(_lerp_rows_kernel, dt, coef, flags, numel=numel),
                _aot_spec(_lerp_rows_bwd_kernel, dt, coef, flags, numel=numel),
            ]
    return specs


AOT_SPECS = _aot_specs()
