"""Triton bias_act kernels vs the plain-torch reference kernels of gankernels.ops.bias_act.

Runs under the Triton interpreter on CPU (TRITON_INTERPRET=1) or on a CUDA GPU. Sizes are
small: the interpreter is slow.
"""

import importlib
import itertools
import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    pytest.skip("needs TRITON_INTERPRET=1 or a CUDA GPU", allow_module_level=True)

pytest.importorskip("triton")

from gankernels.triton import bias_act as tb  # noqa: E402

# gankernels.ops re-exports the bias_act function under the module's name.
ref = importlib.import_module("gankernels.ops.bias_act")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

ACTS = list(ref.ACTIVATIONS.values())
TIGHT = [torch.float32, torch.float64]
LOOSE = [torch.float16, torch.bfloat16]
# (rtol, atol relative to the largest reference magnitude). Low precision outputs may
# differ by one rounding step where the float32 results straddle a rounding boundary.
TOL = {
    torch.float64: (1e-12, 1e-13),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}
CLAMP = 0.75  # clamps a good share of every activation's outputs for inputs ~ 2 * N(0, 1)

# (shape, channel dim, layout); odd sizes so that no channel lines up with a block.
CASES = [
    ((2, 3, 5, 4), 1, "contiguous"),
    ((2, 3, 5, 4), 1, "channels_last"),
    ((7, 3), 1, "contiguous"),
    ((7, 3), 0, "contiguous"),
    ((5, 3, 4), 1, "permuted"),  # strides (3, 1, 15): dense, neither of the above
]


def _randn(shape, layout, dtype, scale=1.0):
    """Random (never zero) values in float64 rounded to dtype, in the given layout."""
    if layout == "permuted":
        a, b, c = shape
        t = torch.randn(c, a, b, dtype=torch.float64).permute(1, 2, 0)
    else:
        t = torch.randn(shape, dtype=torch.float64)
    t = (t * scale).to(dtype).to(DEVICE)
    if layout == "channels_last":
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def _bias(C, dtype):
    return torch.randn(C, dtype=torch.float64).to(dtype).to(DEVICE)


def _alpha(act):
    return 0.0 if act.alpha is None else act.alpha


def _close(out, expected, dtype, what):
    rtol, atol = TOL[dtype]
    assert out.dtype == expected.dtype and out.shape == expected.shape, what
    expected = expected.double().cpu()
    out = out.double().cpu()
    scale = max(expected.abs().max().item(), 1e-30)
    torch.testing.assert_close(
        out, expected, rtol=rtol, atol=atol * scale, msg=lambda m: f"{what}: {m}"
    )


def _case_args(x, dim):
    return x.shape[dim], x.stride(dim)


# ---------------------------------------------------------------------------------------
# Forward.


def _check_forward(act, dtype, case, clamp, with_bias):
    shape, dim, layout = case
    x = _randn(shape, layout, dtype, scale=2.0)
    C, inner = _case_args(x, dim)
    b = _bias(C, dtype) if with_bias else None
    args = (x, b, C, inner, act.code, _alpha(act), act.gain, clamp)
    y = tb.bias_act_forward(*args)
    what = f"{act.name} {case} clamp={clamp} bias={with_bias}"
    assert y.stride() == x.stride() and y.device == x.device, what
    _close(y, ref.reference_bias_act_forward(*args), dtype, what)


@pytest.mark.parametrize("dtype", TIGHT + LOOSE)
@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.name)
def test_forward(act, dtype):
    combos = list(itertools.product((-1.0, CLAMP), (False, True)))
    for i, (clamp, with_bias) in enumerate(combos):
        # Every layout for float32/64; one per combination (rotating) otherwise.
        cases = CASES if dtype in TIGHT else [CASES[(i + act.code) % len(CASES)]]
        for case in cases:
            _check_forward(act, dtype, case, clamp, with_bias)


# ---------------------------------------------------------------------------------------
# Gradients.


def _check_grad(act, dtype, case, clamp, order, s_is_y, with_bias):
    shape, dim, layout = case
    x = _randn(shape, layout, dtype, scale=2.0)
    C, inner = _case_args(x, dim)
    b = _bias(C, dtype) if with_bias else None
    alpha = _alpha(act)
    if s_is_y:
        # The forward output, as saved by the op (with the bias that made it).
        s = ref.reference_bias_act_forward(
            x, _bias(C, dtype), C, inner, act.code, alpha, act.gain, clamp
        )
    else:
        s = x
    dy = _randn(shape, layout, dtype)
    args = (dy, s, b, C, inner, act.code, alpha, act.gain, clamp, order, s_is_y)
    out = tb.bias_act_grad(*args)
    what = f"{act.name} {case} clamp={clamp} order={order} s_is_y={s_is_y} bias={with_bias}"
    assert out.stride() == s.stride() and out.device == s.device, what
    _close(out, ref.reference_bias_act_grad(*args), dtype, what)


