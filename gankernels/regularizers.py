"""Whole-regulariser helpers for the training loop: WGAN-GP and R1/R2 on a
discriminator, built on the fused penalty ops.

    loss_d = loss_d + gk.gradient_penalty(D, real, fake.detach())        # WGAN-GP
    out = gk.wgan_gp_critic_loss(D, real, fake); out.loss.backward()     # whole step
    if gk.lazy_due(step, every=16):                                       # StyleGAN2-style
        gk.r1_penalty(D, real, gamma=10.0, every=16).backward()
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ._checks import finite_number
from .fusion import second_order
from .ops.penalty import gradient_penalty as _gp
from .ops.penalty import interpolate
from .ops.penalty import r1_penalty as _r1


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
    alpha: torch.Tensor | None = None,
    **d_kwargs,
) -> torch.Tensor:
    """weight * mean_i (||grad D(x_hat_i)|| - center)^2 at x_hat = fake + alpha (real - fake),
    alpha ~ U(0, 1) per sample (drawn from `generator`, or given as `alpha`, shape (B,)).
    `.backward()` of the result gives D's parameters the WGAN-GP gradient; real and fake
    are treated as constants. `every` > 1 multiplies the result by `every` for lazy
    regularisation (apply it when `lazy_due(step, every)`). d_kwargs go to D (e.g. class
    labels)."""
    finite_number("gradient_penalty: weight", weight)
    _check_every(every)
    x_hat = interpolate(real.detach(), fake.detach(), alpha=alpha, generator=generator)
    x_hat.requires_grad_(True)
    with second_order():  # D(x_hat)'s input gradient is differentiated again
        logits = D(x_hat, **d_kwargs)
    grad = _input_gradient(logits, x_hat)
    return (weight * every) * _gp(grad, center)


def r1_penalty(D, real: torch.Tensor, gamma: float = 10.0, every: int = 1, **d_kwargs):
    """gamma / 2 * mean_i ||grad D(real_i)||^2 (R1; pass fake samples for R2), times
    `every` for lazy regularisation."""
    finite_number("r1_penalty: gamma", gamma)
    _check_every(every)
    if not isinstance(real, torch.Tensor) or not real.is_floating_point():
        raise TypeError("r1_penalty: real must be a floating-point tensor")
    x = real.detach().requires_grad_(True)
    with second_order():
        logits = D(x, **d_kwargs)
    return r1_penalty_from(logits, x, gamma, every)


def r1_penalty_from(
    logits: torch.Tensor, real: torch.Tensor, gamma: float = 10.0, every: int = 1
) -> torch.Tensor:
    """R1 from a D forward on `real` that was already done (so the loop does not run D
    twice on the same batch): `real` must have required grad before that forward."""
    finite_number("r1_penalty_from: gamma", gamma)
    _check_every(every)
    if not isinstance(real, torch.Tensor) or not real.requires_grad:
        raise ValueError(
            "r1_penalty_from: real must require grad before D's forward "
            "(real = real.detach().requires_grad_(True); logits = D(real))"
        )
    return (gamma / 2 * every) * _r1(_input_gradient(logits, real))


class CriticLoss(NamedTuple):
    loss: torch.Tensor  # mean D(fake) - mean D(real) + weight * penalty; call .backward()
    wasserstein: torch.Tensor  # mean D(real) - mean D(fake), detached: the W-distance estimate
    penalty: torch.Tensor  # the unweighted gradient penalty, detached


def batch_coupled_modules(D) -> list[str]:
    """Names of D's submodules whose output for one sample depends on the others in the
    batch (batch norm, and modules that declare `batch_coupled = True`, such as minibatch
    standard deviation). [] for a D that is not an nn.Module (nothing to inspect)."""
    if not isinstance(D, nn.Module):
        return []
    return [
        name or type(D).__name__
        for name, m in D.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "batch_coupled", False)
    ]


def _repeat_batch(d_kwargs: dict, times: int, B: int) -> dict:
    """d_kwargs for a batch of `times` concatenated batches: per-sample tensors (batch
    dimension B first) repeated, anything else as is."""

    def repeat(v):
        if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == B:
            return v.repeat(times, *[1] * (v.dim() - 1))
        return v

    return {k: repeat(v) for k, v in d_kwargs.items()}


def wgan_gp_critic_loss(
    D,
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    center: float = 1.0,
    passes: int = 3,
    generator: torch.Generator | None = None,
    **d_kwargs,
) -> CriticLoss:
    """The whole WGAN-GP critic loss, mean D(fake) - mean D(real) + weight * GP, with
    `.loss.backward()` giving D's parameters its gradient (real and fake are constants).

    passes: how many D forwards evaluate the real, fake and interpolated batches.
      3  the textbook recipe: D(real), D(fake), D(x_hat)
      2  D(cat[real, fake]) and D(x_hat)
      1  D(cat[real, fake, x_hat]), the penalty's gradient taken through that forward
    Fewer passes mean fewer, larger calls; the values are the same (up to summation order)
    only when no layer mixes samples, so 1 and 2 refuse a D with batch norm. d_kwargs
    (e.g. class labels) are passed to every forward and repeated along the batch when
    batches are concatenated. See the README for which is fastest where."""
    finite_number("wgan_gp_critic_loss: weight", weight)
    if passes not in (1, 2, 3):
        raise ValueError(f"wgan_gp_critic_loss: passes must be 1, 2 or 3, got {passes!r}")
    if passes < 3:
        coupled = batch_coupled_modules(D)
        if coupled:
            raise ValueError(
                f"wgan_gp_critic_loss: passes={passes} evaluates real, fake and interpolated "
                f"samples in one batch, which changes the result of batch-coupled layers "
                f"({', '.join(coupled)}); use passes=3 or a critic without batch norm "
                f"(layer/instance norm, or none, as WGAN-GP recommends)"
            )
    real, fake = real.detach(), fake.detach()
    x_hat = interpolate(real, fake, generator=generator).requires_grad_(True)
    B = real.shape[0]
    if passes == 3:
        d_real, d_fake = D(real, **d_kwargs), D(fake, **d_kwargs)
        with second_order():
            d_hat = D(x_hat, **d_kwargs)
    elif passes == 2:
        d_real, d_fake = D(torch.cat([real, fake]), **_repeat_batch(d_kwargs, 2, B)).split(B)
        with second_order():
            d_hat = D(x_hat, **d_kwargs)
    else:
        kwargs = _repeat_batch(d_kwargs, 3, B)
        with second_order():
            d_real, d_fake, d_hat = D(torch.cat([real, fake, x_hat]), **kwargs).split(B)
    penalty = _gp(_input_gradient(d_hat, x_hat), center)
    wasserstein = d_real.mean() - d_fake.mean()
    loss = weight * penalty - wasserstein
    return CriticLoss(loss, wasserstein.detach(), penalty.detach())
