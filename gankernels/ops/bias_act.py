"""bias_act: bias add, activation, gain and clamp in one pass (the tail of every GAN conv
block), with first and second order gradients.

    y = clamp(gain * act(x + b[c]), -clamp, clamp)       c: the index along `dim`

Two kernels per backend, both one elementwise pass over memory:
  bias_act_forward(x, b, C, inner, act, alpha, gain, clamp)                -> y
  bias_act_grad(dy, s, b, C, inner, act, alpha, gain, clamp, order, s_is_y) -> like dy
Kernel contract: x, dy and s are dense (contiguous, channels_last or any permutation)
with identical strides; the channel of flat memory element i is (i // inner) % C, where
inner = x.stride(dim), which holds for every dense layout. b is None or a contiguous (C,)
tensor of x's dtype. clamp < 0 means no clamp. Arithmetic is float32 (float64 for
float64 data); outputs are laid out like x.

The backward needs only one saved tensor s: the output y for activations whose derivative
is a function of their value (linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus),
the input x (with b) for swish; the kernels accept only that pairing (`saves_y`).
With u = y / gain the pre-gain value and z = x + b,
`bias_act_grad` computes
  order 1:  dy * gain * act'(z) * mask          (the gradient with respect to x)
  order 2:  dy * d(gain * act'(z) * mask)/ds    (its derivative with respect to s)
where mask = |y| < clamp (1 without a clamp); order 2 is what double backward needs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from .. import _backend
from .._checks import finite_number
from ._layout import dense, like, profiled

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@dataclass(frozen=True)
class Activation:
    name: str
    code: int  # the kernels' activation id
    alpha: float | None  # default alpha (None: the activation takes none)
    gain: float  # default gain
    saves_y: bool  # the backward needs y (True) or x (False)


_SQRT2 = math.sqrt(2.0)
ACTIVATIONS = {
    a.name: a
    for a in (
        Activation("linear", 0, None, 1.0, True),
        Activation("relu", 1, None, _SQRT2, True),
        Activation("lrelu", 2, 0.2, _SQRT2, True),
        Activation("tanh", 3, None, 1.0, True),
        Activation("sigmoid", 4, None, 1.0, True),
        Activation("elu", 5, 1.0, 1.0, True),
        Activation("selu", 6, SELU_ALPHA, 1.0, True),
        Activation("softplus", 7, None, 1.0, True),
        Activation("swish", 8, None, _SQRT2, False),
    )
}
CODES = {a.code: a for a in ACTIVATIONS.values()}


# ---------------------------------------------------------------------------------------
# Reference kernels (plain torch), the ground truth of every backend; same signatures as
# the backends' kernels.


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _channel_bias(b: torch.Tensor, x: torch.Tensor, C: int, inner: int) -> torch.Tensor:
    """b[(i // inner) % C] for every element of x, shaped like x."""
    # The dim whose stride is `inner` and size C is the channel dim (for C == 1 any bias
    # broadcasts alike).
    for d in range(x.dim()):
        if x.shape[d] == C and (x.stride(d) == inner or C == 1):
            shape = [1] * x.dim()
            shape[d] = C
            return b.view(shape)
    raise ValueError(f"no dim of size {C} with stride {inner} in {tuple(x.shape)}")


def _act(z: torch.Tensor, code: int, alpha: float) -> torch.Tensor:
    if code == 0:
        return z
    if code == 1:
        return z.clamp_min(0)
    if code == 2:
        return torch.where(z > 0, z, z * alpha)
    if code == 3:
        return z.tanh()
    if code == 4:
        return z.sigmoid()
    if code == 5:
        return torch.where(z > 0, z, alpha * z.clamp_max(0).expm1())
    if code == 6:
        return SELU_SCALE * torch.where(z > 0, z, alpha * z.clamp_max(0).expm1())
    if code == 7:
        return torch.nn.functional.softplus(z)
    if code == 8:
        return z * z.sigmoid()
    raise ValueError(f"unknown activation code {code}")


def reference_bias_act_forward(x, b, C, inner, act, alpha, gain, clamp):
    acc = _acc_dtype(x.dtype)
    z = x.to(acc)
    if b is not None:
        z = z + _channel_bias(b.to(acc), x, C, inner)
    y = _act(z, act, alpha) * gain
    if clamp >= 0:
        y = y.clamp(-clamp, clamp)
    return y.to(x.dtype)


def _derivatives(s, z, code, alpha, gain):
    """(gain * act'(z), d(gain * act'(z))/ds) from the saved value s (y) or z = x + b."""
    if code == 8:  # swish, from z
        sg = z.sigmoid()
        d1 = sg + z * sg * (1 - sg)
        d2 = sg * (1 - sg) * (2 + z * (1 - 2 * sg))
        return gain * d1, gain * d2
    u = s / gain
    one, zero = torch.ones_like(u), torch.zeros_like(u)
    if code == 0:
        return gain * one, zero
    if code == 1:
        return gain * (u > 0).to(u.dtype), zero
    if code == 2:
        return gain * torch.where(u > 0, one, one * alpha), zero
    if code == 3:
        return gain * (1 - u * u), -2 * u
    if code == 4:
        return gain * u * (1 - u), 1 - 2 * u
    if code == 5:
        return gain * torch.where(u > 0, one, u + alpha), torch.where(u > 0, zero, one)
    if code == 6:
        d1 = torch.where(u > 0, one * SELU_SCALE, u + SELU_SCALE * alpha)
        return gain * d1, torch.where(u > 0, zero, one)
    if code == 7:
        return gain * -torch.expm1(-u), torch.exp(-u)
    raise ValueError(f"unknown activation code {code}")


def check_saved(act: int, s_is_y: bool) -> None:
    """The saved tensor is y for every activation but swish, whose derivative needs x."""
    if s_is_y != CODES[act].saves_y:
        raise ValueError(
            f"bias_act_grad: s must be {'y' if CODES[act].saves_y else 'x'} for act "
            f"{CODES[act].name!r} (code {act}), got s_is_y={s_is_y}"
        )


def reference_bias_act_grad(dy, s, b, C, inner, act, alpha, gain, clamp, order, s_is_y):
    check_saved(act, s_is_y)
    acc = _acc_dtype(dy.dtype)
    s32 = s.to(acc)
    z = None
    if not s_is_y:
        z = s32 if b is None else s32 + _channel_bias(b.to(acc), s, C, inner)
    d1, d2 = _derivatives(s32, z, act, alpha, gain)
    out = dy.to(acc) * (d1 if order == 1 else d2)
    if clamp >= 0:
        y = s32 if s_is_y else _act(z, act, alpha) * gain
        out = torch.where(y.abs() < clamp, out, 0)
    return out.to(dy.dtype)


_KERNELS = ("bias_act_forward", "bias_act_grad")
# Activations whose derivative is piecewise constant (linear, relu, lrelu; a clamp's mask
# too): the second-order term d(act'(z))/ds is zero, so double backward returns None for
# s instead of a tensor of zeros. That saves the order-2 pass, and in a gradient penalty
# it keeps autograd from running the whole forward graph's backward on zeros (the
# penalised forward's output is not in the loss; only its input gradient is).
PIECEWISE_LINEAR = frozenset(
    a.code for a in ACTIVATIONS.values() if a.name in ("linear", "relu", "lrelu")
)


@functools.cache
def _kernels(backend: str) -> dict:
    return _backend.kernel_table(backend, _KERNELS, globals(), "bias_act")


def _kernel(name: str, device: torch.device):
    return _kernels(_backend.resolve(device))[name]


def _bias(b: torch.Tensor | None) -> torch.Tensor | None:
    return None if b is None else b.contiguous()


# ---------------------------------------------------------------------------------------
# torch.library ops. bias_act_forward's gradient is bias_act_grad (order 1); that op's
# gradient is itself again (order 1 in dy, order 2 in s), which gives second order.


@torch.library.custom_op("gankernels::bias_act_forward", mutates_args=())
def bias_act_forward(
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    act: int,
    alpha: float,
    gain: float,
    clamp: float,
) -> torch.Tensor:
    x = dense(x)
    return _kernel("bias_act_forward", x.device)(
        x, _bias(b), x.shape[dim], x.stride(dim), act, alpha, gain, clamp
    )


@bias_act_forward.register_fake
def _(x, b, dim, act, alpha, gain, clamp):
    return torch.empty_like(dense(x))


@torch.library.custom_op("gankernels::bias_act_grad", mutates_args=())
def bias_act_grad(
    dy: torch.Tensor,
    s: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    act: int,
    alpha: float,
    gain: float,
    clamp: float,
    order: int,
    s_is_y: bool,
) -> torch.Tensor:
    s = dense(s)
    return _kernel("bias_act_grad", s.device)(
        like(dy, s),
        s,
        _bias(b),
        s.shape[dim],
        s.stride(dim),
        act,
        alpha,
        gain,
        clamp,
        order,
        s_is_y,
    )


@bias_act_grad.register_fake
def _(dy, s, b, dim, act, alpha, gain, clamp, order, s_is_y):
    return torch.empty_like(dense(s))


def _sum_but(t: torch.Tensor, dim: int, like: torch.Tensor) -> torch.Tensor:
    """t summed over every dim except `dim`, in like's dtype (a bias gradient)."""
    dims = [d for d in range(t.dim()) if d != dim]
    return t.sum(dims, dtype=_acc_dtype(t.dtype)).to(like.dtype)


def _forward_setup(ctx, inputs, output):
    x, b, dim, act, alpha, gain, clamp = inputs
    ctx.args = (dim, act, alpha, gain, clamp)
    ctx.s_is_y = CODES[act].saves_y
    ctx.save_for_backward(output if ctx.s_is_y else x, b)


def _forward_backward(ctx, dy):
    s, b = ctx.saved_tensors
    dim = ctx.args[0]
    # From y the derivative needs no bias; from x it does (z = x + b).
    dx = bias_act_grad(dy, s, None if ctx.s_is_y else b, *ctx.args, 1, ctx.s_is_y)
    db = _sum_but(dx, dim, b) if b is not None and ctx.needs_input_grad[1] else None
    return dx, db, None, None, None, None, None


def _grad_setup(ctx, inputs, output):
    dy, s, b, dim, act, alpha, gain, clamp, order, s_is_y = inputs
    ctx.args = (dim, act, alpha, gain, clamp)
    ctx.order, ctx.s_is_y = order, s_is_y
    ctx.save_for_backward(dy, s, b)


def _grad_backward(ctx, h):
    if ctx.order != 1:
        raise RuntimeError("bias_act: gradients beyond the second order are not supported")
    dy, s, b = ctx.saved_tensors
    dim, act = ctx.args[0], ctx.args[1]
    grad_dy = grad_s = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_dy = bias_act_grad(h, s, b, *ctx.args, 1, ctx.s_is_y)
    if (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]) and act not in PIECEWISE_LINEAR:
        grad_s = bias_act_grad(h * dy, s, b, *ctx.args, 2, ctx.s_is_y)
        if b is not None and ctx.needs_input_grad[2]:
            grad_b = _sum_but(grad_s, dim, b)  # b is only given with s = x: z = x + b
    return grad_dy, grad_s, grad_b, None, None, None, None, None, None, None


bias_act_forward.register_autograd(_forward_backward, setup_context=_forward_setup)
bias_act_grad.register_autograd(_grad_backward, setup_context=_grad_setup)


# ---------------------------------------------------------------------------------------
# Eager twins of the two ops: the same kernels and the same gradients, called through
# autograd Functions instead of the torch.library dispatch, which costs several times a
# small kernel (tens of microseconds a call). torch.compile traces the ops above.


def _run_forward(x, b, dim, act, alpha, gain, clamp, backend):
    x = dense(x)
    kernel = _kernels(backend)["bias_act_forward"]
    with profiled("gankernels::bias_act_forward"):
        return kernel(x, _bias(b), x.shape[dim], x.stride(dim), act, alpha, gain, clamp)


def _run_grad(dy, s, b, dim, act, alpha, gain, clamp, order, s_is_y, backend):
    s = dense(s)
    kernel = _kernels(backend)["bias_act_grad"]
    with profiled("gankernels::bias_act_grad"):
        return kernel(
            like(dy, s), s, _bias(b), s.shape[dim], s.stride(dim), act, alpha, gain, clamp,
            order, s_is_y,
        )  # fmt: skip


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, dim, act, alpha, gain, clamp, backend):
        y = _run_forward(x, b, dim, act, alpha, gain, clamp, backend)
        ctx.args = (dim, act, alpha, gain, clamp)
        ctx.s_is_y, ctx.backend = CODES[act].saves_y, backend  # autograd threads do not
        ctx.save_for_backward(y if ctx.s_is_y else x, b)  # see `use_backend`
        ctx.set_materialize_grads(False)  # see _PiecewiseLinearInPlace
        return y

    @staticmethod
    def backward(ctx, dy):
        if dy is None:
            return (None,) * 8
        s, b = ctx.saved_tensors
        b_for_s = None if ctx.s_is_y else b
        if torch.is_grad_enabled():  # create_graph: a differentiable gradient
            dx = _BiasActGrad.apply(dy, s, b_for_s, *ctx.args, 1, ctx.s_is_y, ctx.backend)
        else:
            dx = _run_grad(dy, s, b_for_s, *ctx.args, 1, ctx.s_is_y, ctx.backend)
        db = _sum_but(dx, ctx.args[0], b) if b is not None and ctx.needs_input_grad[1] else None
        return dx, db, None, None, None, None, None, None


