"""Spectral normalisation: W_sn = W / sigma(W), sigma the largest singular value.

Semantics are those of `torch.nn.utils.parametrizations.spectral_norm`: the weight is a
matrix M with `dim` moved to the front and the rest flattened; in training mode the power
iteration `u = normalize(M v); v = normalize(M^T u)` runs `n_power_iterations` times and
updates u, v in place; sigma = u . M v; gradients flow through sigma with u, v constant.

The kernels see a contiguous weight as (A, H, K) with A = prod(shape[:dim]),
H = shape[dim], K = prod(shape[dim+1:]), so that M[h, a*K + k] = w[a, h, k] for any `dim`
without a copy. Two kernels per backend:
  power_iteration  each matvec one pass over W; sigma from the last pass (no extra one)
  backward         dW = (g - <g, W>/sigma * u v^T) / sigma: one reduction + one
                   elementwise pass
The forward division W / sigma is a single elementwise pass and stays in torch.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .. import _backend


def matrix_view(shape: torch.Size | tuple[int, ...], dim: int) -> tuple[int, int, int]:
    """(A, H, K) of a weight of `shape` normalised along `dim`."""
    return math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1 :])


def _outer(u: torch.Tensor, v: torch.Tensor, shape: torch.Size, dim: int) -> torch.Tensor:
    """u v^T laid out like the weight: P[a, h, k] = u[h] v[a*K + k]."""
    A, H, K = matrix_view(shape, dim)
    return (u.view(1, H, 1) * v.view(A, 1, K)).reshape(shape)


# ---------------------------------------------------------------------------------------
# Reference implementations (plain torch): the ground truth for every backend.


def reference_power_iteration(weight, u, v, A, H, K, n_iter, eps):
    w_mat = weight.reshape(A, H, K).transpose(0, 1).reshape(H, A * K)
    for _ in range(n_iter):
        u.copy_(F.normalize(torch.mv(w_mat, v), dim=0, eps=eps))
        v.copy_(F.normalize(torch.mv(w_mat.t(), u), dim=0, eps=eps))
    return torch.vdot(u, torch.mv(w_mat, v))


def reference_backward(grad, weight, u, v, sigma, A, H, K):
    c = (grad * weight).sum()
    outer = (u.view(1, H, 1) * v.view(A, 1, K)).reshape(weight.shape)
    return (grad - (c / sigma) * outer) / sigma


@functools.cache
def _backend_kernels(name: str):
    """(power_iteration, backward) of backend `name`, all with the reference signature."""
    if name == "reference":
        return reference_power_iteration, reference_backward
    if name == "triton":
        from ..triton import spectral_norm as tsn

        return tsn.power_iteration, tsn.backward
    ext, suffix = _backend.extension_for(name)
    return getattr(ext, f"sn_power_iteration_{suffix}"), getattr(ext, f"sn_backward_{suffix}")


def _run_power_iteration(weight, u, v, dim, n_iter, eps, backend=None):
    A, H, K = matrix_view(weight.shape, dim)
    power_iteration, _ = _backend_kernels(backend or _backend.resolve(weight.device))
    return power_iteration(weight.contiguous(), u, v, A, H, K, n_iter, eps)


def _run_backward(grad, weight, u, v, sigma, dim, backend=None):
    A, H, K = matrix_view(weight.shape, dim)
    _, backward = _backend_kernels(backend or _backend.resolve(weight.device))
    return backward(grad.contiguous(), weight.contiguous(), u, v, sigma, A, H, K)


# ---------------------------------------------------------------------------------------
# torch.library ops. The power iteration mutates u, v and has no gradient; the scaling
# W / sigma carries the gradient; its backward is an op of its own so that it can be
# differentiated again (gradient penalties back-propagate through D's backward).


@torch.library.custom_op("gankernels::sn_power_iteration", mutates_args=("u", "v"))
def sn_power_iteration(
    weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor, dim: int, n_iter: int, eps: float
) -> torch.Tensor:
    return _run_power_iteration(weight, u, v, dim, n_iter, eps)


@sn_power_iteration.register_fake
def _(weight, u, v, dim, n_iter, eps):
    return weight.new_empty(())


@torch.library.custom_op("gankernels::sn_scale", mutates_args=())
def sn_scale(
    weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor, dim: int
) -> torch.Tensor:
    return weight / sigma


@sn_scale.register_fake
def _(weight, u, v, sigma, dim):
    return torch.empty_like(weight)


@torch.library.custom_op("gankernels::sn_scale_backward", mutates_args=())
def sn_scale_backward(
    grad: torch.Tensor,
    weight: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    sigma: torch.Tensor,
    dim: int,
) -> torch.Tensor:
    return _run_backward(grad, weight, u, v, sigma, dim)


@sn_scale_backward.register_fake
def _(grad, weight, u, v, sigma, dim):
    return torch.empty_like(weight, memory_format=torch.contiguous_format)


def _scale_setup(ctx, inputs, output):
    weight, u, v, sigma, dim = inputs
    ctx.save_for_backward(weight, u, v, sigma)
    ctx.dim = dim


def _scale_backward(ctx, grad):
    weight, u, v, sigma = ctx.saved_tensors
    return sn_scale_backward(grad, weight, u, v, sigma, ctx.dim), None, None, None, None


sn_scale.register_autograd(_scale_backward, setup_context=_scale_setup)


def _scale_backward_setup(ctx, inputs, output):
    grad, weight, u, v, sigma, dim = inputs
    ctx.save_for_backward(grad, weight, u, v)
    ctx.dim = dim


def _scale_double_backward(ctx, h):
    """Gradients of B(g, W) = (g - <g,W>/s * P) / s with s = <P, W>, P = u v^T.

    Plain torch expressions, so that every further order is differentiable too.
    """
    grad, weight, u, v = ctx.saved_tensors
    P = _outer(u, v, weight.shape, ctx.dim)
    s = (P * weight).sum()
    hp, hg, gw = (h * P).sum(), (h * grad).sum(), (grad * weight).sum()
    d_grad = (h - (hp / s) * weight) / s
    d_weight = -(hg / s**2) * P - (hp / s**2) * grad + (2 * gw * hp / s**3) * P
    return d_grad, d_weight, None, None, None, None


sn_scale_backward.register_autograd(_scale_double_backward, setup_context=_scale_backward_setup)


# ---------------------------------------------------------------------------------------
# Public functional op.


def check_inputs(weight, u, v, n_power_iterations, eps, dim) -> int:
    """Validate arguments; returns `dim` made non-negative."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"spectral_norm: weight must be a tensor, got {type(weight).__name__}")
    if not weight.is_floating_point():
        raise TypeError(f"spectral_norm: weight must be floating point, got {weight.dtype}")
    if weight.ndim < 2:
        raise ValueError(
            f"spectral_norm: weight must have at least 2 dims, got shape {tuple(weight.shape)} "
            "(1-D weights are normalised by the module with F.normalize)"
        )
    if not isinstance(n_power_iterations, int) or n_power_iterations <= 0:
        raise ValueError(
            f"spectral_norm: n_power_iterations must be a positive int, got {n_power_iterations!r}"
        )
    if not eps > 0:
        raise ValueError(f"spectral_norm: eps must be > 0, got {eps!r}")
    if not -weight.ndim <= dim < weight.ndim:
        raise IndexError(
            f"spectral_norm: dim must be in [{-weight.ndim}, {weight.ndim - 1}] for a "
            f"{weight.ndim}-D weight, got {dim}"
        )
    dim = dim % weight.ndim
    A, H, K = matrix_view(weight.shape, dim)
    for name, vec, length in (("u", u, H), ("v", v, A * K)):
        if not isinstance(vec, torch.Tensor) or vec.ndim != 1 or vec.numel() != length:
            shape = tuple(vec.shape) if isinstance(vec, torch.Tensor) else type(vec).__name__
            raise ValueError(
                f"spectral_norm: {name} must be a 1-D tensor of length {length} for weight "
                f"shape {tuple(weight.shape)} and dim={dim}, got {shape}"
            )
        if vec.device != weight.device:
            raise ValueError(
                f"spectral_norm: {name} is on {vec.device} but weight is on {weight.device}"
            )
        if vec.dtype != weight.dtype:
            raise TypeError(f"spectral_norm: {name} has dtype {vec.dtype}, weight {weight.dtype}")
        if not vec.is_contiguous():
            raise ValueError(f"spectral_norm: {name} must be contiguous (it is updated in place)")
    return dim


