"""norm_act: instance or batch normalisation, optional per-channel affine and an activation,
fused (the body of every pix2pix / CycleGAN / DCGAN block), with gradients of every order.

    y = act(xhat * weight[c] + bias[c]),   xhat = (x - mean[g]) * rstd[g]

x is (N, C, *spatial). A group g holds the elements one mean and variance are taken over:
instance norm (per_sample): g = n * C + c, over the spatial elements of one (n, c) plane;
batch norm: g = c, over the N * spatial elements of channel c. rstd = 1 / sqrt(var + eps)
with the biased variance, as in torch.

Three kernels per backend:
  norm_act_stats(x, per_sample)                                    -> (mean, var)
  norm_act_forward(x, mean, rstd, weight, bias, per_sample, act, alpha)      -> y
  norm_act_backward(dy, x, mean, rstd, weight, bias, per_sample, act, alpha, batch_stats)
                                                                  -> (dx, sum_g, sum_gxhat)
Kernel contract: x is dense with batch outermost: contiguous (memory N, C, S) or channels
last (memory N, S, C; channels_last or channels_last_3d, or (N, C) data); dy has x's
strides. mean, var, rstd are contiguous (G,) tensors of the accumulation type (float32,
float64 for float64 data), G = N * C with per_sample, else C; weight and bias are None or
contiguous (C,) tensors of the accumulation type. act is an activation code of
gankernels.ops.bias_act.ACTIVATIONS (there is no gain here). Outputs dx and y are laid out
like x; sum_g[g] = sum of g and sum_gxhat[g] = sum of g * xhat over group g, where
g = dy * act'(z), z = xhat * weight + bias (the per-group parts of dweight and dbias).
dx = rstd * weight * (g - sum_g / M - xhat * sum_gxhat / M) with batch_stats (the
statistics came from x, M elements per group), rstd * weight * g without (running
statistics, constants).

Forward: two passes over x (statistics; normalise + affine + activation). Backward: one
reduction pass and one elementwise pass. Only x, mean and rstd are saved: z and act'(z)
are recomputed from x. Second order: the backward op's gradient recomputes the backward
through differentiable torch ops (the reference kernels below), with mean and rstd again
functions of x where they came from x.
"""

from __future__ import annotations

import functools

import torch

from .. import _backend
from .._checks import finite_number
from ._layout import dense, like, profiled
from .bias_act import ACTIVATIONS, CODES, SELU_SCALE, _act, eager

KINDS = ("instance", "batch")


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------
# Reference kernels (plain torch, differentiable), the ground truth of every backend; same
# signatures as the backends' kernels.


