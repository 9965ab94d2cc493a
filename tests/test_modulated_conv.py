"""modulated_conv2d and its weight preparation in every available backend against
StyleGAN2's plain torch modulated convolution: forward, first and second order gradients
in float64, layouts, dtypes, the module, torch.compile and bad input."""

import importlib

import pytest
import torch
import torch.nn.functional as F
from conftest import available_backends

import gankernels as gk

mc = importlib.import_module("gankernels.ops.modulated_conv2d")

BACKENDS = available_backends()
IDS = [b for b, _ in BACKENDS]
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.bfloat16: dict(rtol=3e-2, atol=3e-2),
    torch.float16: dict(rtol=3e-3, atol=3e-3),
}


def stylegan2_weight(weight, styles, demodulate):
    w = weight.unsqueeze(0) * styles.reshape(styles.shape[0], 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * dcoefs.reshape(styles.shape[0], -1, 1, 1, 1)
    return w


def stylegan2_modconv(x, weight, styles, demodulate=True, padding=0):
    """StyleGAN2's fused modulated convolution (up = down = 1)."""
    N, C_in, H, W = x.shape
    w = stylegan2_weight(weight, styles, demodulate)
    y = F.conv2d(
        x.reshape(1, -1, H, W), w.reshape(-1, C_in, *weight.shape[2:]), padding=padding, groups=N
    )
    return y.reshape(N, -1, *y.shape[2:])


def inputs(N, C_out, C_in, k, H, W, device, dtype=torch.float64, kw=None):
    x = torch.randn(N, C_in, H, W, dtype=dtype, device=device)
    weight = torch.randn(C_out, C_in, k, kw or k, dtype=dtype, device=device)
    styles = torch.randn(N, C_in, dtype=dtype, device=device) + 1
    return x, weight, styles


# (N, O, I, kh, kw)
WEIGHT_CASES = [(3, 5, 4, 3, 3), (2, 7, 3, 1, 1), (1, 2, 37, 3, 2), (4, 3, 5, 5, 5)]


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("demodulate", [True, False], ids=["demod", "nodemod"])
@pytest.mark.parametrize("case", WEIGHT_CASES, ids=lambda c: "x".join(map(str, c)))
def test_weight_kernels_match_stylegan2(backend, device, demodulate, case):
    N, C_out, C_in, kh, kw = case
    weight = torch.randn(
        C_out, C_in, kh, kw, dtype=torch.float64, device=device, requires_grad=True
    )
    styles = torch.randn(N, C_in, dtype=torch.float64, device=device, requires_grad=True)
    with gk.use_backend(backend):
        w = mc.modconv_weight(weight, styles, demodulate, 1e-8)
    want = stylegan2_weight(weight, styles, demodulate)
    torch.testing.assert_close(w, want, **TOL[torch.float64])
    dw = torch.randn_like(want)
    got = torch.autograd.grad(w, (weight, styles), dw)
    expected = torch.autograd.grad(want, (weight, styles), dw)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("demodulate", [True, False], ids=["demod", "nodemod"])
def test_weight_gradcheck_and_gradgradcheck(backend, device, demodulate):
    fast = backend == "triton"
    weight = torch.randn(3, 4, 3, 2, dtype=torch.float64, device=device, requires_grad=True)
    styles = torch.randn(2, 4, dtype=torch.float64, device=device, requires_grad=True)

    def fn(weight, styles):
        return mc.modconv_weight(weight, styles, demodulate, 1e-8)

    with gk.use_backend(backend):
        assert torch.autograd.gradcheck(fn, (weight, styles), fast_mode=fast)
        assert torch.autograd.gradgradcheck(fn, (weight, styles), fast_mode=fast)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("demodulate", [True, False], ids=["demod", "nodemod"])
@pytest.mark.parametrize("padding", [0, 1, (2, 0)], ids=["pad0", "pad1", "pad20"])
def test_modulated_conv2d_matches_stylegan2(backend, device, demodulate, padding):
    x, weight, styles = inputs(3, 5, 4, 3, 7, 6, device)
    pad = padding if isinstance(padding, int) else tuple(padding)
    for xl in (
        x,
        x.contiguous(memory_format=torch.channels_last),
        x.transpose(2, 3).contiguous().transpose(2, 3),
    ):
        args = [t.clone().requires_grad_(True) for t in (xl, weight, styles)]
        ref = [t.clone().requires_grad_(True) for t in (x, weight, styles)]
        with gk.use_backend(backend):
            y = gk.ops.modulated_conv2d(*args, demodulate=demodulate, padding=padding)
        want = stylegan2_modconv(*ref, demodulate=demodulate, padding=pad)
        torch.testing.assert_close(y, want, **TOL[torch.float64])
        dy = torch.randn_like(want)
        got = torch.autograd.grad(y, args, dy)
        expected = torch.autograd.grad(want, ref, dy)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, **TOL[torch.float64])


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
def test_modulated_conv2d_gradcheck_and_gradgradcheck(backend, device):
    fast = backend == "triton"
    args = [t.requires_grad_(True) for t in inputs(2, 3, 2, 3, 4, 5, device)]

    def fn(x, weight, styles):
        return gk.ops.modulated_conv2d(x, weight, styles, padding=1)

    with gk.use_backend(backend):
        assert torch.autograd.gradcheck(fn, args, fast_mode=fast)
        assert torch.autograd.gradgradcheck(fn, args, fast_mode=fast)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