class _BiasActGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dy, s, b, dim, act, alpha, gain, clamp, order, s_is_y, backend):
        ctx.args, ctx.order, ctx.s_is_y, ctx.backend = (
            (dim, act, alpha, gain, clamp),
            order,
            s_is_y,
            backend,
        )
        ctx.save_for_backward(dy, s, b)
        ctx.set_materialize_grads(False)
        return _run_grad(dy, s, b, dim, act, alpha, gain, clamp, order, s_is_y, backend)

    @staticmethod
    def backward(ctx, h):
        if h is None:
            return (None,) * 11
        if ctx.order != 1:
            raise RuntimeError("bias_act: gradients beyond the second order are not supported")
        dy, s, b = ctx.saved_tensors
        dim, act = ctx.args[0], ctx.args[1]
        tail = (1, ctx.s_is_y, ctx.backend)
        grad_dy = grad_s = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_dy = _BiasActGrad.apply(h, s, b, *ctx.args, *tail)
        if (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]) and act not in PIECEWISE_LINEAR:
            grad_s = _BiasActGrad.apply(h * dy, s, b, *ctx.args, 2, ctx.s_is_y, ctx.backend)
            if b is not None and ctx.needs_input_grad[2]:
                grad_b = _sum_but(grad_s, dim, b)
        return grad_dy, grad_s, grad_b, None, None, None, None, None, None, None, None


