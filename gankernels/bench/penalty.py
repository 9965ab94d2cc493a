"""`gankernels bench --ops penalty`: the WGAN-GP penalty (forward + backward), the
interpolation, and whole WGAN-GP and R1 critic steps, gankernels' helpers against the
textbook recipe and its torch.compile.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import nn

from .core import (
    BYTES_COUNTED,
    SUMMARIES,
    Case,
    Config,
    Prepared,
    _grads,
    _shape_str,
    compiled,
    register_op,
    rel_err,
)
from .sn import make_discriminator

PENALTY_SHAPES = [(64, 1, 28, 28), (64, 3, 64, 64), (32, 3, 256, 256)]
PENALTY_SHAPES_QUICK = [(8, 1, 28, 28)]


def _gp_eager(provider: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The WGAN-GP penalty of a gradient batch, as `provider` computes it."""
    if provider.startswith("gk-"):
        from ..ops.penalty import gradient_penalty

        return gradient_penalty

    def torch_gp(g):
        return ((g.flatten(1).norm(dim=1) - 1.0) ** 2).mean()

    return torch_gp


def _prepare_gp(shape: tuple[int, ...]):
    """Penalty forward + its gradient with respect to the input gradient batch."""

    def prepare(provider: str, cfg: Config) -> Prepared:
        size = cfg.dtype.itemsize * math.prod(shape)
        grads = [cfg.randn(*shape).requires_grad_() for _ in range(cfg.copies(2 * size))]
        eager = _gp_eager(provider)
        f = compiled(eager) if provider == "torch.compile" else eager
        pool = itertools.cycle(grads)

        def fn():
            g = next(pool)
            return torch.autograd.grad(f(g), g)

        def check() -> float:
            g = cfg.randn(*shape).requires_grad_()
            (dg,) = torch.autograd.grad(f(g), g)
            ref_g = g.detach().double().requires_grad_()
            (ref,) = torch.autograd.grad(_gp_eager("torch")(ref_g), ref_g)
            return max(rel_err(f(g), _gp_eager("torch")(ref_g)), rel_err(dg, ref))

        return Prepared(fn, check)

    return prepare


def _prepare_interpolate(shape: tuple[int, ...]):
    def prepare(provider: str, cfg: Config) -> Prepared:
        size = cfg.dtype.itemsize * math.prod(shape)
        n = cfg.copies(3 * size)
        pairs = [(cfg.randn(*shape), cfg.randn(*shape)) for _ in range(n)]
        alpha = torch.rand(shape[0], device=cfg.device)
        if provider.startswith("gk-"):
            from ..ops.penalty import interpolate

            def eager(real, fake):
                return interpolate(real, fake, alpha)
        else:

            def eager(real, fake):
                a = alpha.view(-1, *[1] * (len(shape) - 1)).to(real.dtype)
                return fake + a * (real - fake)

        f = compiled(eager) if provider == "torch.compile" else eager
        pool = itertools.cycle(pairs)

        def fn():
            return f(*next(pool))

        def check() -> float:
            real, fake = cfg.randn(*shape), cfg.randn(*shape)
            a = alpha.double().view(-1, *[1] * (len(shape) - 1))
            return rel_err(f(real, fake), fake.double() + a * (real.double() - fake.double()))

        return Prepared(fn, check)

    return prepare


@register_op("penalty")
def penalty_cases(cfg: Config) -> list[Case]:
    """WGAN-GP penalty (forward + backward) and the interpolation, against torch eager."""
    cases = []
    for shape in PENALTY_SHAPES_QUICK if cfg.quick else PENALTY_SHAPES:
        # Bytes the fused algorithm must move: read g, then read g and write dg; and
        # read real, fake, write x_hat.
        moved = 3 * math.prod(shape) * cfg.dtype.itemsize
        cases.append(Case("penalty", "gp_fwd_bwd", _shape_str(shape), _prepare_gp(shape), moved))
        cases.append(
            Case("penalty", "interpolate", _shape_str(shape), _prepare_interpolate(shape), moved)
        )
    return cases + critic_step_cases(cfg)


# Whole critic steps: WGAN-GP and R1 on DCGAN critics, gankernels against the plain recipe.

CRITIC_IMAGES = [(1, 28, 28), (3, 64, 64)]
CRITIC_BATCH, CRITIC_BATCH_QUICK = 64, 8


def make_critic(
    image: tuple[int, int, int], device: torch.device | str = "cpu", dtype=torch.float32
) -> nn.Sequential:
    """A DCGAN critic without batch norm (as WGAN-GP asks) for 1x28x28 or 3x64x64 images:
    stride-2 4x4 convolutions with LeakyReLU, one logit per sample. Seeded: equal weights
    for every provider."""
    if image[1:] == (28, 28):
        return make_discriminator("none", device, dtype)
    if image[1:] != (64, 64):
        raise ValueError(f"make_critic: image must be Cx28x28 or Cx64x64, got {image}")
    torch.manual_seed(1234)
    widths = [image[0], 64, 128, 256, 512]
    layers: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(widths):
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
    layers += [nn.Conv2d(512, 1, 4, 1, 0), nn.Flatten()]
    return nn.Sequential(*layers).to(device=device, dtype=dtype)


