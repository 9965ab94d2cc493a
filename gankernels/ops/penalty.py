"""Gradient penalties: WGAN-GP interpolation, the (||g_i|| - c)^2 penalty and R1/R2.

Three row-wise kernels per backend do all the work on a batch viewed as (B, N):
  lerp_rows            x_hat = fake + alpha_b (real - fake)            one pass
  lerp_rows_backward   (alpha_b g, (1 - alpha_b) g)                    one pass
  row_sumsq            s_b = sum_n x_bn^2  (fp32/fp64 accumulation)    one pass
  row_scale            c_b x_bn                                        one pass
so that a penalty's forward is one reduction over the gradient and its backward one
fused scaling pass; the per-sample arithmetic on B numbers stays in torch.
Tensors are used in place when dense with the batch outermost (contiguous or
channels_last), otherwise made contiguous.
"""

from __future__ import annotations

import functools

import torch

from .. import _backend
from .._checks import finite_number
from ._layout import dense, like

# ---------------------------------------------------------------------------------------
# Reference kernels (plain torch), the ground truth of every backend.


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def reference_row_sumsq(x, B, N):
    return x.reshape(B, N).to(_acc_dtype(x.dtype)).square().sum(1)


def reference_row_scale(x, coef, B, N):
    shape = (B,) + (1,) * (x.dim() - 1)
    return (x.to(coef.dtype) * coef.view(shape)).to(x.dtype)


def reference_lerp_rows(real, fake, alpha, B, N):
    a = alpha.view((B,) + (1,) * (real.dim() - 1))
    f = fake.to(alpha.dtype)
    return (f + a * (real.to(alpha.dtype) - f)).to(real.dtype)


def reference_lerp_rows_backward(grad, alpha, B, N):
    a = alpha.view((B,) + (1,) * (grad.dim() - 1))
    g = grad.to(alpha.dtype)
    return (a * g).to(grad.dtype), (g - a * g).to(grad.dtype)


_KERNELS = ("row_sumsq", "row_scale", "lerp_rows", "lerp_rows_backward")


@functools.cache
def _kernels(backend: str) -> dict:
    return _backend.kernel_table(backend, _KERNELS, globals(), "penalty")


def _kernel(name: str, device: torch.device):
    return _kernels(_backend.resolve(device))[name]


