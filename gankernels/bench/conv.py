"""`gankernels bench --ops conv`: the conv-block ops against the eager torch code that
public GAN implementations write for them (and its torch.compile).

Each case times forward + backward (gradients of every input that has one) unless its
name ends in `_fwd`, and checks the provider's output and gradients against the same
eager torch code in float64.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import torch
from torch.nn import functional as F

from .core import (
    BYTES_COUNTED,
    Case,
    Config,
    Prepared,
    _shape_str,
    compiled,
    register_op,
    rel_err,
)

BIAS_ACT_SHAPES = [(32, 256, 32, 32), (8, 512, 64, 64)]
NORM_ACT_SHAPES = [(16, 256, 64, 64)]
UPFIRDN_SHAPES = [(8, 256, 64, 64), (64, 64, 28, 28)]  # the second: StyleGAN2 on MNIST
MODCONV_SHAPES = [(8, 512, 512, 16, 16)]  # batch, in, out channels, H, W (3x3 kernel)
MBSTD_SHAPES = [(32, 512, 4, 4), (16, 256, 16, 16)]
# batch, in, out channels, H, W of the low-resolution side (3x3 kernel): SNGAN's blocks
RESAMPLE_SHAPES = [(64, 64, 64, 14, 14), (32, 128, 128, 16, 16)]
# (batch, in, out channels, kernel, stride, padding, input size): DCGAN G's first layer
# (z -> 128x7x7) and D's last (a 7x7 kernel over the 7x7 input), a 32 px U-Net's
# innermost up (1x1 -> 2x2) and down (2x2 -> 1x1) layers
DENSE_SHAPES = {
    "convT_1x1_input": [(64, 100, 128, 7, 1, 0, 1), (64, 512, 512, 4, 2, 1, 1)],
    "conv_1x1_output": [(64, 128, 1, 7, 1, 0, 7), (64, 512, 512, 4, 2, 1, 2)],
}
QUICK = {
    "bias_act": [(4, 16, 8, 8)],
    "norm_act": [(2, 8, 8, 8)],
    "upfirdn": [(2, 8, 8, 8)],
    "modconv": [(2, 8, 8, 8, 8)],
    "mbstd": [(8, 16, 4, 4)],
    "resample": [(2, 8, 8, 6, 6)],
    "dense": {
        "convT_1x1_input": [(2, 8, 4, 3, 1, 0, 1), (2, 8, 4, 4, 2, 1, 1)],
        "conv_1x1_output": [(2, 8, 1, 3, 1, 0, 3), (2, 8, 4, 4, 2, 1, 2)],
    },
}
FIR = (1.0, 3.0, 3.0, 1.0)  # the 4-tap binomial resampling filter of StyleGAN2


def _prepare(
    make_inputs: Callable[[Config], tuple],
    ours: Callable,
    theirs: Callable,
    set_bytes: Callable[[Config], int],
    backward: bool = True,
):
    """A case's prepare: `ours` for gk-* providers, `theirs` (eager torch) for torch and
    torch.compile. make_inputs(cfg) returns the call's arguments; tensors that require
    grad get gradients in the timed call."""

    def prepare(provider: str, cfg: Config) -> Prepared:
        eager = ours if provider.startswith("gk-") else theirs
        f = compiled(eager) if provider == "torch.compile" else eager
        sets = [make_inputs(cfg) for _ in range(cfg.copies(set_bytes(cfg)))]
        with torch.no_grad():
            up = torch.randn_like(f(*sets[0]))

        def wrt(args):
            return [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]

        pool = itertools.cycle(sets)

        def fn():
            args = next(pool)
            if not backward:
                with torch.no_grad():
                    return f(*args)
            return torch.autograd.grad(f(*args), wrt(args), up)

        def check() -> float:
            args = make_inputs(cfg)
            args64 = [
                a.detach().double().requires_grad_(a.requires_grad)
                if isinstance(a, torch.Tensor) and a.is_floating_point()
                else a
                for a in args
            ]
            out, ref = f(*args), theirs(*args64)
            errors = [rel_err(out, ref)]
            if backward:
                grads = torch.autograd.grad(out, wrt(args), up)
                refs = torch.autograd.grad(ref, wrt(args64), up.double())
                errors += [rel_err(g, r) for g, r in zip(grads, refs, strict=True)]
            return max(errors)

        return Prepared(fn, check)

    return prepare


def _nbytes(cfg: Config, *shapes: tuple[int, ...]) -> int:
    return sum(math.prod(s) for s in shapes) * cfg.dtype.itemsize


# ---------------------------------------------------------------------------------------
# The eager torch code each op replaces.


def torch_bias_lrelu(x, b):
    """StyleGAN2's FusedLeakyReLU as its public ports write it."""
    return F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


