"""Triton kernels of bias_act: bias add, activation, gain and clamp, and its gradients.

Layout contract (that of gankernels.ops.bias_act). x, dy and s are dense tensors
(contiguous, channels_last or any other permutation) with identical strides, so one flat
offset i addresses the same element in all of them; the channel of flat element i is
(i // inner) % C, with inner the stride of the channel dim. b is None or a contiguous
(C,) tensor of the data dtype. Supported dtypes: float32, float64, float16, bfloat16.
Arithmetic is float32 (float64 for float64 data); outputs are `torch.empty_like` of the
first data input, so they keep its layout. Flat offsets are 32-bit when numel < 2**31 and
64-bit otherwise. clamp < 0 means no clamp. Activation codes are those of
gankernels.ops.bias_act.ACTIVATIONS (0 linear ... 8 swish).

bias_act_forward(x, b, C, inner, act, alpha, gain, clamp) -> like x
    y = clamp(gain * act(x + b[c]), -clamp, clamp). One elementwise pass.

bias_act_grad(dy, s, b, C, inner, act, alpha, gain, clamp, order, s_is_y) -> like s
    order 1: dy * gain * act'(z) * mask; order 2: dy * d(gain * act'(z) * mask)/ds.
    s is the forward output y (s_is_y) for activations 0..7, whose derivatives are
    functions of u = s / gain, and the input x for swish, whose derivative is a function
    of z = x + b[c] (b only matters there); other pairings raise, as in the reference.
    mask = |y| < clamp, y = s when s_is_y, else y = gain * act(z). One pass.

Both kernels use a 1-D grid of BLOCK-sized chunks of the flat elements. The activation,
order, s_is_y, bias and clamp are compile-time flags, so each variant compiles only its
own arithmetic. alpha, gain and clamp travel as the int64 bit patterns of their float64
values: a Python float kernel argument is passed as fp32, which would round them for
float64 data.
"""

from __future__ import annotations

import contextlib
import inspect
import struct

import torch
import triton
import triton.language as tl

from ..ops.bias_act import SELU_SCALE, check_saved
from . import cdiv, next_pow2

_BLOCK = 1024
_INT32_LIMIT = 2**31
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_SWISH = 8
# Globals a kernel reads must be constexpr.
_SELU_SCALE = tl.constexpr(SELU_SCALE)
# softplus(z) is z above this, as in torch.nn.functional.softplus (threshold=20).
_SOFTPLUS_THRESHOLD = tl.constexpr(20.0)

# jit device functions called by the kernels (not kernels themselves).
AOT_HELPERS = ["_scalar", "_taylor_expm1", "_expm1", "_log1p", "_sigmoid", "_act", "_derivative"]


# ---------------------------------------------------------------------------------------
# Device helpers.


@triton.jit
def _scalar(bits, FP64: tl.constexpr):
    """The float64 whose bit pattern is `bits`, in the compute type."""
    v = bits.to(tl.int64).to(tl.float64, bitcast=True)
    if FP64:
        return v
    else:
        return v.to(tl.float32)


@triton.jit
def _taylor_expm1(x, TERMS: tl.constexpr):
    """x * (1 + x/2 * (1 + x/3 * (... * (1 + x/TERMS)))), expm1 to degree TERMS."""
    p = 1.0 + x * (1.0 / TERMS)
    for k in tl.static_range(TERMS - 1, 1, -1):
        p = 1.0 + x * p * (1.0 / k)
    return x * p


@triton.jit
def _expm1(x, FP64: tl.constexpr):
    """exp(x) - 1 without the cancellation near 0: a Taylor polynomial for |x| < 0.5
    (degree 9 / 15: truncation error below half an ulp of fp32 / fp64), exp(x) - 1
    elsewhere (where exp's relative error grows by at most 2.6x)."""
    small = tl.abs(x) < 0.5
    xs = tl.where(small, x, 0.0)
    if FP64:
        p = _taylor_expm1(xs, 15)
    else:
        p = _taylor_expm1(xs, 9)
    return tl.where(small, p, tl.exp(x) - 1.0)


@triton.jit
def _log1p(t):
    """log(1 + t) for t >= 0 (Kahan): the rounding of 1 + t cancels in log(u) / (u - 1)."""
    u = 1.0 + t
    tiny = u == 1.0
    den = tl.where(tiny, 1.0, u - 1.0)
    return tl.where(tiny, t, tl.log(u) * (t / den))


