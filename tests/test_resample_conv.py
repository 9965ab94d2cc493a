"""upsample_conv2d and conv2d_avgpool (a 2x resampling folded into the convolution's
kernel) against the plain torch compositions they replace: forward, first and second
order gradients in float64, odd sizes, layouts, dtypes, the modules and bad input."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm

import gankernels as gk
from gankernels.nn import Conv2dAvgPoolAct, UpsampleConv2dAct
from gankernels.nn.spectral_norm import spectral_norm

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def plain_upsample_conv(x, w, b, padding):
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=padding)


def plain_conv_avgpool(x, w, b, padding):
    return F.avg_pool2d(F.conv2d(x, w, b, padding=padding), 2)


OPS = [
    (gk.ops.upsample_conv2d, plain_upsample_conv),
    (gk.ops.conv2d_avgpool, plain_conv_avgpool),
]
OP_IDS = ["upsample_conv2d", "conv2d_avgpool"]

# (N, C_in, C_out, H, W, kh, kw, padding, bias)
CASES = [
    (3, 5, 4, 7, 9, 3, 3, (1, 1), True),
    (2, 3, 6, 8, 8, 3, 3, (0, 2), False),
    (1, 4, 2, 5, 6, 1, 1, (0, 0), True),
    (2, 2, 3, 9, 7, 5, 3, (2, 1), True),
    (2, 3, 2, 6, 5, 4, 2, (1, 0), True),
]


def inputs(case, device, dtype=torch.float64):
    N, C_in, C_out, H, W, kh, kw, padding, bias = case
    x = torch.randn(N, C_in, H, W, dtype=dtype, device=device)
    w = torch.randn(C_out, C_in, kh, kw, dtype=dtype, device=device)
    b = torch.randn(C_out, dtype=dtype, device=device) if bias else None
    return x, w, b, padding


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op,plain", OPS, ids=OP_IDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:7])))
def test_matches_the_plain_composition(device, op, plain, case):
    x, w, b, padding = inputs(case, device)
    expected = plain(x, w, b, padding)
    got = op(x, w, b, padding)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("op,plain", OPS, ids=OP_IDS)
def test_default_padding_is_same(op, plain):
    x, w, b, _ = inputs(CASES[0], "cpu")
    torch.testing.assert_close(op(x, w, b), plain(x, w, b, (1, 1)), rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("op,plain", OPS, ids=OP_IDS)
@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=["3x3", "5x3"])
def test_first_and_second_order_gradients(op, plain, case):
    x, w, b, padding = inputs((2, 2, 3, 5, 4, *case[5:]), "cpu")
    leaves = [t.requires_grad_() for t in (x, w, b)]

    def fn(*t):
        return op(*t, padding)

    assert torch.autograd.gradcheck(fn, leaves)
    assert torch.autograd.gradgradcheck(fn, leaves)
    # and the same gradients as the composition (R1 differentiates the input gradient)
    g_out = torch.randn_like(plain(x, w, b, padding))

    def penalty_grads(f):
        (gx,) = torch.autograd.grad(f(x, w, b, padding), x, g_out, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), w)  # gx is linear in x

    for a, e in zip(penalty_grads(op), penalty_grads(plain), strict=True):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("op,plain", OPS, ids=OP_IDS)
@pytest.mark.parametrize("layout", ["channels_last", "non_contiguous"])
def test_layouts(op, plain, layout):
    x, w, b, padding = inputs(CASES[0], "cpu", torch.float32)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        x = x.transpose(2, 3).contiguous().transpose(2, 3)[:, :, :, 1:]
        assert not x.is_contiguous()
    torch.testing.assert_close(op(x, w, b, padding), plain(x, w, b, padding), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op,plain", OPS, ids=OP_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dtypes(device, op, plain, dtype):
    if device == "cpu" and dtype == torch.float16:
        pytest.skip("float16 convolutions are a GPU dtype")
    x, w, b, padding = inputs(CASES[0], device)
    expected = plain(x, w, b, padding)
    got = op(x.to(dtype), w.to(dtype), b.to(dtype), padding)
    assert got.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 0.1 if dtype == torch.bfloat16 else 2e-2
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol * 10)


# ---------------------------------------------------------------------------------------
# The modules.

MODULES = [(UpsampleConv2dAct, plain_upsample_conv), (Conv2dAvgPoolAct, plain_conv_avgpool)]
MODULE_IDS = ["UpsampleConv2dAct", "Conv2dAvgPoolAct"]


@pytest.mark.parametrize("cls,plain", MODULES, ids=MODULE_IDS)
@pytest.mark.parametrize("sn", [False, True], ids=["plain", "sn"])
def test_module_paths_agree_and_keep_conv2d_keys(cls, plain, sn):
    m = cls(5, 4, 3, padding=1, act="lrelu").double()
    ref = cls(5, 4, 3, padding=1, act="lrelu", fused=False).double()
    conv = nn.Conv2d(5, 4, 3, padding=1).double()
    if sn:  # ours on the gankernels build, torch's on the reference and the plain conv
        m = spectral_norm(m).eval()
        ref = torch_spectral_norm(ref).eval()
        conv = torch_spectral_norm(conv)
    assert m.state_dict().keys() == conv.state_dict().keys() == ref.state_dict().keys()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(3, 5, 7, 6, dtype=torch.float64)
    with torch.no_grad():
        expected = F.leaky_relu(plain(x, m.weight, m.bias, (1, 1)), 0.2)
    grads = []
    for mode in ("fused", "torch"):
        with gk.use_fusion(mode):
            xg = x.clone().requires_grad_()
            y = m(xg)
            torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-11)
            grads.append(torch.autograd.grad(y.square().sum(), xg)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(ref(x), expected, rtol=1e-10, atol=1e-11)


def test_modules_choose_by_measurement_and_the_rule_folds():
    for op in ("upsample2x+conv2d", "conv2d+avgpool2x"):
        assert gk.fusion.rule(op, "cpu") == "fused"
    m = UpsampleConv2dAct(4, 4, 3, padding=1)
    x = torch.randn(2, 4, 6, 6)
    with gk.use_fusion("auto"):
        y = m(x)
    ((name, decision),) = m.fusion_decisions()
    assert decision.choice in ("fused", "torch") and decision.source in ("measured", "cache")
    torch.testing.assert_close(y, plain_upsample_conv(x, m.weight, m.bias, (1, 1)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(stride=2), "stride, dilation and groups must be 1"),
        (dict(groups=2), "stride, dilation and groups must be 1"),
        (dict(padding=3), "padding must be below the kernel size"),
        (dict(padding="same"), "padding must be numbers"),
        (dict(padding_mode="reflect"), "padding must be numbers"),
    ],
)
def test_module_bad_arguments(kwargs, match):
    for cls in (UpsampleConv2dAct, Conv2dAvgPoolAct):
        with pytest.raises(ValueError, match=match):
            cls(4, 4, 3, **kwargs)


@pytest.mark.parametrize("op", [gk.ops.upsample_conv2d, gk.ops.conv2d_avgpool], ids=OP_IDS)
def test_bad_input(op):
    x, w, b = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3), torch.randn(4)
    with pytest.raises(ValueError, match="x must be a 4-D"):
        op(x[0], w, b)
    with pytest.raises(ValueError, match="weight must be a 4-D"):
        op(x, w[0], b)
    with pytest.raises(ValueError, match="weight has 3 input channels but x has 2"):
        op(x[:, :2], w, b)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        op(x, w, b[:3])
    for padding in (3, -1, (1,), (1, 1, 1), 1.5):
        with pytest.raises(ValueError, match="padding must be an int or a pair"):
            op(x, w, b, padding)
