"""Triton kernels of norm_act: instance / batch normalisation, affine and activation, and
the fused backward.

Layout contract (that of gankernels.ops.norm_act). x is (N, C, *spatial) or (N, C), dense
with the batch outermost: channels first (memory N, C, S) or channels last (memory N, S, C);
dy has x's strides. Element j of group g: per_sample (instance norm) g = n * C + c over the
S elements of plane (n, c); otherwise g = c over the N * S elements of channel c. mean,
var, rstd are contiguous (G,) tensors of the accumulation type (float32, float64 for
float64 data); weight and bias are None or contiguous (C,) tensors of that type.
Activation codes are those of gankernels.ops.bias_act.ACTIVATIONS; alpha travels as the
int64 bit pattern of its float64 value.

norm_act_stats(x, per_sample) -> (mean, var)
    One program per group, two passes over the group (sum; squared deviations).
norm_act_forward(x, mean, rstd, weight, bias, per_sample, act, alpha) -> like x
    One elementwise pass over BLOCK-sized chunks of the flat elements.
norm_act_backward(dy, x, mean, rstd, weight, bias, per_sample, act, alpha, batch_stats)
    -> (dx, sum_g, sum_gxhat): a per-group reduction (one program per group), then one
    elementwise pass for dx.
"""

from __future__ import annotations

import inspect

import torch
import triton
import triton.language as tl

from . import cdiv, next_pow2
from .bias_act import _act, _bits, _device_ctx, _expm1, _scalar, _sigmoid

_BLOCK = 1024
_RBLOCK = 1024
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_SELU_SCALE = tl.constexpr(1.0507009873554804934193349852946)

AOT_HELPERS = ["_offsets", "_act_grad"]


@triton.jit
def _offsets(g, j, C, S, PER_SAMPLE: tl.constexpr, CHANNELS_LAST: tl.constexpr):
    """Memory offsets of elements j of group g."""
    if PER_SAMPLE:
        n = g // C
        c = g % C
        s = j
    else:
        n = j // S
        c = g
        s = j % S
    if CHANNELS_LAST:
        off = (n * S + s) * C + c
    else:
        off = (n * C + c) * S + s
    return off


@triton.jit
def _act_grad(z, alpha, ACT: tl.constexpr, FP64: tl.constexpr):
    """act'(z)."""
    if ACT == 0:
        d = tl.zeros_like(z) + 1.0
    elif ACT == 1:
        d = tl.where(z > 0, 1.0, 0.0)
    elif ACT == 2:
        d = tl.where(z > 0, 1.0, alpha)
    elif ACT == 3:
        t = _act(z, alpha, 3, FP64)
        d = 1.0 - t * t
    elif ACT == 4:
        s = _sigmoid(z)
        d = s * (1.0 - s)
    elif ACT == 5:
        d = tl.where(z > 0, 1.0, alpha * (_expm1(tl.minimum(z, 0.0), FP64) + 1.0))
    elif ACT == 6:
        e = alpha * (_expm1(tl.minimum(z, 0.0), FP64) + 1.0)
        d = _SELU_SCALE * tl.where(z > 0, 1.0, e)
    elif ACT == 7:
        d = _sigmoid(z)
    else:
        s = _sigmoid(z)
        d = s + z * s * (1.0 - s)
    return d


@triton.jit
def _stats_kernel(
    x_ptr,
    mean_ptr,
    var_ptr,
    C,
    S,
    M,
    PER_SAMPLE: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    BLOCK: tl.constexpr,
    FP64: tl.constexpr,
):
    """Mean and biased variance of group program_id(0): two passes over its M elements."""
    g = tl.program_id(0).to(tl.int64)
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    acc = tl.zeros([BLOCK], dtype=ty)
    for j0 in range(0, M, BLOCK):
        j = j0 + tl.arange(0, BLOCK)
        mask = j < M
        off = _offsets(g, j, C, S, PER_SAMPLE, CHANNELS_LAST)
        acc += tl.load(x_ptr + off, mask=mask, other=0.0).to(ty)
    mean = tl.sum(acc, axis=0) / M
    acc = tl.zeros([BLOCK], dtype=ty)
    for j0 in range(0, M, BLOCK):
        j = j0 + tl.arange(0, BLOCK)
        mask = j < M
        off = _offsets(g, j, C, S, PER_SAMPLE, CHANNELS_LAST)
        d = tl.load(x_ptr + off, mask=mask, other=0.0).to(ty) - mean
        acc += tl.where(mask, d * d, 0.0)
    tl.store(mean_ptr + g, mean)
    tl.store(var_ptr + g, tl.sum(acc, axis=0) / M)