def test_path_length_second_order_matches_stylegan2(backend, device):
    """Path length regularisation: the gradient of ||d sum(y * v) / d styles||^2."""
    x, weight, styles = inputs(3, 4, 5, 3, 6, 5, device)
    v = torch.randn(3, 4, 6, 5, dtype=torch.float64, device=device)
    grads = []
    for use_ours in (True, False):
        args = [t.clone().requires_grad_(True) for t in (x, weight, styles)]
        if use_ours:
            with gk.use_backend(backend):
                y = gk.ops.modulated_conv2d(*args, padding=1)
        else:
            y = stylegan2_modconv(*args, padding=1)
        (g,) = torch.autograd.grad((y * v).sum(), args[2], create_graph=True)
        grads.append([g, *torch.autograd.grad(g.square().sum(), args)])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision(backend, device, dtype):
    x, weight, styles = inputs(2, 6, 5, 3, 6, 7, device, dtype=torch.float32)
    weight = weight / 4
    low = [t.to(dtype).requires_grad_(True) for t in (x, weight, styles)]
    with gk.use_backend(backend):
        w = mc.modconv_weight(low[1], low[2], True, 1e-8)
        dw = torch.randn_like(w)
        grads = torch.autograd.grad(w, low[1:], dw)
    hi = [t.detach().double().requires_grad_(True) for t in low]
    want = stylegan2_weight(hi[1], hi[2], True)
    torch.testing.assert_close(w.double(), want, **TOL[dtype])
    for a, b in zip(grads, torch.autograd.grad(want, hi[1:], dw.double()), strict=True):
        assert a.dtype == dtype
        torch.testing.assert_close(a.double(), b, **TOL[dtype])
    if dtype == torch.float16 and device == "cpu":
        return  # torch has no float16 convolution on the CPU
    with gk.use_backend(backend):
        y = gk.ops.modulated_conv2d(*low, padding=1)
    assert y.dtype == dtype
    want = stylegan2_modconv(*hi, padding=1)
    torch.testing.assert_close(
        y.double(), want, rtol=TOL[dtype]["rtol"] * 4, atol=TOL[dtype]["atol"] * 4
    )


def test_module_matches_stylegan2():
    torch.manual_seed(0)
    m = gk.nn.ModulatedConv2d(4, 6, 3, style_dim=8)
    assert m.weight.shape == (6, 4, 3, 3)
    x, w = torch.randn(3, 4, 7, 5), torch.randn(3, 8)
    y = m(x, w)
    assert y.shape == (3, 6, 7, 5)
    styles = w @ (m.affine_weight / 8**0.5).t() + m.affine_bias
    want = stylegan2_modconv(x, m.weight / (4 * 9) ** 0.5, styles, padding=1)
    torch.testing.assert_close(y, want)
    torch.testing.assert_close(m.affine_bias, torch.ones(4))
    y.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    m2 = gk.nn.ModulatedConv2d(4, 6, 1, style_dim=8, demodulate=False)
    want = stylegan2_modconv(x, m2.weight / 2, w @ (m2.affine_weight / 8**0.5).t() + 1, False)
    torch.testing.assert_close(m2(x, w), want)
    assert "demodulate=False" in repr(m2)