@triton.jit
def _sigmoid(z):
    """1 / (1 + exp(-z)), with exp of -|z| only so that nothing overflows."""
    e = tl.exp(-tl.abs(z))
    r = 1.0 / (1.0 + e)
    return tl.where(z < 0, e * r, r)


@triton.jit
def _act(z, alpha, ACT: tl.constexpr, FP64: tl.constexpr):
    """act(z) before the gain, in z's type."""
    if ACT == 0:
        r = z
    elif ACT == 1:
        r = tl.where(z < 0, 0.0, z)  # NaN stays NaN, as with clamp_min
    elif ACT == 2:
        r = tl.where(z > 0, z, z * alpha)
    elif ACT == 3:
        # tanh|z| = -e / (2 + e) with e = expm1(-2|z|): no cancellation for small |z|.
        e = _expm1(-2.0 * tl.abs(z), FP64)
        t = -e / (2.0 + e)
        r = tl.where(z < 0, -t, t)
    elif ACT == 4:
        r = _sigmoid(z)
    elif ACT == 5:
        r = tl.where(z > 0, z, alpha * _expm1(tl.minimum(z, 0.0), FP64))
    elif ACT == 6:
        r = tl.where(z > 0, z, alpha * _expm1(tl.minimum(z, 0.0), FP64)) * _SELU_SCALE
    elif ACT == 7:
        # Capped before exp so that the branch not taken stays finite.
        sp = _log1p(tl.exp(tl.minimum(z, _SOFTPLUS_THRESHOLD)))
        r = tl.where(z > _SOFTPLUS_THRESHOLD, z, sp)
    else:
        r = z * _sigmoid(z)
    return r


@triton.jit
def _derivative(
    u, z, alpha, gain, selu_sa, ACT: tl.constexpr, ORDER: tl.constexpr, FP64: tl.constexpr
):
    """gain * act'(z) (ORDER 1) or its derivative with respect to s (ORDER 2); u = s / gain
    for activations 0..7, z = x + b for swish. selu_sa = SELU_SCALE * alpha."""
    if ACT == 8:
        sg = _sigmoid(z)
        if ORDER == 1:
            d = gain * (sg + z * sg * (1.0 - sg))
        else:
            d = gain * (sg * (1.0 - sg) * (2.0 + z * (1.0 - 2.0 * sg)))
    elif ORDER == 1:
        if ACT == 0:
            d = tl.zeros_like(u) + gain
        elif ACT == 1:
            d = tl.where(u > 0, gain, 0.0)
        elif ACT == 2:
            d = tl.where(u > 0, gain, gain * alpha)
        elif ACT == 3:
            d = gain * (1.0 - u * u)
        elif ACT == 4:
            d = gain * u * (1.0 - u)
        elif ACT == 5:
            d = gain * tl.where(u > 0, 1.0, u + alpha)
        elif ACT == 6:
            d = gain * tl.where(u > 0, _SELU_SCALE, u + selu_sa)
        else:
            d = gain * -_expm1(-u, FP64)
    else:
        if ACT <= 2:
            d = tl.zeros_like(u)  # piecewise linear: gain * act' is piecewise constant in s
        elif ACT == 3:
            d = -2.0 * u
        elif ACT == 4:
            d = 1.0 - 2.0 * u
        elif ACT <= 6:
            d = tl.where(u > 0, 0.0, 1.0)
        else:
            d = tl.exp(-u)
    return d


# ---------------------------------------------------------------------------------------
# Kernels.