@triton.jit(do_not_specialize=["alpha_bits"])
def _forward_kernel(
    x_ptr,
    mean_ptr,
    rstd_ptr,
    w_ptr,
    b_ptr,
    y_ptr,
    C,
    S,
    numel,
    alpha_bits,
    ACT: tl.constexpr,
    PER_SAMPLE: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK: tl.constexpr,
    FP64: tl.constexpr,
):
    """y = act((x - mean) * rstd * w + b) over one BLOCK-sized chunk of the flat elements."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < numel
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    if CHANNELS_LAST:
        c = i % C
        n = i // (S * C)
    else:
        c = (i // S) % C
        n = i // (S * C)
    if PER_SAMPLE:
        g = n * C + c
    else:
        g = c
    m = tl.load(mean_ptr + g, mask=mask, other=0.0)
    scale = tl.load(rstd_ptr + g, mask=mask, other=1.0)
    if HAS_WEIGHT:
        scale *= tl.load(w_ptr + c, mask=mask, other=1.0)
    z = (tl.load(x_ptr + i, mask=mask, other=0.0).to(ty) - m) * scale
    if HAS_BIAS:
        z += tl.load(b_ptr + c, mask=mask, other=0.0)
    y = _act(z, _scalar(alpha_bits, FP64), ACT, FP64)
    tl.store(y_ptr + i, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["alpha_bits"])
def _backward_reduce_kernel(
    dy_ptr,
    x_ptr,
    mean_ptr,
    rstd_ptr,
    w_ptr,
    b_ptr,
    sum_g_ptr,
    sum_gx_ptr,
    C,
    S,
    M,
    alpha_bits,
    ACT: tl.constexpr,
    PER_SAMPLE: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK: tl.constexpr,
    FP64: tl.constexpr,
):
    """Sums of g = dy * act'(z) and of g * xhat over group program_id(0)."""
    g = tl.program_id(0).to(tl.int64)
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    if PER_SAMPLE:
        c = g % C
    else:
        c = g
    m = tl.load(mean_ptr + g)
    r = tl.load(rstd_ptr + g)
    w = 1.0
    if HAS_WEIGHT:
        w = tl.load(w_ptr + c)
    b = 0.0
    if HAS_BIAS:
        b = tl.load(b_ptr + c)
    alpha = _scalar(alpha_bits, FP64)
    acc_g = tl.zeros([BLOCK], dtype=ty)
    acc_gx = tl.zeros([BLOCK], dtype=ty)
    for j0 in range(0, M, BLOCK):
        j = j0 + tl.arange(0, BLOCK)
        mask = j < M
        off = _offsets(g, j, C, S, PER_SAMPLE, CHANNELS_LAST)
        xhat = (tl.load(x_ptr + off, mask=mask, other=0.0).to(ty) - m) * r
        dy = tl.load(dy_ptr + off, mask=mask, other=0.0).to(ty)
        gr = dy * _act_grad(xhat * w + b, alpha, ACT, FP64)
        acc_g += gr
        acc_gx += gr * xhat
    tl.store(sum_g_ptr + g, tl.sum(acc_g, axis=0))
    tl.store(sum_gx_ptr + g, tl.sum(acc_gx, axis=0))


