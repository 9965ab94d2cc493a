"""minibatch_stddev: StyleGAN2's minibatch standard deviation layer, with first and second
order gradients.

x (N, C, H, W) is split into G = min(group_size, N) groups; sample n sits in slot
m = n % M of its group (M = N // G), i.e. y = x.reshape(G, M, F, C // F, H, W). Per slot
m and channel group f: the biased variance over the G group members, sqrt(var + 1e-8),
averaged over the C // F channels and H, W. Those F values are broadcast over H, W and
appended to every sample of the slot: the output is (N, C + F, H, W).

Two kernels per backend:
  minibatch_stddev_stats(x, G, F)          -> s (M, F) in x's dtype
  minibatch_stddev_stats_grad(ds, x, G, F) -> dx (N, C, H, W), contiguous, x's dtype
Kernel contract: x is contiguous (N, C, H, W) with N % G == 0 and C % F == 0; ds is a
contiguous (M, F) tensor of x's dtype. Arithmetic is float32 (float64 for float64 data).
With d = x - mean_g(x) and sd = sqrt(var + eps), the gradient is
  dx = ds[m, f] / (C // F * H * W) * d / (G * sd)
(the mean's own gradient term vanishes because d sums to zero over the group).
The append itself is torch.cat of x and the broadcast statistics (it is one copy either
way, and torch.cat keeps the autograd of that part in torch).
"""

from __future__ import annotations

import functools

import torch

from .. import _backend

EPS = 1e-8


# ---------------------------------------------------------------------------------------
# Reference kernels (plain torch), with the backends' signatures.


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _centered(x: torch.Tensor, G: int, F: int):
    """(x - group mean, sqrt(var + eps)) as (G, M, F, C // F, H, W) / (M, F, C // F, H, W)."""
    N, C, H, W = x.shape
    y = x.to(_acc_dtype(x.dtype)).reshape(G, N // G, F, C // F, H, W)
    d = y - y.mean(0)
    return d, (d.square().mean(0) + EPS).sqrt()


def reference_minibatch_stddev_stats(x, G, F):
    _, sd = _centered(x, G, F)
    return sd.mean([2, 3, 4]).to(x.dtype)


def reference_minibatch_stddev_stats_grad(ds, x, G, F):
    N, C, H, W = x.shape
    d, sd = _centered(x, G, F)
    scale = ds.to(d.dtype).view(1, N // G, F, 1, 1, 1) / ((C // F) * H * W * G)
    return (scale * d / sd).reshape(N, C, H, W).to(x.dtype)


_KERNELS = ("minibatch_stddev_stats", "minibatch_stddev_stats_grad")


@functools.cache
def _kernels(backend: str) -> dict:
    return _backend.kernel_table(backend, _KERNELS, globals(), "minibatch_stddev")


def _kernel(name: str, device: torch.device):
    return _kernels(_backend.resolve(device))[name]


# ---------------------------------------------------------------------------------------
# torch.library ops. The statistics' gradient is the fused stats_grad kernel; the gradient
# of stats_grad (second order, R1 on a D with this layer) is recomputed through the
# reference's differentiable torch ops: it is needed only by the regulariser steps.


@torch.library.custom_op("gankernels::minibatch_stddev_stats", mutates_args=())
def minibatch_stddev_stats(x: torch.Tensor, G: int, F: int) -> torch.Tensor:
    return _kernel("minibatch_stddev_stats", x.device)(x.contiguous(), G, F)


@minibatch_stddev_stats.register_fake
def _(x, G, F):
    return x.new_empty(x.shape[0] // G, F)


@torch.library.custom_op("gankernels::minibatch_stddev_stats_grad", mutates_args=())
def minibatch_stddev_stats_grad(ds: torch.Tensor, x: torch.Tensor, G: int, F: int) -> torch.Tensor:
    return _kernel("minibatch_stddev_stats_grad", x.device)(ds.contiguous(), x.contiguous(), G, F)


@minibatch_stddev_stats_grad.register_fake
def _(ds, x, G, F):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _stats_setup(ctx, inputs, output):
    x, G, F = inputs
    ctx.G, ctx.F = G, F
    ctx.save_for_backward(x)


def _stats_backward(ctx, ds):
    (x,) = ctx.saved_tensors
    return minibatch_stddev_stats_grad(ds, x, ctx.G, ctx.F), None, None


def _grad_setup(ctx, inputs, output):
    ds, x, G, F = inputs
    ctx.G, ctx.F = G, F
    ctx.save_for_backward(ds, x)


def _grad_backward(ctx, h):
    ds, x = ctx.saved_tensors
    G, F = ctx.G, ctx.F
    _, vjp = torch.func.vjp(
        lambda ds_, x_: reference_minibatch_stddev_stats_grad(ds_, x_, G, F), ds, x
    )
    grad_ds, grad_x = vjp(h.to(x.dtype))
    return grad_ds, grad_x, None, None


minibatch_stddev_stats.register_autograd(_stats_backward, setup_context=_stats_setup)
minibatch_stddev_stats_grad.register_autograd(_grad_backward, setup_context=_grad_setup)


# ---------------------------------------------------------------------------------------
# Public op.


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_channels: int = 1) -> torch.Tensor:
    """x (N, C, H, W) -> (N, C + num_channels, H, W): x with the standard deviation of
    its group of min(group_size, N) samples appended as num_channels feature maps
    (StyleGAN2). N must be divisible by the group size, C by num_channels."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4:
        got = (
            f"a {x.dtype} tensor of shape {tuple(x.shape)}"
            if isinstance(x, torch.Tensor)
            else type(x).__name__
        )
        raise ValueError(
            f"minibatch_stddev: x must be a 4-D floating-point (N, C, H, W) tensor, got {got}"
        )
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"minibatch_stddev: group_size must be an int >= 1, got {group_size!r}")
    if not isinstance(num_channels, int) or num_channels < 1:
        raise ValueError(
            f"minibatch_stddev: num_channels must be an int >= 1, got {num_channels!r}"
        )
    N, C, H, W = x.shape
    G = min(group_size, N)
    if N == 0 or N % G != 0:
        hint = f"; use e.g. group_size={_largest_divisor(N, group_size)}" if N else ""
        raise ValueError(
            f"minibatch_stddev: the batch size N={N} must be divisible by the group size "
            f"min(group_size, N) = {G}{hint}"
        )
    if C % num_channels != 0:
        raise ValueError(
            f"minibatch_stddev: the channel count C={C} must be divisible by num_channels="
            f"{num_channels}"
        )
    s = minibatch_stddev_stats(x, G, num_channels)  # (M, F): sample n uses row n % M
    s = s.repeat(G, 1).view(N, num_channels, 1, 1).expand(N, num_channels, H, W)
    return torch.cat([x, s], dim=1)