@triton.jit(do_not_specialize=["alpha_bits", "gain_bits", "clamp_bits"])
def _bias_act_fwd_kernel(
    x_ptr,
    b_ptr,
    y_ptr,
    C,
    inner,
    numel,
    alpha_bits,
    gain_bits,
    clamp_bits,
    ACT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_CLAMP: tl.constexpr,
    BLOCK: tl.constexpr,
    WIDE: tl.constexpr,
    FP64: tl.constexpr,
):
    """y = clamp(gain * act(x + b[c])) over one BLOCK-sized chunk of the flat elements."""
    pid = tl.program_id(0)
    if WIDE:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    z = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ty)
    if HAS_BIAS:
        c = (offs // inner) % C
        z += tl.load(b_ptr + c, mask=mask, other=0.0).to(ty)
    alpha = _scalar(alpha_bits, FP64)
    gain = _scalar(gain_bits, FP64)
    y = _act(z, alpha, ACT, FP64) * gain
    if HAS_CLAMP:
        lim = _scalar(clamp_bits, FP64)
        y = tl.where(y > lim, lim, tl.where(y < -lim, -lim, y))  # NaN stays NaN
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["alpha_bits", "gain_bits", "clamp_bits"])
def _bias_act_grad_kernel(
    dy_ptr,
    s_ptr,
    b_ptr,
    out_ptr,
    C,
    inner,
    numel,
    alpha_bits,
    gain_bits,
    clamp_bits,
    ACT: tl.constexpr,
    ORDER: tl.constexpr,
    S_IS_Y: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_CLAMP: tl.constexpr,
    BLOCK: tl.constexpr,
    WIDE: tl.constexpr,
    FP64: tl.constexpr,
):
    """out = dy * (gain * act'(z) or its s-derivative) * mask over one chunk."""
    pid = tl.program_id(0)
    if WIDE:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    if FP64:
        ty = tl.float64
    else:
        ty = tl.float32
    s = tl.load(s_ptr + offs, mask=mask, other=0.0).to(ty)
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(ty)
    alpha = _scalar(alpha_bits, FP64)
    gain = _scalar(gain_bits, FP64)
    # Rounded once from the float64 product, as the reference adds it to u.
    selu_sa = (alpha_bits.to(tl.int64).to(tl.float64, bitcast=True) * _SELU_SCALE).to(ty)
    z = s
    if not S_IS_Y:
        if HAS_BIAS:
            c = (offs // inner) % C
            z = s + tl.load(b_ptr + c, mask=mask, other=0.0).to(ty)
    if ACT == 8:
        u = z  # unused: swish's derivative is a function of z
    else:
        u = s / gain
    out = dy * _derivative(u, z, alpha, gain, selu_sa, ACT, ORDER, FP64)
    if HAS_CLAMP:
        lim = _scalar(clamp_bits, FP64)
        if S_IS_Y:
            y = s
        else:
            y = _act(z, alpha, ACT, FP64) * gain
        out = tl.where(tl.abs(y) < lim, out, 0.0)
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------
# Launchers.


def _bits(v: float) -> int:
    """The IEEE float64 bit pattern of v as a signed int64."""
    return struct.unpack("<q", struct.pack("<d", float(v)))[0]


def _device_ctx(t: torch.Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _is_dense(t: torch.Tensor) -> bool:
    """t covers a contiguous block of memory without gaps or overlaps (any dim order)."""
    if t.numel() == 0:
        return True
    dims = sorted((st, n) for n, st in zip(t.shape, t.stride(), strict=True) if n != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return True


def _check(name: str, t: torch.Tensor, like: torch.Tensor | None = None):
    if t.dtype not in _DTYPES:
        raise TypeError(f"bias_act: unsupported dtype {t.dtype} for {name}")
    if not _is_dense(t):
        raise ValueError(f"bias_act: {name} must be dense (contiguous, channels_last, ...)")
    if like is not None:
        if t.dtype != like.dtype or t.device != like.device:
            raise TypeError(f"bias_act: {name} must have the dtype and device of the data")
        if t.shape != like.shape or t.stride() != like.stride():
            raise ValueError(f"bias_act: {name} must have the shape and strides of the data")


def _check_common(t, b, C, inner, act, uses_bias):
    if not 0 <= act <= _SWISH:
        raise ValueError(f"bias_act: unknown activation code {act}")
    if C < 1 or inner < 1:
        raise ValueError(f"bias_act: C and inner must be positive, got {C}, {inner}")
    if b is None:
        return
    if b.dtype != t.dtype or b.device != t.device:
        raise TypeError("bias_act: b must have the dtype and device of the data")
    if not b.is_contiguous() or b.shape != (C,):
        raise ValueError(f"bias_act: b must be a contiguous ({C},) tensor")
    if uses_bias and t.numel() % (C * inner) != 0:
        raise ValueError(f"bias_act: {t.numel()} elements are not a multiple of C * inner")


def _launch_args(numel: int, dtype: torch.dtype) -> dict:
    block = min(_BLOCK, max(16, next_pow2(numel)))
    return dict(
        BLOCK=block,
        WIDE=numel >= _INT32_LIMIT,
        FP64=dtype == torch.float64,
        num_warps=max(1, min(4, block // 256)),
    )


def bias_act_forward(x, b, C, inner, act, alpha, gain, clamp):
    """clamp(gain * act(x + b[c]), -clamp, clamp), laid out like x."""
    C, inner, act = int(C), int(inner), int(act)
    _check("x", x)
    _check_common(x, b, C, inner, act, uses_bias=b is not None)
    y = torch.empty_like(x)
    numel = x.numel()
    if numel == 0:
        return y
    meta = _launch_args(numel, x.dtype)
    with _device_ctx(x):
        # Without a bias, x stands in for the pointer the kernel never reads.
        _bias_act_fwd_kernel[(cdiv(numel, meta["BLOCK"]),)](
            x, x if b is None else b, y, C, inner, numel,
            _bits(alpha), _bits(gain), _bits(clamp),
            ACT=act, HAS_BIAS=b is not None, HAS_CLAMP=clamp >= 0, **meta,
        )  # fmt: skip
    return y


def bias_act_grad(dy, s, b, C, inner, act, alpha, gain, clamp, order, s_is_y):
    """dy * gain * act'(z) * mask (order 1) or dy * its s-derivative (order 2), like s."""
    C, inner, act, order, s_is_y = int(C), int(inner), int(act), int(order), bool(s_is_y)
    _check("s", s)
    _check("dy", dy, like=s)
    if order not in (1, 2):
        raise ValueError(f"bias_act: order must be 1 or 2, got {order}")
    # With s = y the bias plays no part: z is only formed from s = x.
    uses_bias = b is not None and not s_is_y
    _check_common(s, b, C, inner, act, uses_bias)
    check_saved(act, s_is_y)  # after _check_common has vetted the act code
    out = torch.empty_like(s)
    numel = s.numel()
    if numel == 0:
        return out
    meta = _launch_args(numel, s.dtype)
    with _device_ctx(s):
        _bias_act_grad_kernel[(cdiv(numel, meta["BLOCK"]),)](
            dy, s, b if uses_bias else s, out, C, inner, numel,
            _bits(alpha), _bits(gain), _bits(clamp),
            ACT=act, ORDER=order, S_IS_Y=s_is_y, HAS_BIAS=uses_bias, HAS_CLAMP=clamp >= 0,
            **meta,
        )  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------
# Ahead-of-time compile specs: (kernel, signature, constexprs) for every kernel above.


_BITS_ARGS = ("alpha_bits", "gain_bits", "clamp_bits")


def _aot_spec(kernel, dtype, constexprs, **types):
    """(kernel, signature, constexprs): pointers of `dtype`, the scalar bit patterns i64,
    other runtime arguments i32; `types` overrides."""
    signature = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in types:
            signature[name] = types[name]
        elif name.endswith("_ptr"):
            signature[name] = "*" + dtype
        else:
            signature[name] = "i64" if name in _BITS_ARGS else "i32"
    return kernel, signature, dict(constexprs)


def _fwd_spec(dtype, act, bias=True, clamp=True, wide=False):
    flags = dict(ACT=act, HAS_BIAS=bias, HAS_CLAMP=clamp)
    return _aot_spec(
        _bias_act_fwd_kernel,
        dtype,
        dict(flags, BLOCK=_BLOCK, WIDE=wide, FP64=dtype == "fp64"),
        numel="i64" if wide else "i32",
    )


def _grad_spec(dtype, act, order, s_is_y, bias, clamp=True, wide=False):
    flags = dict(ACT=act, ORDER=order, S_IS_Y=s_is_y, HAS_BIAS=bias, HAS_CLAMP=clamp)
    return _aot_spec(
        _bias_act_grad_kernel,
        dtype,
        dict(flags, BLOCK=_BLOCK, WIDE=wide, FP64=dtype == "fp64"),
        numel="i64" if wide else "i32",
    )


def _aot_specs():
    specs = []
    # Every activation and order in fp32 with bias and clamp, s as the ops layer saves it.
    for act in range(_SWISH + 1):
        swish = act == _SWISH
        specs.append(_fwd_spec("fp32", act))
        specs += [_grad_spec("fp32", act, order, not swish, swish) for order in (1, 2)]
    # The other dtypes, with the flags off in the order 2 grads; 64-bit offsets.
    for dtype, act in (("fp16", 2), ("bf16", _SWISH), ("fp64", 6), ("fp64", _SWISH)):
        swish = act == _SWISH
        specs += [
            _fwd_spec(dtype, act),
            _grad_spec(dtype, act, 1, not swish, swish),
            _grad_spec(dtype, act, 2, not swish, False, clamp=False),
        ]
    specs += [
        _fwd_spec("bf16", 1, bias=False, clamp=False, wide=True),
        _grad_spec("fp16", 5, 1, True, False, clamp=False, wide=True),
    ]
    return specs


AOT_SPECS = _aot_specs()
