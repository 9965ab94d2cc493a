"""GPU tests of the bias_act CUDA kernels in ``gankernels._C``.

Each kernel is compared against ``reference_bias_act_forward`` /
``reference_bias_act_grad`` of ``gankernels.ops.bias_act`` run in float64 on
the same inputs. The tests skip when no GPU is present or the extension was
built without the CUDA bias_act kernels.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from conftest import (
    CUDA_KERNEL_MARKS,
    GPU_ONLY,
    KERNEL_DEVICE,
    OTHER_DEVICE,
    cuda_extension,
    emulate_only_if,
    kernel_sync,
)

# The module, not the op that gankernels.ops re-exports under the same name.
ba = importlib.import_module("gankernels.ops.bias_act")

pytestmark = CUDA_KERNEL_MARKS

FUNCS = ("bias_act_forward_cuda", "bias_act_grad_cuda")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
DTYPE_IDS = [str(d).split(".")[-1] for d in DTYPES]

ACTS = list(ba.ACTIVATIONS)

# One rounding to the data dtype after accumulator arithmetic (plus a few ulp
# of the accumulator's transcendentals). The absolute tolerance is this times
# the reference's largest magnitude (1 - u*u and the like can cancel).
RTOL = {
    torch.float32: 1e-5,
    torch.float64: 1e-12,
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
}

# Exactly representable in every dtype, so that a saved y clamped to it
# compares the same way (|y| < clamp is false) in the kernel and in float64.
CLAMP = 0.75

# (shape, layout, dim). inner = x.stride(dim).
CASES = [
    ((3, 5, 7, 9), "contiguous", 1),  # odd sizes: vector body and a tail
    ((3, 5, 7, 9), "channels_last", 1),  # inner = 1
    ((3, 5, 7, 9), "misaligned", 1),  # data pointer one element past aligned
    ((3, 5, 7, 9), "contiguous", 3),  # last dim: inner = 1, C = 9
    ((37, 11), "contiguous", 1),  # 2-D (N, C)
    ((4, 16, 8, 8), "contiguous", 1),  # no tail
    ((2, 1, 5, 3), "contiguous", 1),  # C = 1
    ((3, 2), "contiguous", 1),  # fewer elements than one 16-byte pack
]

# Large enough that the grid-stride loops take several turns.
BIG_CASES = [
    ((3, 37, 200, 300), "contiguous", 1),
    ((3, 37, 200, 300), "channels_last", 1),
    ((3, 37, 200, 300), "misaligned", 1),
]


EMU_GRID_STRIDE = {
    ("lrelu", "misaligned", torch.float32),
    ("swish", "channels_last", torch.float32),
}


def _case_id(case) -> str:
    shape, layout, dim = case
    return "x".join(map(str, shape)) + f"-{layout}-dim{dim}"


@pytest.fixture(scope="module")
def ext():
    return cuda_extension(FUNCS)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator(device=KERNEL_DEVICE).manual_seed(seed)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _lay_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """t (any layout) copied into the requested layout."""
    if layout == "misaligned":
        buf = torch.empty(t.numel() + 1, device=t.device, dtype=t.dtype)
        out = buf[1:].view(t.shape)
        out.copy_(t)
        assert out.data_ptr() % 16 != 0
        return out
    if layout == "channels_last":
        out = t.contiguous(memory_format=torch.channels_last)
        assert not out.is_contiguous()
        return out
    return t.contiguous()


def _data(shape, layout, dtype, gen, scale=1.0) -> torch.Tensor:
    """Random normal data on the GPU in the requested layout."""
    x = torch.randn(shape, generator=gen, device=KERNEL_DEVICE, dtype=torch.float32) * scale
    return _lay_out(x.to(dtype), layout)


def _bias(C, dtype, gen) -> torch.Tensor:
    b = torch.randn(C, generator=gen, device=KERNEL_DEVICE, dtype=torch.float32)
    return (0.5 * b).to(dtype)


def _params(act: str):
    spec = ba.ACTIVATIONS[act]
    alpha = 0.0 if spec.alpha is None else spec.alpha
    return spec.code, alpha, spec.gain


def _d(t):
    return None if t is None else t.double()


def _assert_close(actual, expected, rtol, what):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    # The kernel rounds its result to the data dtype once; so does this.
    expected = expected.to(actual.dtype).double()
    actual = actual.double()
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(
        actual,
        expected,
        rtol=rtol,
        atol=rtol * max(scale, 1e-30),
        msg=lambda m: f"{what}: {m}",
    )


def _assert_like(out, x):
    assert out.dtype == x.dtype
    assert out.device == x.device
    assert out.shape == x.shape
    assert out.stride() == x.stride()


def _saved(x, b, C, inner, code, alpha, gain, clamp, layout):
    """The tensor the backward saves: y (in x's dtype and layout), or x for swish."""
    if not ba.CODES[code].saves_y:
        return x
    y = ba.reference_bias_act_forward(x, b, C, inner, code, alpha, gain, clamp)
    return _lay_out(y, layout)


def _check_forward(ext, x, b, dim, act, clamp, what, alpha=None, gain=None):
    code, alpha0, gain0 = _params(act)
    alpha = alpha0 if alpha is None else alpha
    gain = gain0 if gain is None else gain
    C, inner = x.shape[dim], x.stride(dim)
    y = ext.bias_act_forward_cuda(x, b, C, inner, code, alpha, gain, clamp)
    expected = ba.reference_bias_act_forward(x.double(), _d(b), C, inner, code, alpha, gain, clamp)
    kernel_sync()
    _assert_like(y, x)
    _assert_close(y, expected, RTOL[x.dtype], what)


def _check_grad(ext, x, b, dim, act, clamp, order, layout, gen, what, alpha=None, gain=None):
    code, alpha0, gain0 = _params(act)
    alpha = alpha0 if alpha is None else alpha
    gain = gain0 if gain is None else gain
    s_is_y = ba.ACTIVATIONS[act].saves_y
    C, inner = x.shape[dim], x.stride(dim)
    s = _saved(x, b, C, inner, code, alpha, gain, clamp, layout)
    dy = _lay_out(torch.randn(x.shape, generator=gen, device=KERNEL_DEVICE).to(x.dtype), layout)
    assert dy.stride() == s.stride()
    out = ext.bias_act_grad_cuda(dy, s, b, C, inner, code, alpha, gain, clamp, order, s_is_y)
    expected = ba.reference_bias_act_grad(
        dy.double(), s.double(), _d(b), C, inner, code, alpha, gain, clamp, order, s_is_y
    )
    kernel_sync()
    _assert_like(out, s)
    _assert_close(out, expected, RTOL[x.dtype], what)


# ---------------------------------------------------------------------------
# forward


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("act", ACTS)
def test_forward_matches_reference(ext, act, case, dtype):
    shape, layout, dim = case
    gen = _gen(100 + _numel(shape) + ba.ACTIVATIONS[act].code)
    x = _data(shape, layout, dtype, gen, scale=3.0)
    b = _bias(shape[dim], dtype, gen)
    for bias in (None, b):
        for clamp in (-1.0, CLAMP):
            what = f"forward {act} {dtype} bias={bias is not None} clamp={clamp}"
            _check_forward(ext, x, bias, dim, act, clamp, what)


# ---------------------------------------------------------------------------
# grad


@pytest.mark.parametrize("order", [1, 2], ids=["order1", "order2"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("act", ACTS)
def test_grad_matches_reference(ext, act, case, dtype, order):
    """From y for every activation but swish, from x (and b) for swish; b is passed
    in both cases (a y-based gradient must ignore it)."""
    shape, layout, dim = case
    gen = _gen(200 + _numel(shape) + ba.ACTIVATIONS[act].code)
    x = _data(shape, layout, dtype, gen, scale=3.0)
    b = _bias(shape[dim], dtype, gen)
    for bias in (None, b):
        for clamp in (-1.0, CLAMP):
            what = f"grad {act} {dtype} order={order} bias={bias is not None} clamp={clamp}"
            _check_grad(ext, x, bias, dim, act, clamp, order, layout, gen, what)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("which", ["dy", "s"])
def test_grad_one_input_misaligned(ext, which, dtype):
    """Inputs with different alignments must take the unvectorised path."""
    shape, dim = (4, 6, 10, 10), 1
    gen = _gen(31)
    x = _data(shape, "contiguous", dtype, gen)
    b = _bias(shape[dim], dtype, gen)
    code, alpha, gain = _params("swish")
    dy = _data(shape, "misaligned" if which == "dy" else "contiguous", dtype, gen)
    s = _lay_out(x, "misaligned" if which == "s" else "contiguous")
    C, inner = shape[dim], x.stride(dim)
    out = ext.bias_act_grad_cuda(dy, s, b, C, inner, code, alpha, gain, CLAMP, 1, False)
    expected = ba.reference_bias_act_grad(
        dy.double(), s.double(), b.double(), C, inner, code, alpha, gain, CLAMP, 1, False
    )
    kernel_sync()
    _assert_close(out, expected, RTOL[dtype], f"grad misaligned {which} {dtype}")


# ---------------------------------------------------------------------------
# parameters, extreme inputs, long grid-stride loops


@pytest.mark.parametrize("act", ACTS)
def test_custom_alpha_and_gain(ext, act):
    shape, layout, dim = (3, 5, 7, 9), "channels_last", 1
    gen = _gen(300 + ba.ACTIVATIONS[act].code)
    x = _data(shape, layout, torch.float32, gen, scale=3.0)
    b = _bias(shape[dim], torch.float32, gen)
    kw = {"alpha": 0.35, "gain": 0.6}
    _check_forward(ext, x, b, dim, act, CLAMP, f"forward {act}", **kw)
    for order in (1, 2):
        _check_grad(ext, x, b, dim, act, CLAMP, order, layout, gen, f"grad {act} {order}", **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=DTYPE_IDS[:3])
@pytest.mark.parametrize("act", ACTS)
def test_extreme_inputs(ext, act, dtype):
    """|x| up to ~60: softplus past its threshold, saturated tanh / sigmoid."""
    shape, layout, dim = (6, 8, 9, 11), "contiguous", 1
    gen = _gen(400 + ba.ACTIVATIONS[act].code)
    x = _data(shape, layout, dtype, gen, scale=15.0)
    b = _bias(shape[dim], dtype, gen)
    for clamp in (-1.0, CLAMP):
        _check_forward(ext, x, b, dim, act, clamp, f"forward {act} {dtype} clamp={clamp}")
        for order in (1, 2):
            what = f"grad {act} {dtype} order={order} clamp={clamp}"
            _check_grad(ext, x, b, dim, act, clamp, order, layout, gen, what)


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.bfloat16], ids=["float32", "float64", "bf16"]
)
@pytest.mark.parametrize("case", BIG_CASES, ids=_case_id)
@pytest.mark.parametrize("act", ["lrelu", "swish"])
def test_grid_stride(ext, act, case, dtype):
    shape, layout, dim = case
    # Emulated: one case per vector width (misaligned: 1; channels_last: 4) and saved tensor.
    emulate_only_if((act, layout, dtype) in EMU_GRID_STRIDE)
    gen = _gen(500 + ba.ACTIVATIONS[act].code)
    x = _data(shape, layout, dtype, gen, scale=2.0)
    b = _bias(shape[dim], dtype, gen)
    _check_forward(ext, x, b, dim, act, CLAMP, f"forward {act} {dtype}")
    for order in (1, 2):
        what = f"grad {act} {dtype} order={order}"
        _check_grad(ext, x, b, dim, act, CLAMP, order, layout, gen, what)


def test_empty(ext):
    code, alpha, gain = _params("lrelu")
    for shape in ((0, 5), (3, 4, 0), (0, 3, 4, 4)):
        x = torch.empty(shape, device=KERNEL_DEVICE)
        C = shape[1]
        b = torch.rand(C, device=KERNEL_DEVICE)
        y = ext.bias_act_forward_cuda(x, b, C, 1, code, alpha, gain, CLAMP)
        assert y.shape == x.shape and y.dtype == x.dtype
        g = ext.bias_act_grad_cuda(x, x.clone(), b, C, 1, code, alpha, gain, CLAMP, 2, True)
        assert g.shape == x.shape and g.dtype == x.dtype
    kernel_sync()


# ---------------------------------------------------------------------------
# 64-bit offsets


@pytest.mark.slow
@GPU_ONLY
@pytest.mark.parametrize("shape,dim", [((3, 2**30 + 1), 0), ((2**29 + 3, 5), 1)])
def test_offsets_beyond_int32(ext, shape, dim):
    """More than 2**31 elements: channels of the last elements need 64-bit indices."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    if props.total_memory < 32 * 2**30:
        pytest.skip("needs a GPU with at least 32 GiB")
    gen = _gen(2024)
    x = torch.randn(shape, generator=gen, device=KERNEL_DEVICE, dtype=torch.float16)
    assert x.numel() > 2**31
    C, inner = shape[dim], x.stride(dim)
    b = _bias(C, torch.float16, gen)
    code, alpha, gain = _params("lrelu")
    y = ext.bias_act_forward_cuda(x, b, C, inner, code, alpha, gain, CLAMP)
    out = ext.bias_act_grad_cuda(x, y, None, C, inner, code, alpha, gain, CLAMP, 1, True)
    if dim == 0:  # every row is one channel: its first and last elements
        rows = torch.arange(3)
        cols = torch.cat([torch.arange(7), torch.arange(shape[1] - 7, shape[1])])
    else:  # every column is one channel: the first, middle and last rows
        rows = torch.tensor([0, 1, shape[0] // 2, shape[0] - 2, shape[0] - 1])
        cols = torch.arange(shape[1])
    rows, cols = rows.to(KERNEL_DEVICE).view(-1, 1), cols.to(KERNEL_DEVICE).view(1, -1)
    xs, ys, outs = x[rows, cols], y[rows, cols], out[rows, cols]
    bs = b.double()[rows] if dim == 0 else b.double()[cols]
    z = xs.double() + bs
    ref_y = (torch.where(z > 0, z, z * alpha) * gain).clamp(-CLAMP, CLAMP)
    _assert_close(ys, ref_y, RTOL[torch.float16], "forward (64-bit)")
    # From the saved y: dy (here x) * gain * lrelu'(y), masked where y is clamped.
    yd = ys.double()
    d1 = gain * torch.where(yd > 0, 1.0, alpha).double()
    ref_g = torch.where(yd.abs() < CLAMP, xs.double() * d1, 0.0)
    _assert_close(outs, ref_g, RTOL[torch.float16], "grad (64-bit)")


# ---------------------------------------------------------------------------
# argument checks


def test_rejects_bad_arguments(ext):
    gen = _gen(5)
    x = _data((4, 3, 4, 5), "contiguous", torch.float32, gen)
    b = _bias(3, torch.float32, gen)
    C, inner = 3, x.stride(1)
    code, alpha, gain = _params("lrelu")

    def fwd(x=x, b=b, C=C, inner=inner, act=code):
        return ext.bias_act_forward_cuda(x, b, C, inner, act, alpha, gain, -1.0)

    def grad(dy=x, s=x, b=b, C=C, inner=inner, act=code, order=1, s_is_y=True, gain=gain):
        return ext.bias_act_grad_cuda(dy, s, b, C, inner, act, alpha, gain, -1.0, order, s_is_y)

    with pytest.raises(RuntimeError, match="x must be a CUDA tensor"):
        fwd(x=x.to(OTHER_DEVICE))
    with pytest.raises(RuntimeError, match="b must be a CUDA tensor"):
        fwd(b=b.to(OTHER_DEVICE))
    with pytest.raises(RuntimeError, match="b must have the same dtype as x"):
        fwd(b=b.double())
    with pytest.raises(RuntimeError, match="b must have C=3 elements"):
        fwd(b=b[:2])
    with pytest.raises(RuntimeError, match="b must be contiguous"):
        fwd(b=_bias(6, torch.float32, gen)[::2])
    with pytest.raises(RuntimeError, match="unsupported dtype"):
        fwd(x=x.int(), b=None)
    with pytest.raises(RuntimeError, match="act must be"):
        fwd(act=9)
    with pytest.raises(RuntimeError, match="act must be"):
        fwd(act=-1)
    with pytest.raises(RuntimeError, match="C must be >= 1"):
        fwd(C=0, b=None)
    with pytest.raises(RuntimeError, match="inner must be >= 1"):
        fwd(inner=0)
    with pytest.raises(RuntimeError, match="not a multiple of C"):
        fwd(inner=7)
    with pytest.raises(RuntimeError, match="x must be dense"):
        fwd(x=x[:, :, :, ::2])

    with pytest.raises(RuntimeError, match="s must be a CUDA tensor"):
        grad(s=x.to(OTHER_DEVICE))
    with pytest.raises(RuntimeError, match="dy must be a CUDA tensor"):
        grad(dy=x.to(OTHER_DEVICE))
    with pytest.raises(RuntimeError, match="dy must have the same dtype as s"):
        grad(dy=x.double())
    with pytest.raises(RuntimeError, match="same sizes and strides"):
        grad(dy=x.contiguous(memory_format=torch.channels_last))
    with pytest.raises(RuntimeError, match="same sizes and strides"):
        grad(dy=x[:3])
    with pytest.raises(RuntimeError, match="s must be dense"):
        grad(dy=x[:, :, :, ::2], s=x[:, :, :, ::2])
    with pytest.raises(RuntimeError, match="order must be 1 or 2"):
        grad(order=3)
    with pytest.raises(RuntimeError, match="act must be"):
        grad(act=9)
    with pytest.raises(RuntimeError, match="b must have the same dtype as s"):
        grad(b=b.half())
    with pytest.raises(RuntimeError, match="gain must be > 0"):
        grad(gain=0.0)


@pytest.mark.parametrize("act", ACTS)
def test_grad_rejects_other_saved_tensor(ext, act):
    """s must be what the op saves: y for every activation but swish, x for swish."""
    x = _data((2, 3, 4), "contiguous", torch.float32, _gen(6))
    code, alpha, gain = _params(act)
    s_is_y = not ba.ACTIVATIONS[act].saves_y
    want = "s must be y" if ba.ACTIVATIONS[act].saves_y else "s must be x"
    with pytest.raises(RuntimeError, match=want):
        ext.bias_act_grad_cuda(x, x, None, 3, 4, code, alpha, gain, -1.0, 1, s_is_y)