def test_compile_fullgraph_matches_eager():
    m = gk.nn.ModulatedConv2d(3, 4, 3, style_dim=5)

    def step(x, w):
        return m(x, w).square().sum()

    compiled = torch.compile(step, fullgraph=True)
    x, w = torch.randn(2, 3, 6, 5), torch.randn(2, 5)
    torch.testing.assert_close(compiled(x, w), step(x, w), rtol=1e-5, atol=1e-5)
    want = torch.autograd.grad(step(x, w), list(m.parameters()))
    got = torch.autograd.grad(compiled(x, w), list(m.parameters()))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_bad_input():
    x, weight, styles = inputs(2, 3, 4, 3, 5, 5, "cpu", dtype=torch.float32)
    with pytest.raises(
        ValueError, match=r"styles must have shape \(N, I\) = \(2, 4\).*got \(2, 3\)"
    ):
        gk.ops.modulated_conv2d(x, weight, styles[:, :3])
    with pytest.raises(ValueError, match=r"styles must have shape \(N, I\) = \(2, 4\)"):
        gk.ops.modulated_conv2d(x, weight, styles[:1])
    with pytest.raises(ValueError, match=r"styles must be a 2-D"):
        gk.ops.modulated_conv2d(x, weight, styles[0])
    with pytest.raises(ValueError, match=r"weight must be a 4-D floating-point \(O, I, kh, kw\)"):
        gk.ops.modulated_conv2d(x, weight[0], styles)
    with pytest.raises(ValueError, match=r"x must be a 4-D"):
        gk.ops.modulated_conv2d(x[0], weight, styles)
    with pytest.raises(ValueError, match=r"weight has 3 input channels .* x has 4"):
        gk.ops.modulated_conv2d(x, weight[:, :3], styles)
    for name in ("up", "down"):
        for bad in (0, -1):
            with pytest.raises(ValueError, match=f"{name} must be an int >= 1"):
                gk.ops.modulated_conv2d(x, weight, styles, **{name: bad})
        with pytest.raises(ValueError, match=f"{name}=3 is not supported; supported"):
            gk.ops.modulated_conv2d(x, weight, styles, **{name: 3})
    with pytest.raises(ValueError, match="up and down cannot both be > 1"):
        gk.ops.modulated_conv2d(x, weight, styles, up=2, down=2)
    with pytest.raises(ValueError, match="padding must be an int >= 0"):
        gk.ops.modulated_conv2d(x, weight, styles, padding=-1)
    with pytest.raises(ValueError, match="ModulatedConv2d: up must be one of"):
        gk.nn.ModulatedConv2d(4, 3, 3, 8, up=0)
    with pytest.raises(ValueError, match="ModulatedConv2d: style_dim must be an int >= 1"):
        gk.nn.ModulatedConv2d(4, 3, 3, 0)
    with pytest.raises(ValueError, match="fused must be a bool, got 'yes'"):
        gk.ops.modulated_conv2d(x, weight, styles, fused="yes")
    with pytest.raises(ValueError, match="ModulatedConv2d: fused must be a bool, got 1"):
        gk.nn.ModulatedConv2d(4, 3, 3, 8, fused=1)


# ---------------------------------------------------------------------------------------
# up=2 / down=2: against the resampling written out in plain torch.


def _fir(x, f, pad, gain=1.0):
    """Pad (negative: crop) x by pad = (x0, x1, y0, y1) and convolve every channel with
    the 2-D filter f times gain (a convolution: the filter is flipped for conv2d)."""
    C = x.shape[1]
    x = F.pad(x, list(pad))
    k = (f.flip([0, 1]) * gain).to(x.dtype).expand(C, 1, *f.shape)
    return F.conv2d(x, k, groups=C)


def _zero_insert(x, up):
    N, C, H, W = x.shape
    z = x.new_zeros(N, C, (H - 1) * up + 1, (W - 1) * up + 1)
    z[:, :, ::up, ::up] = x
    return z


def plain_resampled_modconv(x, weight, styles, f, up, down, padding, demodulate=True):
    """StyleGAN2's up / down modulated convolution as explicit steps. up: the transposed
    convolution is zero insertion, a full padding and a convolution with the flipped
    weight; then the filter (gain up^2) with the padding that makes the output exactly up
    times a same-size convolution. down: the filter, then a stride-2 convolution."""
    N, C, H, W = x.shape
    kh, kw = weight.shape[2:]
    fh, fw = f.shape
    w = stylegan2_weight(weight, styles, demodulate).reshape(-1, C, kh, kw)
    xg = x.reshape(1, -1, H, W)
    if down > 1:
        pad = (
            padding + (fw - down + 1) // 2,
            padding + (fw - down) // 2,
            padding + (fh - down + 1) // 2,
            padding + (fh - down) // 2,
        )
        y = F.conv2d(_fir(xg, f, pad), w, stride=down, groups=N)
    else:
        z = F.pad(_zero_insert(xg, up), [kw - 1, kw - 1, kh - 1, kh - 1])
        y = F.conv2d(z, w.flip([2, 3]), groups=N)
        pad = (
            padding + (fw + up - 1) // 2 - (kw - 1),
            padding + (fw - up) // 2 - (kw - up),
            padding + (fh + up - 1) // 2 - (kh - 1),
            padding + (fh - up) // 2 - (kh - up),
        )
        y = _fir(y, f, pad, gain=up * up)
    return y.reshape(N, -1, *y.shape[2:])


