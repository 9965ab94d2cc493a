"""Whole-regulariser helpers for the training loop: WGAN-GP and R1/R2 on a
discriminator, built on the fused penalty ops.

    loss_d = loss_d + gk.gradient_penalty(D, real, fake.detach())        # WGAN-GP
    if gk.lazy_due(step, every=16):                                       # StyleGAN2-style
        gk.r1_penalty(D, real, gamma=10.0, every=16).backward()
"""

from __future__ import annotations

import math

import torch

from .ops.penalty import gradient_penalty as _gp
from .ops.penalty import interpolate
from .ops.penalty import r1_penalty as _r1


def _check_scale(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_every(every: int) -> None:
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an int >= 1, got {every!r}")


def lazy_due(step: int, every: int) -> bool:
    """Whether a lazily applied regulariser (`every` > 1) is due at `step`."""
    _check_every(every)
    return step % every == 0


def _input_gradient(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    if outputs.dim() == 0 or outputs.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"D's output must have the batch dimension first ({inputs.shape[0]} samples), "
            f"got shape {tuple(outputs.shape)}"
        )
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad


def gradient_penalty(
    D,
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    center: float = 1.0,
    every: int = 1,
    generator: torch.Generator | None = None,
    **d_kwargs,
) -> torch.Tensor:
    """weight * mean_i (||grad D(x_hat_i)|| - center)^2 at x_hat = fake + alpha (real - fake),
    alpha ~ U(0, 1) per sample. `.backward()` of the result gives D's parameters the
    WGAN-GP gradient; real and fake are treated as constants. `every` > 1 multiplies the
    result by `every` for lazy regularisation (apply it when `lazy_due(step, every)`).
    d_kwargs go to D (e.g. class labels)."""
    _check_scale("gradient_penalty: weight", weight)
    _check_every(every)
    x_hat = interpolate(real.detach(), fake.detach(), generator=generator).requires_grad_(True)
    grad = _input_gradient(D(x_hat, **d_kwargs), x_hat)
    return (weight * every) * _gp(grad, center)


def r1_penalty(D, real: torch.Tensor, gamma: float = 10.0, every: int = 1, **d_kwargs):
    """gamma / 2 * mean_i ||grad D(real_i)||^2 (R1; pass fake samples for R2), times
    `every` for lazy regularisation."""
    _check_scale("r1_penalty: gamma", gamma)
    _check_every(every)
    if not isinstance(real, torch.Tensor) or not real.is_floating_point():
        raise TypeError("r1_penalty: real must be a floating-point tensor")
    x = real.detach().requires_grad_(True)
    return r1_penalty_from(D(x, **d_kwargs), x, gamma, every)


def r1_penalty_from(
    logits: torch.Tensor, real: torch.Tensor, gamma: float = 10.0, every: int = 1
) -> torch.Tensor:
    """R1 from a D forward on `real` that was already done (so the loop does not run D
    twice on the same batch): `real` must have required grad before that forward."""
    _check_scale("r1_penalty_from: gamma", gamma)
    _check_every(every)
    if not isinstance(real, torch.Tensor) or not real.requires_grad:
        raise ValueError(
            "r1_penalty_from: real must require grad before D's forward "
            "(real = real.detach().requires_grad_(True); logits = D(real))"
        )
    return (gamma / 2 * every) * _r1(_input_gradient(logits, real))