@pytest.mark.parametrize("dtype", TIGHT + LOOSE)
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.name)
def test_grad(act, order, dtype):
    # s is y for every activation but swish (x); a bias is passed in both cases, though
    # only z = x + b uses it.
    combos = list(itertools.product((-1.0, CLAMP), (False, True)))
    for i, (clamp, with_bias) in enumerate(combos):
        # Two layouts per combination, rotating through all of them.
        for j in (0, 2):
            case = CASES[(i + j + act.code + order) % len(CASES)]
            _check_grad(act, dtype, case, clamp, order, act.saves_y, with_bias)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.name)
def test_grad_rejects_other_saved_tensor(act):
    """s_is_y must be what the activation saves (y, or x for swish), as in the reference."""
    x = _randn((2, 3), "contiguous", torch.float32)
    args = (x, x, None, 3, 1, act.code, _alpha(act), act.gain, -1.0, 1, not act.saves_y)
    with pytest.raises(ValueError):
        ref.reference_bias_act_grad(*args)
    with pytest.raises(ValueError):
        tb.bias_act_grad(*args)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-dim{c[1]}-{c[2]}")
def test_grad_every_layout(case):
    """Channel indexing of the gradient (bias added from s = x) in every layout."""
    act = ref.ACTIVATIONS["swish"]
    for order in (1, 2):
        _check_grad(act, torch.float32, case, CLAMP, order, False, True)


# ---------------------------------------------------------------------------------------
# Special values and parameters.


@pytest.mark.parametrize("dtype", TIGHT)
def test_non_default_parameters(dtype):
    """alpha and gain that float32 cannot hold exactly reach float64 kernels unrounded."""
    x = _randn((3, 7), "contiguous", dtype, scale=2.0)
    b = _bias(7, dtype)
    dy = _randn((3, 7), "contiguous", dtype)
    for name, alpha in (("lrelu", 0.1), ("elu", 0.7), ("selu", 1.1), ("tanh", 0.0)):
        code = ref.ACTIVATIONS[name].code
        for gain, clamp in ((1 / 3, -1.0), (2.2, 0.3)):
            fwd = (x, b, 7, 1, code, alpha, gain, clamp)
            y = ref.reference_bias_act_forward(*fwd)
            _close(tb.bias_act_forward(*fwd), y, dtype, f"{name} gain={gain}")
            for order in (1, 2):
                grad = (dy, y, None, 7, 1, code, alpha, gain, clamp, order, True)
                _close(
                    tb.bias_act_grad(*grad),
                    ref.reference_bias_act_grad(*grad),
                    dtype,
                    f"{name} gain={gain} order={order}",
                )


@pytest.mark.parametrize("dtype", TIGHT)
def test_extreme_inputs(dtype):
    """Large |z| (saturation, softplus's linear branch) and tiny |z| stay finite and match."""
    vals = [-90.0, -40.0, -21.0, -19.5, -3.0, -0.49, -1e-3, -1e-6, 1e-6, 1e-3, 0.51]
    vals += [3.0, 19.5, 20.5, 40.0, 90.0]
    x = torch.tensor(vals, dtype=dtype, device=DEVICE).reshape(1, -1)
    dy = torch.ones_like(x)
    for act in ACTS:
        fwd = (x, None, 1, 1, act.code, _alpha(act), act.gain, -1.0)
        y = tb.bias_act_forward(*fwd)
        assert torch.isfinite(y).all(), act.name
        _close(y, ref.reference_bias_act_forward(*fwd), dtype, act.name)
        s, s_is_y = (y, True) if act.saves_y else (x, False)
        for order in (1, 2):
            grad = (dy, s, None, 1, 1, act.code, _alpha(act), act.gain, -1.0, order, s_is_y)
            out = tb.bias_act_grad(*grad)
            assert torch.isfinite(out).all(), (act.name, order)
            _close(out, ref.reference_bias_act_grad(*grad), dtype, f"{act.name} order={order}")


@pytest.mark.parametrize("dtype", TIGHT)
def test_small_values_relative_accuracy(dtype):
    """expm1-based activations keep their relative accuracy near 0 (no 1 - exp cancellation)."""
    mags = torch.logspace(-7, -0.4, 40, dtype=torch.float64)
    x = torch.cat([-mags, mags]).to(dtype).to(DEVICE).reshape(2, -1)
    rtol = 1e-14 if dtype == torch.float64 else 6e-7
    for name in ("tanh", "elu", "selu", "softplus"):
        act = ref.ACTIVATIONS[name]
        fwd = (x, None, 1, 1, act.code, _alpha(act), act.gain, -1.0)
        expected = ref.reference_bias_act_forward(*fwd).cpu()
        torch.testing.assert_close(tb.bias_act_forward(*fwd).cpu(), expected, rtol=rtol, atol=0)
    # softplus's order 1 derivative from y: gain * -expm1(-y), y small where z << 0.
    act = ref.ACTIVATIONS["softplus"]
    y = torch.nn.functional.softplus(-torch.linspace(5.0, 15.0, 20, dtype=dtype)).to(DEVICE)
    y = y.reshape(1, -1)
    grad = (torch.ones_like(y), y, None, 1, 1, act.code, 0.0, act.gain, -1.0, 1, True)
    torch.testing.assert_close(
        tb.bias_act_grad(*grad).cpu(), ref.reference_bias_act_grad(*grad).cpu(), rtol=rtol, atol=0
    )