RESAMPLE_CASES = [
    # (N, O, I, k, H, W, up, down, filter taps)
    (2, 3, 4, 3, 6, 8, 2, 1, (1, 3, 3, 1)),
    (2, 3, 4, 3, 8, 6, 1, 2, (1, 3, 3, 1)),
    (3, 2, 3, 1, 5, 7, 2, 1, (1, 3, 3, 1)),  # 1x1 kernel, odd sizes
    (3, 2, 3, 1, 6, 10, 1, 2, (1, 3, 3, 1)),
    (1, 4, 2, 5, 4, 5, 2, 1, (1, 2, 1)),  # odd filter and kernel
    (2, 2, 5, 5, 9, 7, 1, 2, (1, 2, 1)),
]


def has_upfirdn2d(backend: str) -> bool:
    """Whether upfirdn2d (which up / down run through) has its kernel in `backend`."""
    if backend in ("reference", "triton"):
        return True
    return hasattr(gk._backend.extension(), f"upfirdn2d_forward_{backend}")


# The backend of the resampling tests that are not run per backend: the CPU kernels where
# upfirdn2d has one too.
RESAMPLE_BACKEND = "cpu" if gk.backends()["cpu"] and has_upfirdn2d("cpu") else "reference"


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("case", RESAMPLE_CASES, ids=lambda c: "-".join(map(str, c[:8])))
def test_resampled_matches_plain_torch(backend, device, case):
    if not has_upfirdn2d(backend):
        pytest.skip(f"upfirdn2d has no {backend} kernel in this build")
    with gk.use_backend(backend):  # forward and backward: upfirdn2d follows it too
        check_resampled(device, case)