def _rows(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """x laid out densely with the batch outermost, and its (B, N)."""
    B = x.shape[0]
    N = x.numel() // B if B else 0
    return dense(x), B, N


# ---------------------------------------------------------------------------------------
# torch.library ops with their gradients (each gradient is again one of these ops, so
# every order of differentiation works).


@torch.library.custom_op("gankernels::row_sumsq", mutates_args=())
def row_sumsq(x: torch.Tensor) -> torch.Tensor:
    x, B, N = _rows(x)
    return _kernel("row_sumsq", x.device)(x, B, N)


@row_sumsq.register_fake
def _(x):
    return x.new_empty((x.shape[0],), dtype=_acc_dtype(x.dtype))


@torch.library.custom_op("gankernels::row_scale", mutates_args=())
def row_scale(x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    x, B, N = _rows(x)
    return _kernel("row_scale", x.device)(x, coef.contiguous(), B, N)


@row_scale.register_fake
def _(x, coef):
    return torch.empty_like(x)


@torch.library.custom_op("gankernels::lerp_rows", mutates_args=())
def lerp_rows(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    real, B, N = _rows(real)
    return _kernel("lerp_rows", real.device)(real, like(fake, real), alpha.contiguous(), B, N)


@lerp_rows.register_fake
def _(real, fake, alpha):
    return torch.empty_like(real)


@torch.library.custom_op("gankernels::lerp_rows_backward", mutates_args=())
def lerp_rows_backward(grad: torch.Tensor, alpha: torch.Tensor) -> list[torch.Tensor]:
    grad, B, N = _rows(grad)
    return list(_kernel("lerp_rows_backward", grad.device)(grad, alpha.contiguous(), B, N))


@lerp_rows_backward.register_fake
def _(grad, alpha):
    return [torch.empty_like(grad), torch.empty_like(grad)]


def _save_inputs(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _row_sumsq_grad(ctx, g):
    (x,) = ctx.saved_tensors
    return row_scale(x, 2 * g)


def _row_scale_grad(ctx, g):
    x, coef = ctx.saved_tensors
    grad_x = row_scale(g, coef) if ctx.needs_input_grad[0] else None
    grad_coef = None
    if ctx.needs_input_grad[1]:  # only reached at higher orders: B numbers, plain torch
        grad_coef = (g * x).flatten(1).to(coef.dtype).sum(1)
    return grad_x, grad_coef


def _lerp_rows_grad(ctx, g):
    real, fake, alpha = ctx.saved_tensors
    grad_real, grad_fake = lerp_rows_backward(g, alpha)
    grad_alpha = None
    if ctx.needs_input_grad[2]:
        grad_alpha = (g * (real - fake)).flatten(1).to(alpha.dtype).sum(1)
    return grad_real, grad_fake, grad_alpha


def _lerp_rows_backward_grad(ctx, grads):
    # (alpha g, (1 - alpha) g) is linear in g: its adjoint is the interpolation itself.
    g, alpha = ctx.saved_tensors
    h_real, h_fake = grads
    h_real = torch.zeros_like(g) if h_real is None else h_real
    h_fake = torch.zeros_like(g) if h_fake is None else h_fake
    grad_alpha = None
    if ctx.needs_input_grad[1]:
        grad_alpha = (g * (h_real - h_fake)).flatten(1).to(alpha.dtype).sum(1)
    return lerp_rows(h_real, h_fake, alpha), grad_alpha


row_sumsq.register_autograd(_row_sumsq_grad, setup_context=_save_inputs)
row_scale.register_autograd(_row_scale_grad, setup_context=_save_inputs)
lerp_rows.register_autograd(_lerp_rows_grad, setup_context=_save_inputs)
lerp_rows_backward.register_autograd(_lerp_rows_backward_grad, setup_context=_save_inputs)


# ---------------------------------------------------------------------------------------
# Public functional ops.


def _check_batch(name: str, x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must have a non-empty batch dimension, got {tuple(x.shape)}")


def interpolate(
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """x_hat = fake + alpha * (real - fake), one alpha ~ U(0, 1) per sample (drawn from
    `generator` when given). Differentiable in real and fake (and alpha if it requires
    grad)."""
    _check_batch("interpolate: real", real)
    _check_batch("interpolate: fake", fake)
    if real.shape != fake.shape:
        raise ValueError(
            f"interpolate: real and fake must have the same shape, got {tuple(real.shape)} "
            f"and {tuple(fake.shape)}"
        )
    if real.dtype != fake.dtype:
        raise TypeError(f"interpolate: real is {real.dtype} but fake is {fake.dtype}")
    if real.device != fake.device:
        raise ValueError(f"interpolate: real is on {real.device} but fake is on {fake.device}")
    B, acc = real.shape[0], _acc_dtype(real.dtype)
    if alpha is None:
        gen_device = generator.device if generator is not None else real.device
        alpha = torch.rand(B, generator=generator, device=gen_device, dtype=acc)
        alpha = alpha.to(real.device)
    else:
        if not isinstance(alpha, torch.Tensor) or alpha.numel() != B:
            raise ValueError(
                f"interpolate: alpha must be a tensor with {B} values (one per sample)"
            )
        if alpha.device != real.device:
            raise ValueError(f"interpolate: alpha is on {alpha.device} but real on {real.device}")
        alpha = alpha.reshape(B).to(acc)
    if torch.compiler.is_compiling() or alpha.requires_grad:
        return lerp_rows(real, fake, alpha)
    # Eager: the kernels directly (the custom-op dispatch costs more than the kernel on a
    # small batch); the numbers are the same.
    backend = _backend.resolve(real.device)
    if not (torch.is_grad_enabled() and (real.requires_grad or fake.requires_grad)):
        return _run_lerp(real, fake, alpha, backend)
    return _Lerp.apply(real, fake, alpha, backend)


def _safe_norm(sumsq: torch.Tensor) -> torch.Tensor:
    """sqrt with gradient 0 (not inf * 0 = NaN) where the norm is 0."""
    positive = sumsq > 0
    return torch.where(positive, torch.where(positive, sumsq, 1).sqrt(), 0)


def gradient_penalty(grad: torch.Tensor, center: float = 1.0) -> torch.Tensor:
    """mean_i (||grad_i||_2 - center)^2, norms over all non-batch dims (WGAN-GP).

    Forward: one reduction pass; backward: one fused scaling pass. Where ||grad_i|| = 0
    the gradient is defined as 0. The result is float32 (float64 for float64 input)."""
    _check_batch("gradient_penalty: grad", grad)
    finite_number("gradient_penalty: center", center)
    if torch.compiler.is_compiling():
        return (_safe_norm(row_sumsq(grad)) - center).square().mean()
    return _RowPenalty.apply(grad, float(center), _backend.resolve(grad.device))


def r1_penalty(grad: torch.Tensor) -> torch.Tensor:
    """mean_i ||grad_i||_2^2 (R1 on real samples, R2 on fake ones). float32 result
    (float64 for float64 input)."""
    _check_batch("r1_penalty: grad", grad)
    if torch.compiler.is_compiling():
        return row_sumsq(grad).mean()
    return _RowPenalty.apply(grad, None, _backend.resolve(grad.device))


# ---------------------------------------------------------------------------------------
# Eager twins of the ops above: the same kernels called directly. Their backward calls
# the kernels too, unless it is itself being differentiated (create_graph), where it is
# built from the differentiable ops instead.


def _run_lerp(real, fake, alpha, backend):
    real, B, N = _rows(real)
    return _kernels(backend)["lerp_rows"](real, like(fake, real), alpha, B, N)


class _Lerp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, real, fake, alpha, backend):
        ctx.save_for_backward(alpha)
        ctx.backend = backend  # autograd's threads do not see `use_backend`
        return _run_lerp(real, fake, alpha, backend)

    @staticmethod
    def backward(ctx, g):
        (alpha,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            grad_real, grad_fake = lerp_rows_backward(g, alpha)
        else:
            g, B, N = _rows(g)
            grad_real, grad_fake = _kernels(ctx.backend)["lerp_rows_backward"](g, alpha, B, N)
        return grad_real, grad_fake, None, None


class _RowPenalty(torch.autograd.Function):
    """mean_i (||grad_i|| - center)^2, or mean_i ||grad_i||^2 when center is None. The
    arithmetic on the B per-sample numbers is a handful of tiny torch ops, kept few
    because each costs as much as a kernel pass over a small batch."""

    @staticmethod
    def forward(ctx, grad, center, backend):
        x, B, N = _rows(grad)
        sumsq = _kernels(backend)["row_sumsq"](x, B, N)
        ctx.center, ctx.backend = center, backend
        if center is None:
            ctx.save_for_backward(grad)
            return sumsq.mean()
        norm = sumsq.sqrt()
        dev = norm - center
        ctx.save_for_backward(grad, norm, dev)
        return dev.square().mean()

    @staticmethod
    def backward(ctx, gout):
        grad, *saved = ctx.saved_tensors
        B = grad.shape[0]
        if torch.is_grad_enabled():  # differentiable: the same formula from the ops
            if ctx.center is None:
                coef = (gout * (2 / B)).expand(B)
            else:
                norm = _safe_norm(row_sumsq(grad))
                pos = norm > 0  # the double where keeps NaN out of the next order, too
                ratio = torch.where(pos, (norm - ctx.center) / torch.where(pos, norm, 1), 0)
                coef = ratio * (gout * (2 / B))
            return row_scale(grad, coef), None, None
        if ctx.center is None:
            coef = (gout * (2 / B)).expand(B).contiguous()
        else:
            norm, dev = saved
            # d/dg_i = 2/B (||g_i|| - c) g_i / ||g_i||, defined as 0 where ||g_i|| = 0.
            coef = (dev / norm).nan_to_num_(0.0, 0.0, 0.0).mul_(gout * (2 / B))
        x, _, N = _rows(grad)
        return _kernels(ctx.backend)["row_scale"](x, coef, B, N), None, None