def torch_instance_norm_lrelu(x, w, b):
    return F.leaky_relu(F.instance_norm(x, weight=w, bias=b, eps=1e-5), 0.2)


def torch_upfirdn2d(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """Zero insertion, padding and a depthwise conv with the flipped 2-D filter, then a
    strided slice: the usual pad + grouped-conv reference."""
    N, C, H, W = x.shape
    if up > 1:
        x = x.reshape(N, C, H, 1, W, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(N, C, H * up, W * up)
    x = F.pad(x, list(pad))
    weight = (f * gain).flip([0, 1])[None, None].repeat(C, 1, 1, 1).to(x.dtype)
    x = F.conv2d(x, weight, groups=C)
    return x[:, :, ::down, ::down]


def torch_modconv_weight(weight, styles):
    w = weight[None] * styles[:, None, :, None, None]
    d = (w.square().sum([2, 3, 4]) + 1e-8).rsqrt()
    return w * d[:, :, None, None, None]


def torch_modulated_conv2d(x, weight, styles):
    N, _, H, W = x.shape
    w = torch_modconv_weight(weight, styles)
    y = F.conv2d(x.reshape(1, -1, H, W), w.flatten(0, 1), padding=weight.shape[-1] // 2, groups=N)
    return y.reshape(N, -1, *y.shape[2:])


def torch_upsample_conv(x, w, b):
    """SNGAN's and BigGAN's up-block: nearest upsampling, then a 3x3 convolution."""
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=1)


def torch_conv_avgpool(x, w, b):
    """SNGAN's and BigGAN's down-block: a 3x3 convolution, then 2x2 average pooling."""
    return F.avg_pool2d(F.conv2d(x, w, b, padding=1), 2)


def torch_minibatch_stddev(x, group_size=4, num_channels=1):
    N, C, H, W = x.shape
    G = min(group_size, N)
    y = x.reshape(G, -1, num_channels, C // num_channels, H, W)
    y = (y - y.mean(0)).square().mean(0)
    y = (y + 1e-8).sqrt().mean([2, 3, 4])
    y = y.reshape(-1, num_channels, 1, 1).repeat(G, 1, H, W)
    return torch.cat([x, y], 1)


# ---------------------------------------------------------------------------------------
# Cases.


def _bias_act_cases(cfg: Config) -> list[Case]:
    from ..ops.bias_act import bias_act

    cases = []
    for shape in QUICK["bias_act"] if cfg.quick else BIAS_ACT_SHAPES:
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format

            def inputs(cfg, shape=shape, fmt=fmt):
                x = cfg.randn(*shape).contiguous(memory_format=fmt).requires_grad_()
                return x, cfg.randn(shape[1]).requires_grad_()

            def ours(x, b):
                return bias_act(x, b, act="lrelu")

            prepare = _prepare(inputs, ours, torch_bias_lrelu, lambda c, s=shape: _nbytes(c, s))
            name = "bias_lrelu_cl" if channels_last else "bias_lrelu"
            # forward: x read, y written; backward: dy and y read, dx written
            moved = 5 * math.prod(shape) * cfg.dtype.itemsize
            cases.append(Case("conv", name, _shape_str(shape), prepare, moved))
    return cases


def _norm_act_cases(cfg: Config) -> list[Case]:
    from ..ops.norm_act import norm_act

    cases = []
    for shape in QUICK["norm_act"] if cfg.quick else NORM_ACT_SHAPES:

        def inputs(cfg, shape=shape):
            C = shape[1]
            x = cfg.randn(*shape).requires_grad_()
            w = (1 + 0.1 * cfg.randn(C)).requires_grad_()
            return x, w, cfg.randn(C).requires_grad_()

        def ours(x, w, b):
            return norm_act(x, w, b, kind="instance", act="lrelu", alpha=0.2)

        prepare = _prepare(
            inputs, ours, torch_instance_norm_lrelu, lambda c, s=shape: _nbytes(c, s)
        )
        # forward: x read twice, y written; backward: two passes reading dy and x, dx written
        moved = 8 * math.prod(shape) * cfg.dtype.itemsize
        cases.append(Case("conv", "instnorm_lrelu", _shape_str(shape), prepare, moved))
    return cases


def _upfirdn_cases(cfg: Config) -> list[Case]:
    from ..ops.upfirdn2d import downsample2d, setup_filter, upsample2d

    cases = []
    for shape in QUICK["upfirdn"] if cfg.quick else UPFIRDN_SHAPES:
        numel = math.prod(shape)
        for kind, backward in itertools.product(("up2", "down2"), (False, True)):

            def inputs(cfg, shape=shape, backward=backward):
                x = cfg.randn(*shape).requires_grad_(backward)
                return x, setup_filter(FIR).to(cfg.device)

            if kind == "up2":

                def ours(x, f):
                    return upsample2d(x, f, up=2)

                def theirs(x, f):
                    # 4 taps at 2x: pad (2, 1) per side before the filter, gain 4
                    f2 = f if f.dim() == 2 else f[:, None] * f[None, :]
                    return torch_upfirdn2d(x, f2, up=2, pad=(2, 1, 2, 1), gain=4.0)

                moved = 5 * numel  # x read, 4x written
            else:

                def ours(x, f):
                    return downsample2d(x, f, down=2)

                def theirs(x, f):
                    f2 = f if f.dim() == 2 else f[:, None] * f[None, :]
                    return torch_upfirdn2d(x, f2, down=2, pad=(1, 1, 1, 1))

                moved = numel + numel // 4
            name = f"upfirdn_{kind}" + ("" if backward else "_fwd")
            prepare = _prepare(
                inputs, ours, theirs, lambda c, s=shape: _nbytes(c, s), backward=backward
            )
            moved_bytes = None if backward else moved * cfg.dtype.itemsize
            cases.append(Case("conv", name, _shape_str(shape), prepare, moved_bytes))
    return cases


def _modconv_cases(cfg: Config) -> list[Case]:
    from ..ops.modulated_conv2d import modconv_weight, modulated_conv2d

    cases = []
    for N, cin, cout, H, W in QUICK["modconv"] if cfg.quick else MODCONV_SHAPES:

        def weight_inputs(cfg, N=N, cin=cin, cout=cout):
            return cfg.randn(cout, cin, 3, 3).requires_grad_(), cfg.randn(N, cin).requires_grad_()

        def ours_weight(weight, styles):
            return modconv_weight(weight, styles, True, 1e-8)

        def conv_inputs(cfg, N=N, cin=cin, cout=cout, H=H, W=W):
            return (
                cfg.randn(N, cin, H, W).requires_grad_(),
                cfg.randn(cout, cin, 3, 3).requires_grad_(),
                cfg.randn(N, cin).requires_grad_(),
            )

        def ours_conv(x, weight, styles):
            return modulated_conv2d(x, weight, styles, padding=1)

        size = f"{N}x{cout}x{cin}x3x3"
        cases.append(
            Case(
                "conv",
                "modconv_weight",
                size,
                _prepare(weight_inputs, ours_weight, torch_modconv_weight, lambda c: 0),
            )
        )
        cases.append(
            Case(
                "conv",
                "modconv",
                f"{size} {H}x{W}",
                _prepare(conv_inputs, ours_conv, torch_modulated_conv2d, lambda c: 0),
                time_scale=2.0,
            )
        )
    return cases


def _mbstd_cases(cfg: Config) -> list[Case]:
    from ..ops.minibatch_stddev import minibatch_stddev

    cases = []
    for shape in QUICK["mbstd"] if cfg.quick else MBSTD_SHAPES:

        def inputs(cfg, shape=shape):
            return (cfg.randn(*shape).requires_grad_(),)

        prepare = _prepare(
            inputs, minibatch_stddev, torch_minibatch_stddev, lambda c, s=shape: _nbytes(c, s)
        )
        cases.append(Case("conv", "mbstd", _shape_str(shape), prepare))
    return cases


def _resample_conv_cases(cfg: Config) -> list[Case]:
    from ..ops.resample_conv import conv2d_avgpool, upsample_conv2d

    cases = []
    for N, cin, cout, H, W in QUICK["resample"] if cfg.quick else RESAMPLE_SHAPES:

        def inputs(cfg, N=N, cin=cin, cout=cout, H=H, W=W, scale=1):
            return (
                cfg.randn(N, cin, H * scale, W * scale).requires_grad_(),
                cfg.randn(cout, cin, 3, 3).requires_grad_(),
                cfg.randn(cout).requires_grad_(),
            )

        def ours_up(x, w, b):
            return upsample_conv2d(x, w, b, 1)

        def ours_down(x, w, b):
            return conv2d_avgpool(x, w, b, 1)

        size = f"{N}x{cout}x{cin}x3x3"
        up = _prepare(inputs, ours_up, torch_upsample_conv, lambda c: 0)
        cases.append(Case("conv", "upsample_conv", f"{size} {H}x{W}->{2 * H}x{2 * W}", up))
        down_inputs = functools.partial(inputs, scale=2)
        down = _prepare(down_inputs, ours_down, torch_conv_avgpool, lambda c: 0)
        cases.append(Case("conv", "conv_avgpool", f"{size} {2 * H}x{2 * W}->{H}x{W}", down))
    return cases


def _dense_conv_cases(cfg: Config) -> list[Case]:
    """The layers the gankernels build runs as matrix products (a transposed convolution
    from one input position, a convolution with one output position), through the
    layers themselves, against the plain convolutions."""
    from ..nn.layer_act import Conv2dAct, ConvTranspose2dAct

    shapes = QUICK["dense"] if cfg.quick else DENSE_SHAPES
    cases = []
    for name, layer_class, plain in (
        ("convT_1x1_input", ConvTranspose2dAct, F.conv_transpose2d),
        ("conv_1x1_output", Conv2dAct, F.conv2d),
    ):
        for N, cin, cout, k, stride, pad, size in shapes[name]:
            layer = layer_class(cin, cout, k, stride, pad, device=cfg.device, dtype=cfg.dtype)

            def inputs(cfg, N=N, cin=cin, size=size, layer=layer):
                return (
                    cfg.randn(N, cin, size, size).requires_grad_(),
                    torch.randn_like(layer.weight).requires_grad_(),
                    torch.randn_like(layer.bias).requires_grad_(),
                )

            def ours(x, w, b, layer=layer):
                return torch.func.functional_call(layer, {"weight": w, "bias": b}, (x,))

            def theirs(x, w, b, plain=plain, stride=stride, pad=pad):
                return plain(x, w, b, stride, pad)

            out = layer(torch.zeros(1, cin, size, size, device=cfg.device, dtype=cfg.dtype))
            shape = f"{N}x{cin}x{size}x{size}->{cout}x{out.shape[-2]}x{out.shape[-1]}"
            cases.append(Case("conv", name, shape, _prepare(inputs, ours, theirs, lambda c: 0)))
    return cases


@register_op("conv")
def conv_cases(cfg: Config) -> list[Case]:
    """Conv-block ops against the eager torch code they replace."""
    cases = []
    groups = (
        _bias_act_cases,
        _norm_act_cases,
        _upfirdn_cases,
        _modconv_cases,
        _mbstd_cases,
        _resample_conv_cases,
        _dense_conv_cases,
    )
    for group in groups:
        cases += group(cfg)
    return cases


# What the GB/s column counts.
BYTES_COUNTED["conv"] = (
    "bias_lrelu: 5*X (x read, y written; dy and y read, dx written); "
    "instnorm_lrelu: 8*X (x read twice, y written; two passes reading dy and x, dx "
    "written); upfirdn_up2_fwd: X read + 4*X written; upfirdn_down2_fwd: X read + X/4 "
    "written; others: none"
)