def textbook_wgan_gp(D, real, fake, alpha, weight=10.0):
    """The WGAN-GP critic loss as public code writes it."""
    a = alpha.view(-1, *[1] * (real.dim() - 1)).to(real.dtype)
    x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    return D(fake).mean() - D(real).mean() + weight * penalty


def textbook_r1(D, real, fake, gamma=10.0):
    """The non-saturating D loss with R1 on the real batch, as public code writes it."""
    real = real.detach().requires_grad_(True)
    logits_real = D(real)
    (grad,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True)
    r1 = grad.flatten(1).square().sum(1).mean()
    loss = nn.functional.softplus(-logits_real).mean() + nn.functional.softplus(D(fake)).mean()
    return loss + gamma / 2 * r1


def gk_r1(D, real, fake, gamma=10.0):
    from ..regularizers import r1_penalty_from

    real = real.detach().requires_grad_(True)
    logits_real = D(real)
    loss = nn.functional.softplus(-logits_real).mean() + nn.functional.softplus(D(fake)).mean()
    return loss + r1_penalty_from(logits_real, real, gamma)


def _unpenalised(kind: str):
    def loss(D, real, fake):
        if kind == "wgan_gp":
            return D(fake).mean() - D(real).mean()
        softplus = nn.functional.softplus
        return softplus(-D(real)).mean() + softplus(D(fake)).mean()

    return loss


def _prepare_critic_step(kind: str, image: tuple[int, int, int], batch: int):
    """One critic step (zero grads, loss, backward) of `kind` ('wgan_gp' or 'r1').

    Providers: 'torch' the textbook recipe; 'torch.compile' the same with D compiled;
    gk-<backend> gankernels' helpers (three D forwards); 'passes=2' / 'passes=1' the
    batched WGAN-GP variants; 'no-penalty' the same loss without the penalty (the
    penalty's overhead is the ratio of the two)."""

    def prepare(provider: str, cfg: Config) -> Prepared:
        from ..regularizers import wgan_gp_critic_loss

        model = make_critic(image, cfg.device, cfg.dtype)
        D = compiled(model) if provider == "torch.compile" else model
        real, fake = cfg.randn(batch, *image), cfg.randn(batch, *image)
        gen = torch.Generator(cfg.device)

        def loss_of(D, real, fake, seed):
            gen.manual_seed(seed)
            if provider == "no-penalty":
                return _unpenalised(kind)(D, real, fake)
            if kind == "r1":
                return (gk_r1 if provider.startswith("gk-") else textbook_r1)(D, real, fake)
            if provider in ("torch", "torch.compile"):
                alpha = torch.rand(batch, generator=gen, device=cfg.device)
                return textbook_wgan_gp(D, real, fake, alpha)
            passes = int(provider.split("=")[1]) if provider.startswith("passes=") else 3
            return wgan_gp_critic_loss(D, real, fake, passes=passes, generator=gen).loss

        def fn():
            model.zero_grad(set_to_none=True)
            loss_of(D, real, fake, 0).backward()

        def check() -> float:
            fn()
            ref = make_critic(image, cfg.device, torch.float64)
            ref.load_state_dict(model.state_dict())
            if kind == "r1":
                textbook_r1(ref, real.double(), fake.double()).backward()
            else:
                gen.manual_seed(0)  # the same alpha as the step above
                alpha = torch.rand(batch, generator=gen, device=cfg.device).double()
                textbook_wgan_gp(ref, real.double(), fake.double(), alpha).backward()
            return rel_err(_grads(model), _grads(ref))

        return Prepared(fn, None if provider == "no-penalty" else check)

    return prepare


def critic_step_cases(cfg: Config) -> list[Case]:
    batch = CRITIC_BATCH_QUICK if cfg.quick else CRITIC_BATCH
    images = CRITIC_IMAGES[:1] if cfg.quick else CRITIC_IMAGES
    cases = []
    for kind, extra in (("wgan_gp", ("passes=2", "passes=1")), ("r1", ())):
        for image in images:
            cases.append(
                Case(
                    "penalty",
                    f"{kind}_step",
                    f"D {batch}x{_shape_str(image)}",
                    _prepare_critic_step(kind, image, batch),
                    None,
                    extra_providers=(*extra, "no-penalty"),
                    time_scale=4.0,
                    tolerance={torch.float32: 2e-2, torch.bfloat16: 1e-1},
                )
            )
    return cases


def penalty_overhead_lines(rows: list[dict]) -> list[str]:
    """Penalised step time over the unpenalised one, per critic-step case and provider."""
    lines = []
    for case in ("wgan_gp_step", "r1_step"):
        shapes = dict.fromkeys(r["shape"] for r in rows if r["case"] == case)
        for shape in shapes:
            steps = {
                r["provider"]: r["median_ms"]
                for r in rows
                if r["case"] == case and r["shape"] == shape and r["median_ms"]
            }
            base = steps.pop("no-penalty", None)
            if base:
                parts = [f"{p} {t / base:.2f}x" for p, t in steps.items()]
                lines.append(
                    f"{case} {shape}: penalised / unpenalised step ({base:.1f} ms): "
                    + ", ".join(parts)
                )
    return lines


# What the GB/s column counts.
BYTES_COUNTED["penalty"] = (
    "gp_fwd_bwd: 3*G (G read for the norms, read again with dG written); "
    "interpolate: 3*X (real and fake read, x_hat written); critic steps: none"
)
SUMMARIES["penalty"] = penalty_overhead_lines