class _PiecewiseLinearInPlace(torch.autograd.Function):
    """relu / lrelu (alpha >= 0) in place on a fresh tensor with torch's kernels, whose
    gradient, when it must be differentiable again, is our bias_act_grad from the result.
    Its double backward gives the input no gradient (the derivative is piecewise
    constant) where torch's gives a tensor of zeros, and autograd would carry those
    zeros back through the whole forward graph of a gradient penalty: a full backward
    pass of D on zeros every penalised step."""

    @staticmethod
    def forward(ctx, y, dim, act, alpha, backend):
        _torch_in_place(y, act, alpha)
        ctx.mark_dirty(y)
        ctx.save_for_backward(y)
        ctx.args, ctx.backend = (dim, act, alpha, 1.0, -1.0), backend
        ctx.set_materialize_grads(False)  # no gradient stays None, not a tensor of zeros
        return y

    @staticmethod
    def backward(ctx, dy):
        if dy is None:
            return None, None, None, None, None
        (y,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a differentiable gradient
            return _BiasActGrad.apply(dy, y, None, *ctx.args, 1, True, ctx.backend), *[None] * 4
        _, act, alpha = ctx.args[:3]
        if act == ACTIVATIONS["relu"].code:
            return torch.ops.aten.threshold_backward(dy, y, 0), *[None] * 4
        return torch.ops.aten.leaky_relu_backward(dy, y, alpha, True), *[None] * 4


def _torch_in_place(y: torch.Tensor, act: int, alpha: float) -> torch.Tensor:
    if act == ACTIVATIONS["relu"].code:
        return torch.relu_(y)
    return torch.nn.functional.leaky_relu_(y, alpha)


def piecewise_linear_(y: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    """relu(y) or leaky_relu(y, alpha >= 0) in place on a fresh tensor y that no one else
    reads, as torch's relu_ / leaky_relu_ but with a second order that stays out of the
    forward graph (see _PiecewiseLinearInPlace)."""
    if act not in ("relu", "lrelu") or (act == "lrelu" and alpha < 0):
        raise ValueError(f"piecewise_linear_: act must be relu or lrelu with alpha >= 0, got "
                         f"{act!r} alpha={alpha!r}")  # fmt: skip
    code = ACTIVATIONS[act].code
    if not (torch.is_grad_enabled() and y.requires_grad) or not eager(y) or y._is_view():
        return _torch_in_place(y, code, alpha)
    dim = 1 if y.dim() > 1 else 0  # no bias: any dim gives the kernels a valid layout
    return _PiecewiseLinearInPlace.apply(y, dim, code, alpha, _backend.resolve(y.device))


def eager(x: torch.Tensor) -> bool:
    """Whether the eager twins may run: not while torch.compile traces, and only on real
    tensors (not fake or meta tensors, not tensor subclasses)."""
    if torch.compiler.is_compiling():
        return False
    return (type(x) is torch.Tensor or type(x) is torch.nn.Parameter) and x.device.type != "meta"


def bias_act_code(x, b, dim, act: int, alpha: float, gain: float, clamp: float):
    """bias_act with checked arguments: dim in [0, x.dim()), act a code, alpha, gain and
    clamp floats (clamp < 0: none), b None or a (C,) tensor of x's dtype. The layers that
    validated their arguments once call this."""
    if not eager(x):
        return bias_act_forward(x, b, dim, act, alpha, gain, clamp)
    backend = _backend.resolve(x.device)
    if torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad)):
        return _BiasAct.apply(x, b, dim, act, alpha, gain, clamp, backend)
    return _run_forward(x, b, dim, act, alpha, gain, clamp, backend)


