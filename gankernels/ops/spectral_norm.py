"""Spectral normalisation: W_sn = W / sigma(W), sigma the largest singular value.

Semantics are those of torch: the weight is a matrix M with `dim` moved to the front and
the rest flattened; in training mode `n_power_iterations` steps of power iteration update
u and v in place, in one of two orders:
  'uv'  u = normalize(M v); v = normalize(M^T u)   torch.nn.utils.parametrizations
  'vu'  v = normalize(M^T u); u = normalize(M v)   the legacy torch.nn.utils.spectral_norm
then sigma = u . M v with the new u, v; gradients flow through sigma with u, v constant.

The kernels see a contiguous weight as (A, H, K) with A = prod(shape[:dim]),
H = shape[dim], K = prod(shape[dim+1:]), so that M[h, a*K + k] = w[a, h, k] for any `dim`
without a copy. Two kernels per backend:
  power_iteration  ONE pass over W per iteration, in either order: each row's dot product
                   with v, then the same row, still in cache, scaled into M^T (M v)
                   ('uv'; 'vu' the same with columns); sigma from the norms of the two
                   results, so no extra pass
  backward         dW = (g - <g, W>/sigma * u v^T) / sigma: one reduction + one
                   elementwise pass
The forward division W / sigma is a single elementwise pass and stays in torch: a
training-mode forward reads W twice and writes it once.

`spectral_norm_sigma` and `spectral_norm_scale` are the two halves of `spectral_norm`, for
callers that compute sigma once and scale W by it several times (gk.nn.utils
.spectral_norm_once).
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


def reference_power_iteration(weight, u, v, A, H, K, n_iter, eps, v_first=False):
    w_mat = weight.reshape(A, H, K).transpose(0, 1).reshape(H, A * K)
    for _ in range(n_iter):
        if v_first:
            v.copy_(F.normalize(torch.mv(w_mat.t(), u), dim=0, eps=eps))
            u.copy_(F.normalize(torch.mv(w_mat, v), dim=0, eps=eps))
        else:
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


def _run_power_iteration(weight, u, v, dim, n_iter, eps, v_first, backend=None):
    A, H, K = matrix_view(weight.shape, dim)
    power_iteration, _ = _backend_kernels(backend or _backend.resolve(weight.device))
    return power_iteration(weight.contiguous(), u, v, A, H, K, n_iter, eps, v_first)


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
    weight: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    dim: int,
    n_iter: int,
    eps: float,
    v_first: bool = False,
) -> torch.Tensor:
    return _run_power_iteration(weight, u, v, dim, n_iter, eps, v_first)


@sn_power_iteration.register_fake
def _(weight, u, v, dim, n_iter, eps, v_first=False):
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
# Public functional ops.

ORDERS = ("uv", "vu")


def check_inputs(weight, u, v, n_power_iterations, eps, dim, order="uv") -> int:
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
    if order not in ORDERS:
        raise ValueError(
            "spectral_norm: order must be 'uv' (u then v, as torch.nn.utils.parametrizations"
            ".spectral_norm) or 'vu' (v then u, as the legacy torch.nn.utils.spectral_norm), "
            f"got {order!r}"
        )
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
    order: str = "uv",
) -> torch.Tensor:
    """W / sigma(W). In training mode u and v are first updated in place by
    `n_power_iterations` steps of power iteration in `order` ('uv': u first, as torch's
    parametrization; 'vu': v first, as the legacy hook); in eval mode they are used as
    stored."""
    sigma = spectral_norm_sigma(weight, u, v, n_power_iterations, eps, dim, training, order)
    needs_graph = weight.requires_grad and torch.is_grad_enabled()
    if not needs_graph and not torch.compiler.is_compiling():
        return weight / sigma  # nothing to differentiate: skip autograd's bookkeeping
    # Clones: the next forward updates u, v in place while this graph may still need them.
    return _scale(weight, u.clone(), v.clone(), sigma, dim % weight.ndim)


def spectral_norm_sigma(
    weight: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    dim: int = 0,
    training: bool = True,
    order: str = "uv",
) -> torch.Tensor:
    """sigma = u . M v (0-dim, no gradient) after, in training mode, updating u and v in
    place as `spectral_norm` does. One pass over W per power iteration (eval: one pass)."""
    dim = check_inputs(weight, u, v, n_power_iterations, eps, dim, order)
    n_iter = n_power_iterations if training else 0
    v_first = order == "vu"
    with torch.no_grad():
        if torch.compiler.is_compiling():
            return sn_power_iteration(weight.detach(), u, v, dim, n_iter, eps, v_first)
        # Eager: call the kernels directly. The custom-op dispatch costs more than the
        # whole kernel on a small weight; the numbers are the same.
        backend = _backend.resolve(weight.device)
        return _run_power_iteration(weight.detach(), u, v, dim, n_iter, eps, v_first, backend)


def spectral_norm_scale(
    weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor, dim: int = 0
) -> torch.Tensor:
    """W / sigma with the gradient of spectral normalisation, sigma = u . M v taken as a
    function of W with u, v constant (first and higher orders). `sigma` must be that value
    for this W, u and v (as `spectral_norm_sigma` returns it), and u, v must not change
    before the backward."""
    if not isinstance(sigma, torch.Tensor) or sigma.numel() != 1:
        raise ValueError("spectral_norm_scale: sigma must be a one-element tensor")
    dim = check_inputs(weight, u, v, 1, 1.0, dim)
    if sigma.dtype != weight.dtype or sigma.device != weight.device:
        raise TypeError(
            f"spectral_norm_scale: sigma must have the weight's dtype and device "
            f"({weight.dtype}, {weight.device}), got {sigma.dtype} on {sigma.device}"
        )
    return _scale(weight, u, v, sigma.reshape(()), dim)


def _scale(weight, u, v, sigma, dim, out=None):
    """W / sigma with SN's gradient; eager callers may pass `out`, a tensor laid out like
    the weight that nothing else refers to, to write into."""
    if torch.compiler.is_compiling():
        return sn_scale(weight, u, v, sigma, dim)
    if not (weight.requires_grad and torch.is_grad_enabled()):
        # nothing to differentiate: skip autograd's bookkeeping
        return weight / sigma if out is None else torch.div(weight, sigma, out=out)
    return _SNScale.apply(weight, u, v, sigma, dim, _backend.resolve(weight.device), out)


def _spectral_norm_into(weight, u, v, n_power_iterations, eps, dim, training, order, out):
    """`spectral_norm` writing W / sigma into `out` (see `_scale`); eager only."""
    sigma = spectral_norm_sigma(weight, u, v, n_power_iterations, eps, dim, training, order)
    if not (weight.requires_grad and torch.is_grad_enabled()):
        return torch.div(weight, sigma, out=out)
    return _scale(weight, u.clone(), v.clone(), sigma, dim % weight.ndim, out)


class _SNScale(torch.autograd.Function):
    """Eager twin of the `sn_scale` op."""

    @staticmethod
    def forward(ctx, weight, u, v, sigma, dim, backend, out=None):
        ctx.save_for_backward(weight, u, v, sigma)
        # The backward runs where the forward's backend choice is not visible (autograd's
        # device threads do not see `use_backend`), so remember it.
        ctx.dim, ctx.backend = dim, backend
        if out is None:
            return weight / sigma
        ctx.mark_dirty(out)  # written in place and returned
        return torch.div(weight, sigma, out=out)

    @staticmethod
    def backward(ctx, grad):
        weight, u, v, sigma = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the differentiable op
            grad_w = sn_scale_backward(grad, weight, u, v, sigma, ctx.dim)
        else:
            grad_w = _run_backward(grad, weight, u, v, sigma, ctx.dim, ctx.backend)
        return grad_w, None, None, None, None, None, None