def spectral_norm(
    weight: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    dim: int = 0,
    training: bool = True,
) -> torch.Tensor:
    """W / sigma(W). In training mode u and v are first updated in place by
    `n_power_iterations` steps of power iteration; in eval mode they are used as stored."""
    dim = check_inputs(weight, u, v, n_power_iterations, eps, dim)
    n_iter = n_power_iterations if training else 0
    if torch.compiler.is_compiling():
        with torch.no_grad():
            sigma = sn_power_iteration(weight.detach(), u, v, dim, n_iter, eps)
        # Clones: the next forward updates u, v in place while this graph may need them.
        return sn_scale(weight, u.clone(), v.clone(), sigma, dim)
    # Eager: call the kernels directly. The custom-op dispatch above costs more than the
    # whole kernel on a small weight; the numbers are the same.
    backend = _backend.resolve(weight.device)
    with torch.no_grad():
        sigma = _run_power_iteration(weight.detach(), u, v, dim, n_iter, eps, backend)
    if not (weight.requires_grad and torch.is_grad_enabled()):
        return weight / sigma  # nothing to differentiate: skip autograd's bookkeeping
    return _SNScale.apply(weight, u.clone(), v.clone(), sigma, dim, backend)


class _SNScale(torch.autograd.Function):
    """Eager twin of the `sn_scale` op."""

    @staticmethod
    def forward(ctx, weight, u, v, sigma, dim, backend):
        ctx.save_for_backward(weight, u, v, sigma)
        # The backward runs where the forward's backend choice is not visible (autograd's
        # device threads do not see `use_backend`), so remember it.
        ctx.dim, ctx.backend = dim, backend
        return weight / sigma

    @staticmethod
    def backward(ctx, grad):
        weight, u, v, sigma = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the differentiable op
            grad_w = sn_scale_backward(grad, weight, u, v, sigma, ctx.dim)
        else:
            grad_w = _run_backward(grad, weight, u, v, sigma, ctx.dim, ctx.backend)
        return grad_w, None, None, None, None, None