# ---------------------------------------------------------------------------------------
# Public op.


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """clamp(gain * act(x + b), -clamp, clamp) in one pass, b broadcast along `dim`.

    act: linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish. alpha defaults
    to the activation's usual value (lrelu 0.2, elu 1, selu 1.6733), gain to sqrt(2) for
    relu, lrelu and swish and 1 otherwise; clamp=None clamps nothing. First and second
    order gradients; the output keeps x's memory format."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"bias_act: x must be a floating-point tensor, got {_what(x)}")
    if x.dim() == 0:
        raise ValueError("bias_act: x must have at least one dim, got a 0-dim tensor")
    if act not in ACTIVATIONS:
        raise ValueError(f"bias_act: unknown act {act!r}; expected one of {list(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    if not isinstance(dim, int) or not -x.dim() <= dim < x.dim():
        raise ValueError(f"bias_act: dim must be an int in [-{x.dim()}, {x.dim()}), got {dim!r}")
    dim %= x.dim()
    if spec.alpha is None:
        if alpha is not None:
            raise ValueError(f"bias_act: act {act!r} takes no alpha, got alpha={alpha!r}")
        alpha = 0.0
    else:
        alpha = finite_number("bias_act: alpha", spec.alpha if alpha is None else alpha)
    gain = finite_number("bias_act: gain", spec.gain if gain is None else gain, strict=True)
    clamp = -1.0 if clamp is None else finite_number("bias_act: clamp", clamp)
    if b is not None:
        if not isinstance(b, torch.Tensor) or b.dim() != 1 or b.numel() != x.shape[dim]:
            raise ValueError(
                f"bias_act: b must be a 1-D tensor of length x.shape[{dim}] = {x.shape[dim]}, "
                f"got {_what(b)}"
            )
        if b.device != x.device:
            raise ValueError(f"bias_act: b is on {b.device} but x is on {x.device}")
        b = b.to(x.dtype)
    return bias_act_code(x, b, dim, spec.code, alpha, gain, clamp)


def _what(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor of shape {tuple(v.shape)}"
    return type(v).__name__
