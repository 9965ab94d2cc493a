"""bias_act in every available backend against torch's own activations, gradients of the
first and second order in float64, layouts, dtypes and bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import available_backends

import gankernels as gk
from gankernels.ops.bias_act import ACTIVATIONS

BACKENDS = available_backends()
IDS = [b for b, _ in BACKENDS]

# torch's version of each activation with its default alpha.
TORCH_ACT = {
    "linear": lambda z: z,
    "relu": F.relu,
    "lrelu": lambda z: F.leaky_relu(z, 0.2),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
    "selu": F.selu,
    "softplus": F.softplus,
    "swish": F.silu,
}
GAIN = {"relu": math.sqrt(2), "lrelu": math.sqrt(2), "swish": math.sqrt(2)}
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
}


def torch_bias_act(x, b, act, clamp=None, dim=1):
    shape = [1] * x.dim()
    shape[dim] = -1
    y = TORCH_ACT[act](x + b.view(shape)) * GAIN.get(act, 1.0)
    return y if clamp is None else y.clamp(-clamp, clamp)


def layouts(x):
    out = [x]
    if x.dim() == 4:
        out.append(x.contiguous(memory_format=torch.channels_last))
        out.append(x.transpose(2, 3).contiguous().transpose(2, 3))  # neither: copied
    return out


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("clamp", [None, 0.8], ids=["noclamp", "clamp"])
def test_forward_backward_match_torch(backend, device, act, clamp):
    base = torch.randn(3, 5, 7, 6, dtype=torch.float64, device=device) * 2
    b = torch.randn(5, dtype=torch.float64, device=device)
    for i, x in enumerate(layouts(base)):
        x = x.clone().requires_grad_(True)
        bb = b.clone().requires_grad_(True)
        with gk.use_backend(backend):
            y = gk.ops.bias_act(x, bb, act=act, clamp=clamp)
            up = torch.randn_like(y)
            y.backward(up)
        if i < 2:  # contiguous and channels_last are kept
            assert y.stride() == x.stride()
        xr, br = x.detach().clone().requires_grad_(True), b.clone().requires_grad_(True)
        want = torch_bias_act(xr, br, act, clamp)
        want.backward(up)
        torch.testing.assert_close(y, want, **TOL[torch.float64])
        torch.testing.assert_close(x.grad, xr.grad, **TOL[torch.float64])
        torch.testing.assert_close(bb.grad, br.grad, **TOL[torch.float64])


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_gradcheck_and_gradgradcheck(backend, device, act):
    x = torch.randn(2, 3, 4, 3, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, device=device, requires_grad=True)
    # Interpreted Triton costs milliseconds a launch: random projections instead of full
    # Jacobians there (its kernels are compared entry by entry in test_triton_bias_act_kernels).
    fast = backend == "triton" and device == "cpu"
    with gk.use_backend(backend):
        for clamp in (None, 0.9):

            def fn(x, b, clamp=clamp):
                return gk.ops.bias_act(x, b, act=act, clamp=clamp)

            assert torch.autograd.gradcheck(fn, (x, b), fast_mode=fast)
            assert torch.autograd.gradgradcheck(fn, (x, b), fast_mode=fast)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_and_other_dims(backend, device, dtype):
    for shape, dim in (((4, 6, 5, 3), 1), ((9, 6), 1), ((6, 9), 0), ((2, 3, 11), -1)):
        x = torch.randn(shape, device=device).to(dtype).requires_grad_(True)
        b = torch.randn(shape[dim], device=device).to(dtype)
        with gk.use_backend(backend):
            y = gk.ops.bias_act(x, b, dim=dim, act="lrelu")
            y.sum().backward()
        assert y.dtype == dtype
        x64 = x.detach().double().requires_grad_(True)
        want = torch_bias_act(x64, b.double(), "lrelu", dim=dim % x.dim())
        want.sum().backward()
        torch.testing.assert_close(y.double(), want, **TOL[dtype])
        torch.testing.assert_close(x.grad.double(), x64.grad, **TOL[dtype])


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
def test_no_bias_custom_alpha_gain(backend, device):
    x = torch.randn(4, 3, 5, device=device, dtype=torch.float64)
    with gk.use_backend(backend):
        y = gk.ops.bias_act(x, act="lrelu", alpha=0.1, gain=3.0)
        e = gk.ops.bias_act(x, act="elu", alpha=0.5)
    torch.testing.assert_close(y, F.leaky_relu(x, 0.1) * 3.0)
    torch.testing.assert_close(e, F.elu(x, 0.5))


def test_compile_fullgraph_matches_eager():
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    step = torch.compile(lambda x, b: gk.ops.bias_act(x, b, act="lrelu", clamp=1.5), fullgraph=True)
    y = step(x, b)
    want = torch_bias_act(x, b, "lrelu", 1.5)
    torch.testing.assert_close(y, want)


def test_modules():
    x = torch.randn(2, 6, 4, 4, requires_grad=True)
    m = gk.nn.FusedLeakyReLU(6)
    assert [n for n, _ in m.named_parameters()] == ["bias"]
    torch.manual_seed(0)
    m.bias.data.normal_()
    torch.testing.assert_close(m(x), F.leaky_relu(x + m.bias.view(1, -1, 1, 1), 0.2) * 2**0.5)
    ba = gk.nn.BiasAct(6, act="tanh", clamp=0.5)
    ba.bias.data.normal_()
    torch.testing.assert_close(ba(x), torch.tanh(x + ba.bias.view(1, -1, 1, 1)).clamp(-0.5, 0.5))
    assert "tanh" in repr(ba)
    assert gk.nn.FusedLeakyReLU(6, bias=False).bias is None


def test_bad_input():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="unknown act 'gelu'"):
        gk.ops.bias_act(x, act="gelu")
    with pytest.raises(ValueError, match=r"b must be a 1-D tensor of length x.shape\[1\] = 3"):
        gk.ops.bias_act(x, torch.randn(4))
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        gk.ops.bias_act(x, act="lrelu", alpha=-0.2)
    with pytest.raises(ValueError, match="takes no alpha"):
        gk.ops.bias_act(x, act="tanh", alpha=0.2)
    with pytest.raises(ValueError, match="gain must be a finite number > 0"):
        gk.ops.bias_act(x, act="relu", gain=0.0)
    with pytest.raises(ValueError, match="clamp must be a finite number >= 0"):
        gk.ops.bias_act(x, clamp=-1.0)
    with pytest.raises(ValueError, match="dim must be an int in"):
        gk.ops.bias_act(x, dim=3)
    with pytest.raises(TypeError, match="floating-point"):
        gk.ops.bias_act(torch.ones(2, 3, dtype=torch.long))


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("act,alpha", [("relu", 0.0), ("lrelu", 0.2), ("lrelu", 0.0)])
def test_piecewise_linear_in_place_matches_torch(backend, device, act, alpha):
    """The in-place relu / lrelu the torch-path layers use: values and gradients of the
    first and second order equal torch's, in every layout and dtype."""
    from gankernels.ops.bias_act import piecewise_linear_

    def ours(x, w):
        return piecewise_linear_(F.conv2d(x, w, padding=1), act, alpha)

    def theirs(x, w):
        return F.leaky_relu(F.conv2d(x, w, padding=1), alpha)

    x = torch.randn(2, 3, 5, 7, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    fast = backend == "triton" and device == "cpu"
    with gk.use_backend(backend):
        assert torch.autograd.gradcheck(ours, (x, w), fast_mode=fast)
        assert torch.autograd.gradgradcheck(ours, (x, w), fast_mode=fast)
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            for xl in layouts(torch.randn(3, 3, 6, 5, device=device).to(dtype)):
                xl = xl.requires_grad_(True)
                wl = torch.randn(5, 3, 3, 3, device=device).to(dtype)
                y = ours(xl, wl)
                dy = torch.randn_like(y)
                (gx,) = torch.autograd.grad(y, xl, dy, create_graph=True)
                x64 = xl.detach().double().requires_grad_(True)
                want = theirs(x64, wl.double())
                torch.testing.assert_close(y.double(), want, **TOL[dtype])
                # The gradient against torch's in the same dtype (the same convolution
                # kernels; dy * alpha may round differently, in float32 here).
                xt = xl.detach().clone().requires_grad_(True)
                (want_gx,) = torch.autograd.grad(theirs(xt, wl), xt, dy)
                torch.testing.assert_close(gx, want_gx, **TOL[dtype])
                # In place: the convolution's output layout is kept.
                assert y.stride() == F.conv2d(xl.detach(), wl, padding=1).stride()


def _zero_conv_backwards(fn) -> tuple[int, int]:
    """(convolution backwards whose incoming gradient is all zeros, all of them) in fn()."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        zero = total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution_backward.default:
                Count.total += 1
                Count.zero += int(not args[0].any())
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.zero, Count.total


@pytest.mark.parametrize("impl", ["torch", "fused"])
def test_penalty_does_not_run_the_forward_graph_backward_on_zeros(impl):
    """In a gradient penalty the penalised forward's output is not in the loss: torch's
    relu / lrelu still send a tensor of zeros back through its whole backward (a full
    backward pass of D on zeros); ours send nothing, for the same gradients."""

    def critic(fused):
        torch.manual_seed(0)
        return torch.nn.Sequential(
            gk.nn.Conv2dAct(3, 8, 3, stride=2, padding=1, act="lrelu", fused=fused),
            gk.nn.Conv2dAct(8, 16, 3, stride=2, padding=1, act="relu", fused=fused),
            torch.nn.Flatten(),
            torch.nn.Linear(16 * 3 * 3, 1),
        ).double()

    x = torch.randn(4, 3, 11, 9, dtype=torch.float64)
    grads = {}
    zeros = {}
    for name, fused in (("gk", True), ("torch", False)):
        D = critic(fused)
        xi = x.clone().requires_grad_(True)

        def step(D=D, xi=xi):
            (g,) = torch.autograd.grad(D(xi).sum(), xi, create_graph=True)
            g.square().sum().backward()

        with gk.use_fusion(impl):
            zeros[name] = _zero_conv_backwards(step)
        grads[name] = [p.grad for p in D.parameters()]
    assert zeros["gk"][0] == 0 and zeros["gk"][1] > 0, zeros
    assert zeros["torch"][0] >= 2, zeros  # both convolutions' backward on zeros
    for a, b in zip(grads["gk"], grads["torch"], strict=True):
        # A bias that reaches the penalty only through relu' has no gradient (None) in
        # ours, a tensor of zeros in torch's; the last bias is in neither's penalty.
        if a is None and b is not None:
            a = torch.zeros_like(b)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