def check_resampled(device, case):
    N, Co, C, k, H, W, up, down, taps = case
    x, weight, styles = inputs(N, Co, C, k, H, W, device)
    f = gk.ops.setup_filter(taps, device=device).double()
    for xl in (x, x.contiguous(memory_format=torch.channels_last)):
        args = [t.clone().requires_grad_(True) for t in (xl, weight, styles)]
        ref = [t.clone().requires_grad_(True) for t in (x, weight, styles)]
        y = gk.ops.modulated_conv2d(*args, up=up, down=down, padding=k // 2, resample_filter=f)
        want = plain_resampled_modconv(*ref, f, up, down, k // 2)
        if k % 2 == 1:  # a same-size convolution: exactly up times / 1/down times the size
            assert y.shape[2:] == (H * up // down, W * up // down)
        torch.testing.assert_close(y, want, **TOL[torch.float64])
        dy = torch.randn_like(want)
        for a, b in zip(
            torch.autograd.grad(y, args, dy), torch.autograd.grad(want, ref, dy), strict=True
        ):
            torch.testing.assert_close(a, b, **TOL[torch.float64])


@gk.use_backend(RESAMPLE_BACKEND)
def test_resampled_box_filter_is_nearest_upsampling_and_average_pooling():
    """With a box filter [1, 1], a 1x1 all-ones weight and unit styles, up=2 is nearest
    neighbour upsampling and down=2 is 2x2 average pooling (torch's own ops)."""
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    ones = (
        torch.ones(3, 3, 1, 1, dtype=torch.float64)
        * torch.eye(3, dtype=torch.float64)[:, :, None, None]
    )
    styles = torch.ones(2, 3, dtype=torch.float64)
    up = gk.ops.modulated_conv2d(x, ones, styles, demodulate=False, up=2, resample_filter=[1, 1])
    torch.testing.assert_close(up, F.interpolate(x, scale_factor=2, mode="nearest"))
    down = gk.ops.modulated_conv2d(
        x, ones, styles, demodulate=False, down=2, resample_filter=[1, 1]
    )
    torch.testing.assert_close(down, F.avg_pool2d(x, 2))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@gk.use_backend(RESAMPLE_BACKEND)
def test_resampled_gradcheck_and_gradgradcheck(fused):
    """up / down in both forms; the unfused form also at the same size (the fused one's
    same-size gradients are checked per backend above)."""
    f = gk.ops.setup_filter((1, 3, 3, 1)).double()
    factors = ((2, 1), (1, 2)) if fused else ((1, 1), (2, 1), (1, 2))
    for up, down in factors:
        args = [t.requires_grad_(True) for t in inputs(2, 3, 2, 3, 4, 5, "cpu")]

        def fn(x, weight, styles, up=up, down=down):
            return gk.ops.modulated_conv2d(
                x, weight, styles, up=up, down=down, padding=1, resample_filter=f, fused=fused
            )

        assert torch.autograd.gradcheck(fn, args)
        assert torch.autograd.gradgradcheck(fn, args)


@gk.use_backend(RESAMPLE_BACKEND)
def test_module_up_down_shapes():
    x, w = torch.randn(2, 4, 8, 6), torch.randn(2, 5)
    up = gk.nn.ModulatedConv2d(4, 3, 3, 5, up=2)
    assert up(x, w).shape == (2, 3, 16, 12)
    down = gk.nn.ModulatedConv2d(4, 3, 3, 5, down=2)
    assert down(x, w).shape == (2, 3, 4, 3)
    torch.testing.assert_close(down.resample_filter.sum(), torch.tensor(1.0))
    styles = w @ (up.affine_weight / 5**0.5).t() + 1
    f = gk.ops.setup_filter((1, 3, 3, 1))
    want = plain_resampled_modconv(x, up.weight / 6, styles, f, 2, 1, 1)
    torch.testing.assert_close(up(x, w), want, rtol=1e-5, atol=1e-5)


# fused=False: StyleGAN2's training path (input scaled, shared-weight conv, output scaled).

UNFUSED_CASES = [(3, 5, 4, 3, 7, 5, 1, 1, (1, 3, 3, 1)), (2, 3, 6, 1, 5, 6, 1, 1, (1, 3, 3, 1))]


@pytest.mark.parametrize("demodulate", [True, False], ids=["demod", "nodemod"])
@pytest.mark.parametrize(
    "case", UNFUSED_CASES + RESAMPLE_CASES, ids=lambda c: "-".join(map(str, c[:8]))
)
def test_unfused_matches_stylegan2(case, demodulate):
    N, Co, C, k, H, W, up, down, taps = case
    x, weight, styles = inputs(N, Co, C, k, H, W, "cpu")
    f = gk.ops.setup_filter(taps).double()
    x = x.contiguous(memory_format=torch.channels_last) if C % 2 == 0 else x
    args = [t.clone().requires_grad_(True) for t in (x, weight, styles)]
    ref = [t.clone().requires_grad_(True) for t in (x, weight, styles)]
    kw = dict(up=up, down=down, padding=k // 2, resample_filter=f, demodulate=demodulate)
    y = gk.ops.modulated_conv2d(*args, fused=False, **kw)
    if up == down == 1:
        want = stylegan2_modconv(*ref, demodulate=demodulate, padding=k // 2)
    else:
        want = plain_resampled_modconv(*ref, f, up, down, k // 2, demodulate)
    torch.testing.assert_close(y, want, **TOL[torch.float64])
    dy = torch.randn_like(want)
    for a, b in zip(
        torch.autograd.grad(y, args, dy), torch.autograd.grad(want, ref, dy), strict=True
    ):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


@pytest.mark.parametrize("up", [1, 2])
def test_module_paths_agree_and_the_reference_build_is_plain_torch(up):
    torch.manual_seed(0)
    m = gk.nn.ModulatedConv2d(5, 6, 3, style_dim=8, up=up)
    x, w = torch.randn(4, 5, 7, 6), torch.randn(4, 8)
    out = {}
    for mode in ("fused", "torch"):
        with gk.use_fusion(mode):
            y = m(x, w)
            grads = torch.autograd.grad(y.square().sum(), list(m.parameters()))
        out[mode] = (y, grads)
    torch.testing.assert_close(out["fused"][0], out["torch"][0], rtol=1e-5, atol=1e-5)
    for a, b in zip(out["fused"][1], out["torch"][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    ref = gk.nn.ModulatedConv2d(5, 6, 3, style_dim=8, up=up, fused=False)
    ref.load_state_dict(m.state_dict())
    with gk.use_fusion("fused"):  # the reference build does not follow the mode
        torch.testing.assert_close(ref(x, w), out["torch"][0], rtol=0, atol=0)
    assert "reference" in repr(ref) and "impl" in repr(m)