@triton.jit(do_not_specialize=["alpha_bits"])
def _backward_dx_kernel(
    dy_ptr,
    x_ptr,
    mean_ptr,
    rstd_ptr,
    w_ptr,
    b_ptr,
    sum_g_ptr,
    sum_gx_ptr,
    dx_ptr,
    C,
    S,
    numel,
    M,
    alpha_bits,
    ACT: tl.constexpr,
    PER_SAMPLE: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BATCH_STATS: tl.constexpr,
    BLOCK: tl.constexpr,
    FP64: tl.constexpr,
):
    """dx = rstd * w * (g - sum_g / M - xhat * sum_gxhat / M) (without the statistics'
    part unless BATCH_STATS) over one chunk of the flat elements."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < numel
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    if CHANNELS_LAST:
        c = i % C
    else:
        c = (i // S) % C
    n = i // (S * C)
    if PER_SAMPLE:
        g = n * C + c
    else:
        g = c
    m = tl.load(mean_ptr + g, mask=mask, other=0.0)
    r = tl.load(rstd_ptr + g, mask=mask, other=1.0)
    w = tl.zeros_like(m) + 1.0
    if HAS_WEIGHT:
        w = tl.load(w_ptr + c, mask=mask, other=1.0)
    xhat = (tl.load(x_ptr + i, mask=mask, other=0.0).to(ty) - m) * r
    z = xhat * w
    if HAS_BIAS:
        z += tl.load(b_ptr + c, mask=mask, other=0.0)
    dy = tl.load(dy_ptr + i, mask=mask, other=0.0).to(ty)
    gr = dy * _act_grad(z, _scalar(alpha_bits, FP64), ACT, FP64)
    if BATCH_STATS:
        sg = tl.load(sum_g_ptr + g, mask=mask, other=0.0)
        sgx = tl.load(sum_gx_ptr + g, mask=mask, other=0.0)
        gr = gr - sg / M - xhat * (sgx / M)
    tl.store(dx_ptr + i, (r * w * gr).to(dx_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------
# Launchers.


def _layout(x: torch.Tensor) -> tuple[int, int, int, bool]:
    """(N, C, S, channels_last) of a dense x, or a ValueError."""
    if x.dtype not in _DTYPES:
        raise TypeError(f"norm_act: unsupported dtype {x.dtype} for x")
    if x.dim() < 2 or x.numel() == 0:
        raise ValueError(f"norm_act: x must be a non-empty (N, C, ...) tensor, got {x.shape}")
    N, C = x.shape[:2]
    S = x.numel() // (N * C)
    if x.is_contiguous():
        return N, C, S, S == 1
    # Channels last: memory N, spatial dims in order, C.
    expected, ok = C, C == 1 or x.stride(1) == 1
    for d in range(x.dim() - 1, 1, -1):
        if x.shape[d] != 1:
            ok = ok and x.stride(d) == expected
        expected *= x.shape[d]
    ok = ok and (N == 1 or x.stride(0) == expected)
    if not ok:
        raise ValueError(f"norm_act: x must be contiguous or channels last, got {x.stride()}")
    return N, C, S, True


def _check_vec(name, t, n, acc, device):
    if t is None:
        return
    if t.dtype != acc or t.device != device or not t.is_contiguous() or t.numel() != n:
        raise ValueError(f"norm_act: {name} must be a contiguous {acc} tensor of {n} elements")


def _prepare(x, mean, rstd, weight, bias, per_sample):
    N, C, S, cl = _layout(x)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    G = N * C if per_sample else C
    for name, t, n in (("mean", mean, G), ("rstd", rstd, G), ("weight", weight, C),
                       ("bias", bias, C)):  # fmt: skip
        _check_vec(name, t, n, acc, x.device)
    return N, C, S, cl, acc, G


def _flags(x, per_sample, cl, weight, bias):
    return dict(
        PER_SAMPLE=bool(per_sample),
        CHANNELS_LAST=cl,
        HAS_WEIGHT=weight is not None,
        HAS_BIAS=bias is not None,
        FP64=x.dtype == torch.float64,
    )


def _rblock(M: int) -> int:
    return min(_RBLOCK, max(16, next_pow2(M)))


def norm_act_stats(x, per_sample):
    """(mean, biased variance) per group."""
    N, C, S, cl, acc, G = _prepare(x, None, None, None, None, per_sample)
    M = S if per_sample else N * S
    mean = torch.empty(G, dtype=acc, device=x.device)
    var = torch.empty_like(mean)
    with _device_ctx(x):
        _stats_kernel[(G,)](
            x, mean, var, C, S, M,
            PER_SAMPLE=bool(per_sample), CHANNELS_LAST=cl, BLOCK=_rblock(M),
            FP64=x.dtype == torch.float64,
        )  # fmt: skip
    return mean, var


def norm_act_forward(x, mean, rstd, weight, bias, per_sample, act, alpha):
    """act((x - mean[g]) * rstd[g] * weight[c] + bias[c]), laid out like x."""
    N, C, S, cl, acc, G = _prepare(x, mean, rstd, weight, bias, per_sample)
    y = torch.empty_like(x)
    numel = x.numel()
    block = min(_BLOCK, max(16, next_pow2(numel)))
    with _device_ctx(x):
        _forward_kernel[(cdiv(numel, block),)](
            x, mean, rstd, x if weight is None else weight, x if bias is None else bias, y,
            C, S, numel, _bits(alpha),
            ACT=int(act), BLOCK=block, **_flags(x, per_sample, cl, weight, bias),
        )  # fmt: skip
    return y


def norm_act_backward(dy, x, mean, rstd, weight, bias, per_sample, act, alpha, batch_stats):
    """(dx, sum_g, sum_gxhat), see the module docstring."""
    N, C, S, cl, acc, G = _prepare(x, mean, rstd, weight, bias, per_sample)
    if dy.shape != x.shape or dy.stride() != x.stride() or dy.dtype != x.dtype:
        raise ValueError("norm_act: dy must have x's shape, strides and dtype")
    M = S if per_sample else N * S
    sum_g = torch.empty(G, dtype=acc, device=x.device)
    sum_gx = torch.empty_like(sum_g)
    dx = torch.empty_like(x)
    numel = x.numel()
    block = min(_BLOCK, max(16, next_pow2(numel)))
    flags = _flags(x, per_sample, cl, weight, bias)
    w = x if weight is None else weight
    b = x if bias is None else bias
    with _device_ctx(x):
        _backward_reduce_kernel[(G,)](
            dy, x, mean, rstd, w, b, sum_g, sum_gx, C, S, M, _bits(alpha),
            ACT=int(act), BLOCK=_rblock(M), **flags,
        )  # fmt: skip
        _backward_dx_kernel[(cdiv(numel, block),)](
            dy, x, mean, rstd, w, b, sum_g, sum_gx, dx, C, S, numel, M, _bits(alpha),
            ACT=int(act), BATCH_STATS=bool(batch_stats), BLOCK=block, **flags,
        )  # fmt: skip
    return dx, sum_g, sum_gx


# ---------------------------------------------------------------------------------------
# Ahead-of-time compile specs: (kernel, signature, constexprs) for every kernel above.

_ACC_PTRS = ("mean_ptr", "var_ptr", "rstd_ptr", "w_ptr", "b_ptr", "sum_g_ptr", "sum_gx_ptr")


def _aot_spec(kernel, dtype, constexprs):
    """Data pointers of `dtype`, per-group / per-channel pointers of the accumulation type,
    alpha bits i64, other runtime arguments i32."""
    acc = "fp64" if dtype == "fp64" else "fp32"
    signature = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = "*" + (acc if name in _ACC_PTRS else dtype)
        else:
            signature[name] = "i64" if name == "alpha_bits" else "i32"
    return kernel, signature, dict(constexprs, FP64=dtype == "fp64")


def _aot_specs():
    specs = []
    for dtype, act, per_sample, cl in (
        ("fp32", 2, True, False),
        ("fp32", 1, False, True),
        ("fp16", 3, True, True),
        ("bf16", 8, False, False),
        ("fp64", 6, True, False),
    ):
        layout = dict(PER_SAMPLE=per_sample, CHANNELS_LAST=cl)
        affine = dict(layout, ACT=act, HAS_WEIGHT=True, HAS_BIAS=True)
        specs += [
            _aot_spec(_stats_kernel, dtype, dict(layout, BLOCK=_RBLOCK)),
            _aot_spec(_forward_kernel, dtype, dict(affine, BLOCK=_BLOCK)),
            _aot_spec(_backward_reduce_kernel, dtype, dict(affine, BLOCK=_RBLOCK)),
            _aot_spec(_backward_dx_kernel, dtype, dict(affine, BATCH_STATS=True, BLOCK=_BLOCK)),
        ]
    return specs


AOT_SPECS = _aot_specs()