def _planes(t: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """t as (N, C, S) in the accumulation type."""
    return t.to(acc).reshape(t.shape[0], t.shape[1], -1)


def _group_view(v: torch.Tensor, N: int, C: int, per_sample: bool) -> torch.Tensor:
    """A (G,) per-group tensor shaped to broadcast against (N, C, S)."""
    return v.view(N, C, 1) if per_sample else v.view(1, C, 1)


def _channel_view(v: torch.Tensor | None, C: int):
    return None if v is None else v.view(1, C, 1)


def _reduce_dims(per_sample: bool) -> tuple[int, ...]:
    return (2,) if per_sample else (0, 2)


def _act_grad(z: torch.Tensor, code: int, alpha: float) -> torch.Tensor:
    """act'(z), a differentiable function of z."""
    one = torch.ones_like(z)
    if code == 0:
        return one
    if code == 1:
        return (z > 0).to(z.dtype)
    if code == 2:
        return torch.where(z > 0, one, one * alpha)
    if code == 3:
        t = z.tanh()
        return 1 - t * t
    if code in (4, 7):  # sigmoid; softplus' = sigmoid
        s = z.sigmoid()
        return s * (1 - s) if code == 4 else s
    if code == 5:
        return torch.where(z > 0, one, alpha * z.clamp_max(0).exp())
    if code == 6:
        return SELU_SCALE * torch.where(z > 0, one, alpha * z.clamp_max(0).exp())
    if code == 8:
        s = z.sigmoid()
        return s + z * s * (1 - s)
    raise ValueError(f"unknown activation code {code}")


def _like_x(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N, C, S) values in x's shape, dtype and memory layout."""
    return torch.empty_like(x).copy_(t.reshape(x.shape))  # copy_ is differentiable


def reference_norm_act_stats(x, per_sample):
    var, mean = torch.var_mean(
        _planes(x, _acc_dtype(x.dtype)), dim=_reduce_dims(per_sample), correction=0
    )
    return mean.reshape(-1), var.reshape(-1)


def _xhat_z(x3, mean, rstd, weight, bias, per_sample):
    N, C = x3.shape[:2]
    xhat = (x3 - _group_view(mean, N, C, per_sample)) * _group_view(rstd, N, C, per_sample)
    z = xhat
    if weight is not None:
        z = z * _channel_view(weight, C)
    if bias is not None:
        z = z + _channel_view(bias, C)
    return xhat, z


def reference_norm_act_forward(x, mean, rstd, weight, bias, per_sample, act, alpha):
    x3 = _planes(x, mean.dtype)
    _, z = _xhat_z(x3, mean, rstd, weight, bias, per_sample)
    return _like_x(_act(z, act, alpha), x)


def reference_norm_act_backward(
    dy, x, mean, rstd, weight, bias, per_sample, act, alpha, batch_stats
):
    acc = mean.dtype
    x3, dy3 = _planes(x, acc), _planes(dy, acc)
    N, C, S = x3.shape
    xhat, z = _xhat_z(x3, mean, rstd, weight, bias, per_sample)
    g = dy3 * _act_grad(z, act, alpha)
    dims = _reduce_dims(per_sample)
    sum_g, sum_gxhat = g.sum(dims), (g * xhat).sum(dims)
    scale = _group_view(rstd, N, C, per_sample)
    if weight is not None:
        scale = scale * _channel_view(weight, C)
    if batch_stats:
        M = S if per_sample else N * S
        mean_g = _group_view(sum_g, N, C, per_sample) / M
        mean_gx = _group_view(sum_gxhat, N, C, per_sample) / M
        dx = scale * (g - mean_g - xhat * mean_gx)
    else:
        dx = scale * g
    return _like_x(dx, x), sum_g.reshape(-1), sum_gxhat.reshape(-1)


_KERNELS = ("norm_act_stats", "norm_act_forward", "norm_act_backward")


@functools.cache
def _kernels(backend: str) -> dict:
    return _backend.kernel_table(backend, _KERNELS, globals(), "norm_act")


def _kernel(name: str, device: torch.device):
    return _kernels(_backend.resolve(device))[name]


def _groups(x: torch.Tensor, per_sample: bool) -> int:
    return x.shape[0] * x.shape[1] if per_sample else x.shape[1]


# ---------------------------------------------------------------------------------------
# torch.library ops. norm_act_stats has no gradient (its outputs are used as constants, the
# statistics' gradient is part of norm_act_backward's dx); norm_act_forward's gradient is
# norm_act_backward; that op's gradient recomputes it through differentiable torch ops.


@torch.library.custom_op("gankernels::norm_act_stats", mutates_args=())
def norm_act_stats(x: torch.Tensor, per_sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = dense(x)
    mean, var = _kernel("norm_act_stats", x.device)(x, per_sample)
    return mean, var


@norm_act_stats.register_fake
def _(x, per_sample):
    G = _groups(x, per_sample)
    acc = _acc_dtype(x.dtype)
    return x.new_empty((G,), dtype=acc), x.new_empty((G,), dtype=acc)


@torch.library.custom_op("gankernels::norm_act_forward", mutates_args=())
def norm_act_forward(
    x: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    per_sample: bool,
    act: int,
    alpha: float,
    batch_stats: bool,
    eps: float,
) -> torch.Tensor:
    x = dense(x)
    return _kernel("norm_act_forward", x.device)(
        x, mean.contiguous(), rstd.contiguous(), weight, bias, per_sample, act, alpha
    )


@norm_act_forward.register_fake
def _(x, mean, rstd, weight, bias, per_sample, act, alpha, batch_stats, eps):
    return torch.empty_like(dense(x))


@torch.library.custom_op("gankernels::norm_act_backward", mutates_args=())
def norm_act_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    per_sample: bool,
    act: int,
    alpha: float,
    batch_stats: bool,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = dense(x)
    dx, sum_g, sum_gxhat = _kernel("norm_act_backward", x.device)(
        like(dy, x),
        x,
        mean.contiguous(),
        rstd.contiguous(),
        weight,
        bias,
        per_sample,
        act,
        alpha,
        batch_stats,
    )
    return dx, sum_g, sum_gxhat


@norm_act_backward.register_fake
def _(dy, x, mean, rstd, weight, bias, per_sample, act, alpha, batch_stats, eps):
    G = _groups(x, per_sample)
    return torch.empty_like(dense(x)), mean.new_empty((G,)), mean.new_empty((G,))


def _per_channel(v: torch.Tensor, C: int, per_sample: bool) -> torch.Tensor:
    """A (G,) per-group sum as a (C,) per-channel sum."""
    return v.view(-1, C).sum(0) if per_sample else v


def _forward_setup(ctx, inputs, output):
    x, mean, rstd, weight, bias, per_sample, act, alpha, batch_stats, eps = inputs
    ctx.args = (per_sample, act, alpha, batch_stats, eps)
    ctx.save_for_backward(x, mean, rstd, weight, bias)


def _forward_backward(ctx, dy):
    x, mean, rstd, weight, bias = ctx.saved_tensors
    dx, sum_g, sum_gxhat = norm_act_backward(dy, x, mean, rstd, weight, bias, *ctx.args)
    C, per_sample = x.shape[1], ctx.args[0]
    dweight = dbias = None
    if weight is not None and ctx.needs_input_grad[3]:
        dweight = _per_channel(sum_gxhat, C, per_sample).to(weight.dtype)
    if bias is not None and ctx.needs_input_grad[4]:
        dbias = _per_channel(sum_g, C, per_sample).to(bias.dtype)
    return dx, None, None, dweight, dbias, None, None, None, None, None


def _backward_setup(ctx, inputs, output):
    dy, x, mean, rstd, weight, bias, per_sample, act, alpha, batch_stats, eps = inputs
    ctx.args = (per_sample, act, alpha, batch_stats, eps)
    ctx.save_for_backward(dy, x, mean, rstd, weight, bias)


def _recomputed_backward(dy, x, mean, rstd, weight, bias, per_sample, act, alpha, batch_stats, eps):
    """norm_act_backward through differentiable torch ops; with batch statistics mean and
    rstd are recomputed from x so that their dependence on x is differentiated too."""
    if batch_stats:
        mean, var = reference_norm_act_stats(x, per_sample)
        rstd = torch.rsqrt(var + eps)
    return reference_norm_act_backward(
        dy, x, mean, rstd, weight, bias, per_sample, act, alpha, batch_stats
    )


def _backward_backward(ctx, grad_dx, grad_sum_g, grad_sum_gxhat):
    # Second order: the fused backward's own gradient is not fused; it is the gradient of
    # the same computation written in differentiable torch ops. The inputs' own graphs are
    # kept when a higher order is asked for (grad mode is on then), else cut.
    saved = list(ctx.saved_tensors)
    create = torch.is_grad_enabled()
    wanted = [i for i in (0, 1, 4, 5) if ctx.needs_input_grad[i] and saved[i] is not None]
    with torch.enable_grad():
        inputs = list(saved)
        if not create:
            for i in wanted:
                inputs[i] = saved[i].detach().requires_grad_(True)
        outputs = _recomputed_backward(*inputs, *ctx.args)
        pairs = [
            (o, g)
            for o, g in zip(outputs, (grad_dx, grad_sum_g, grad_sum_gxhat), strict=True)
            if g is not None and o.requires_grad
        ]
        grads = [None] * len(wanted)
        if pairs and wanted:
            grads = torch.autograd.grad(
                [o for o, _ in pairs],
                [inputs[i] for i in wanted],
                [g for _, g in pairs],
                allow_unused=True,
                create_graph=create,
            )
    result = [None] * 11
    for i, g in zip(wanted, grads, strict=True):
        result[i] = g
    return tuple(result)


norm_act_forward.register_autograd(_forward_backward, setup_context=_forward_setup)
norm_act_backward.register_autograd(_backward_backward, setup_context=_backward_setup)


class _NormAct(torch.autograd.Function):
    """The eager twin of norm_act_forward: the same kernels through an autograd Function
    (the torch.library dispatch costs more than the kernels on small layers). Its
    differentiable backward (create_graph) is the op's, which has second order."""

    @staticmethod
    def forward(
        ctx, x, mean, rstd, weight, bias, per_sample, act, alpha, batch_stats, eps, backend
    ):
        x = dense(x)
        ctx.args, ctx.backend = (per_sample, act, alpha, batch_stats, eps), backend
        ctx.save_for_backward(x, mean, rstd, weight, bias)
        ctx.set_materialize_grads(False)  # no gradient stays None, not a tensor of zeros
        kernel = _kernels(backend)["norm_act_forward"]
        with profiled("gankernels::norm_act_forward"):
            return kernel(x, mean, rstd, weight, bias, per_sample, act, alpha)

    @staticmethod
    def backward(ctx, dy):
        if dy is None:
            return (None,) * 11
        x, mean, rstd, weight, bias = ctx.saved_tensors
        per_sample = ctx.args[0]
        if torch.is_grad_enabled():
            dx, sum_g, sum_gxhat = norm_act_backward(dy, x, mean, rstd, weight, bias, *ctx.args)
        else:
            kernel = _kernels(ctx.backend)["norm_act_backward"]
            with profiled("gankernels::norm_act_backward"):
                dx, sum_g, sum_gxhat = kernel(
                    like(dy, x), x, mean, rstd, weight, bias, *ctx.args[:4]
                )
        C = x.shape[1]
        dweight = dbias = None
        if weight is not None and ctx.needs_input_grad[3]:
            dweight = _per_channel(sum_gxhat, C, per_sample).to(weight.dtype)
        if bias is not None and ctx.needs_input_grad[4]:
            dbias = _per_channel(sum_g, C, per_sample).to(bias.dtype)
        return dx, None, None, dweight, dbias, None, None, None, None, None, None


# ---------------------------------------------------------------------------------------
# Public op.


def resolve_alpha(where: str, act: str, alpha) -> float:
    """The activation's alpha: the given one, else its default; 0 for those without."""
    if act not in ACTIVATIONS:
        raise ValueError(f"{where}: unknown act {act!r}; expected one of {list(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    if spec.alpha is None:
        return 0.0  # the activation has no alpha: the argument has no effect
    return finite_number(f"{where}: alpha", spec.alpha if alpha is None else alpha)


def _check_channel_tensor(what: str, t, C: int, x: torch.Tensor) -> None:
    if t is None:
        return
    if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.numel() != C:
        raise ValueError(
            f"norm_act: {what} must be a 1-D tensor of length x.shape[1] = {C}, got {_what(t)}"
        )
    if t.device != x.device:
        raise ValueError(f"norm_act: {what} is on {t.device} but x is on {x.device}")
    if not t.is_floating_point():
        raise TypeError(f"norm_act: {what} must be a floating-point tensor, got {_what(t)}")


def norm_act(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    kind: str = "instance",
    act: str = "lrelu",
    alpha: float | None = None,
    eps: float = 1e-5,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    momentum: float | None = 0.1,
    training: bool = True,
) -> torch.Tensor:
    """act(norm(x) * weight + bias) in two passes, equal to nn.InstanceNorm*d /
    nn.BatchNorm*d followed by the activation module (no gain).

    kind 'instance': statistics per (sample, channel) over the spatial dims; 'batch': per
    channel over the batch and spatial dims. With batch norm, training=True uses the batch
    statistics and updates running_mean / running_var in place as torch does (momentum,
    unbiased variance); training=False uses the running statistics when given. act: linear,
    relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish; alpha defaults to the
    activation's usual value (lrelu 0.2). x is (N, C, *spatial), or (N, C) for batch norm;
    the output keeps x's memory format. Gradients of every order."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"norm_act: x must be a floating-point tensor, got {_what(x)}")
    if kind not in KINDS:
        raise ValueError(f"norm_act: unknown kind {kind!r}; expected one of {list(KINDS)}")
    per_sample = kind == "instance"
    alpha = resolve_alpha("norm_act", act, alpha)
    min_dims = 3 if per_sample else 2
    if x.dim() < min_dims:
        shape = "(N, C, *spatial)" if per_sample else "(N, C) or (N, C, *spatial)"
        raise ValueError(
            f"norm_act: x must be {shape} with at least {min_dims} dims for kind={kind!r}, "
            f"got shape {tuple(x.shape)}"
        )
    eps = finite_number("norm_act: eps", eps)
    C = x.shape[1]
    _check_channel_tensor("weight", weight, C, x)
    _check_channel_tensor("bias", bias, C, x)
    if (running_mean is None) != (running_var is None):
        raise ValueError("norm_act: give both running_mean and running_var, or neither")
    if running_mean is not None:
        _check_channel_tensor("running_mean", running_mean, C, x)
        _check_channel_tensor("running_var", running_var, C, x)
    if momentum is None:
        raise ValueError(
            "norm_act: momentum=None (a cumulative moving average of the statistics) is not "
            "supported; give a number in [0, 1]"
        )
    momentum = finite_number("norm_act: momentum", momentum)
    if x.numel() == 0:
        raise ValueError(f"norm_act: x must not be empty, got shape {tuple(x.shape)}")

    acc = _acc_dtype(x.dtype)
    batch_stats = training or running_mean is None
    fast = eager(x)
    backend = _backend.resolve(x.device) if fast else None
    if batch_stats:
        per_group = x.numel() // _groups(x, per_sample)
        if per_group <= 1:
            what = "spatial element" if per_sample else "value per channel"
            raise ValueError(
                f"norm_act: Expected more than 1 {what} when training, got input size "
                f"{x.size()} (kind={kind!r})"
            )
        # The statistics enter the gradient through norm_act_backward's dx formula.
        if fast:
            with profiled("gankernels::norm_act_stats"):
                mean, var = _kernels(backend)["norm_act_stats"](dense(x.detach()), per_sample)
        else:
            mean, var = norm_act_stats(x.detach(), per_sample)
        rstd = torch.rsqrt(var + eps)
        if training and running_mean is not None:
            _update_running(running_mean, running_var, mean, var, per_group, momentum, C)
    else:
        # Running statistics are per channel for both kinds: instance norm in eval mode
        # with track_running_stats normalises every sample with the same numbers.
        mean = running_mean.detach().to(acc)
        rstd = torch.rsqrt(running_var.detach().to(acc) + eps)
        per_sample = False
    w = None if weight is None else weight.to(acc)
    b = None if bias is None else bias.to(acc)
    code = ACTIVATIONS[act].code
    if not fast:
        return norm_act_forward(x, mean, rstd, w, b, per_sample, code, alpha, batch_stats, eps)
    args = (per_sample, code, alpha, batch_stats, eps, backend)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, w, b)):
        return _NormAct.apply(x, mean, rstd, w, b, *args)
    with profiled("gankernels::norm_act_forward"):
        return _kernels(backend)["norm_act_forward"](dense(x), mean, rstd, w, b, *args[:3])


@torch.no_grad()
def _update_running(running_mean, running_var, mean, var, per_group, momentum, C) -> None:
    """torch's update: momentum towards the batch mean and the unbiased batch variance; for
    instance norm, towards their averages over the samples (as F.instance_norm does)."""
    unbiased = var * (per_group / (per_group - 1))
    if mean.numel() != C:  # per sample: (N * C,) -> (C,)
        mean, unbiased = mean.view(-1, C).mean(0), unbiased.view(-1, C).mean(0)
    running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
    running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)


def _what(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor of shape {tuple(v.shape)}"
    return type(v).__name__


__all__ = ["norm_act", "ACTIVATIONS", "CODES", "KINDS"]