def test_wide_offsets_variant():
    """The 64-bit offset variant (used from 2**31 elements) computes the same values."""
    x = _randn((2, 3, 5, 4), "channels_last", torch.float32, scale=2.0)
    b = _bias(3, torch.float32)
    dy = _randn((2, 3, 5, 4), "channels_last", torch.float32)
    act = ref.ACTIVATIONS["swish"]
    meta = dict(tb._launch_args(x.numel(), x.dtype), WIDE=True)
    bits = (tb._bits(0.0), tb._bits(act.gain), tb._bits(CLAMP))
    y = torch.empty_like(x)
    tb._bias_act_fwd_kernel[(tb.cdiv(x.numel(), meta["BLOCK"]),)](
        x, b, y, 3, 1, x.numel(), *bits, ACT=act.code, HAS_BIAS=True, HAS_CLAMP=True, **meta
    )
    fwd = (x, b, 3, 1, act.code, 0.0, act.gain, CLAMP)
    _close(y, ref.reference_bias_act_forward(*fwd), torch.float32, "wide forward")
    out = torch.empty_like(x)
    tb._bias_act_grad_kernel[(tb.cdiv(x.numel(), meta["BLOCK"]),)](
        dy, x, b, out, 3, 1, x.numel(), *bits,
        ACT=act.code, ORDER=2, S_IS_Y=False, HAS_BIAS=True, HAS_CLAMP=True, **meta,
    )  # fmt: skip
    grad = (dy, x, b, 3, 1, act.code, 0.0, act.gain, CLAMP, 2, False)
    _close(out, ref.reference_bias_act_grad(*grad), torch.float32, "wide grad")


# ---------------------------------------------------------------------------------------
# Launch edge cases and validation.


class _NoLaunch:
    def __getitem__(self, grid):
        raise AssertionError("kernel launched for an empty input")


def test_empty_inputs_do_not_launch(monkeypatch):
    monkeypatch.setattr(tb, "_bias_act_fwd_kernel", _NoLaunch())
    monkeypatch.setattr(tb, "_bias_act_grad_kernel", _NoLaunch())
    x = torch.empty(0, 3, 5, 4, device=DEVICE).contiguous(memory_format=torch.channels_last)
    b = torch.zeros(3, device=DEVICE)
    y = tb.bias_act_forward(x, b, 3, 1, 2, 0.2, 2**0.5, 1.0)
    assert y.shape == x.shape and y.stride() == x.stride()
    g = tb.bias_act_grad(x, x, b, 3, 1, 8, 0.0, 2**0.5, -1.0, 2, False)
    assert g.shape == x.shape and g.stride() == x.stride()


def test_input_validation():
    x = _randn((2, 3, 4), "contiguous", torch.float32)
    b = _bias(3, torch.float32)
    grad = dict(b=b, C=3, inner=4, act=3, alpha=0.0, gain=1.0, clamp=-1.0, order=1, s_is_y=True)
    with pytest.raises(ValueError, match="swish"):
        tb.bias_act_grad(x, x, **dict(grad, act=8))  # swish saves x, not y
    with pytest.raises(ValueError, match="order"):
        tb.bias_act_grad(x, x, **dict(grad, order=3))
    with pytest.raises(ValueError):
        tb.bias_act_grad(x.transpose(1, 2).contiguous().transpose(1, 2), x, **grad)
    with pytest.raises(TypeError):
        tb.bias_act_grad(x.double(), x, **grad)
    with pytest.raises(ValueError):
        tb.bias_act_forward(x[:, :, ::2], b, 3, 4, 0, 0.0, 1.0, -1.0)  # not dense
    with pytest.raises(ValueError):
        tb.bias_act_forward(x, torch.ones(4, device=DEVICE), 3, 4, 0, 0.0, 1.0, -1.0)
    with pytest.raises(TypeError):
        tb.bias_act_forward(x, b.double(), 3, 4, 0, 0.0, 1.0, -1.0)
    with pytest.raises(TypeError):
        tb.bias_act_forward(x.int(), None, 3, 4, 0, 0.0, 1.0, -1.0)
    with pytest.raises(ValueError):
        tb.bias_act_forward(x, b, 3, 4, 9, 0.0, 1.0, -1.0)
