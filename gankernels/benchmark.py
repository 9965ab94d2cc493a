"""Benchmark harness behind `gankernels bench`.

Every op registers one function that returns its cases (`register_op`). A case knows how
to prepare, for one provider, a timed call and a numerical check against a float64 torch
reference. Providers:

  torch          the eager torch implementation (the baseline of every speedup)
  torch.compile  torch.compile of the same eager function (skipped if it fails)
  gk-<backend>   gankernels with that backend forced ('cpu' on CPU; 'triton', 'cuda' on CUDA)
  ...            variants a case adds itself (e.g. 'no-sn': the same network, plain layers)

Timing: CPU, perf_counter around each call after a warm-up; CUDA, one pair of events
around each call after a warm-up, one synchronisation at the end. Both report the median.
Memory-bound cases rotate among enough input copies that the set outgrows the last-level
cache. Bandwidth is reported against the measured copy bandwidth of the device
(`dst.copy_(src)`, bytes read + bytes written).

    python -m gankernels bench --device cpu --quick
    python -m gankernels bench --ops sn --device cuda --out bench/results
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import _backend

# ---------------------------------------------------------------------------------------
# Configuration, cases, providers.

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
SHORT_DTYPE = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float64: "fp64"}
# Relative-error bound of the check, per dtype: float32 leaves room for TF32 convolutions
# and Triton's TF32 dots; a wrong kernel lands orders of magnitude above either.
TOLERANCE = {torch.float32: 5e-3, torch.bfloat16: 5e-2}
# Backends that run on each device type. Triton on CPU tensors needs the interpreter,
# which is far too slow to be worth timing.
DEVICE_BACKENDS = {"cpu": ("cpu",), "cuda": ("triton", "cuda")}


@dataclass
class Config:
    device: torch.device
    dtype: torch.dtype
    quick: bool = False
    compile: bool = True
    rotate_bytes: int = 0  # rotate inputs until the set holds at least this many bytes
    max_copies: int = 64
    warmup_s: float = 0.1
    target_s: float = 0.5  # time spent on the timed repetitions of one measurement
    min_reps: int = 10  # over all rounds
    max_reps: int = 2000  # per round
    rounds: int = 1  # interleaved timing rounds over the providers of a case

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def randn(self, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.randn(shape, device=self.device, dtype=dtype or self.dtype)

    def copies(self, bytes_per_set: int) -> int:
        """How many input sets to rotate among so that they outgrow the caches."""
        if bytes_per_set <= 0 or self.rotate_bytes <= 0:
            return 1
        return max(1, min(self.max_copies, math.ceil(self.rotate_bytes / bytes_per_set)))


@dataclass
class Prepared:
    """What a case gives the harness for one provider."""

    fn: Callable[[], object]  # one timed call; rotates its inputs itself
    check: Callable[[], float] | None = None  # relative error against a float64 reference


@dataclass
class Case:
    op: str
    name: str  # e.g. 'sn_fwd'
    shape: str  # e.g. '512x256x3x3'
    prepare: Callable[[str, Config], Prepared]
    bytes_per_call: int | None = None  # for GB/s; None when bandwidth means nothing
    extra_providers: tuple[str, ...] = ()
    retains_graph: bool = False  # the timed call runs one backward graph repeatedly
    time_scale: float = 1.0  # more timing for noisy cases (whole training steps)
    tolerance: dict[torch.dtype, float] = field(default_factory=lambda: dict(TOLERANCE))


OPS: dict[str, Callable[[Config], list[Case]]] = {}


def register_op(name: str):
    """Decorator: `@register_op('penalty') def penalty_cases(cfg) -> list[Case]`."""

    def decorate(fn: Callable[[Config], list[Case]]):
        OPS[name] = fn
        return fn

    return decorate


def gk_providers(device: torch.device) -> list[str]:
    available = _backend.backends()
    return [f"gk-{b}" for b in DEVICE_BACKENDS.get(device.type, ()) if available.get(b)]


def providers_for(case: Case, cfg: Config) -> list[str]:
    names = ["torch"]
    if cfg.compile:
        names.append("torch.compile")
    return names + gk_providers(cfg.device) + list(case.extra_providers)


@contextlib.contextmanager
def backend_scope(provider: str) -> Iterator[None]:
    """Force the gankernels backend of a 'gk-<backend>' provider, for this thread and
    process-wide (autograd may run backward kernels on its own threads)."""
    if not provider.startswith("gk-"):
        yield
        return
    name = provider[3:]
    previous = _backend._global_choice
    _backend.set_backend(name)
    try:
        with _backend.use_backend(name):
            yield
    finally:
        _backend.set_backend(previous)


@contextlib.contextmanager
def provider_scope(case: Case, provider: str) -> Iterator[None]:
    """Everything one provider of `case` is prepared, checked and timed under."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(backend_scope(provider))
        if case.retains_graph and provider == "torch.compile":
            stack.enter_context(keep_saved_tensors())
        yield


def compiled(fn: Callable) -> Callable:
    """torch.compile with a clean cache, so every case compiles its own graph."""
    torch._dynamo.reset()
    return torch.compile(fn, dynamic=False)


def keep_saved_tensors() -> contextlib.AbstractContextManager:
    """Compiled backward graphs may free ('donate') the tensors they saved, which forbids
    running one backward twice (retain_graph=True). Off while such graphs compile and run
    (torch checks the setting again at every backward call)."""
    try:
        from torch._functorch import config
    except ImportError:
        return contextlib.nullcontext()
    if not hasattr(config, "donated_buffer"):
        return contextlib.nullcontext()
    return config.patch(donated_buffer=False)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; inf when anything is not finite."""
    out, ref = out.detach().double(), ref.detach().double()
    if out.shape != ref.shape or not torch.isfinite(out).all():
        return math.inf
    return (torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref)).item()


def _shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


# ---------------------------------------------------------------------------------------
# Spectral norm.

# The last two are larger than the last-level cache of most CPUs (37.7 and 67.1 MB fp32).
SN_SHAPES = [
    (64, 3, 4, 4),
    (128, 64, 4, 4),
    (256, 128, 4, 4),
    (512, 256, 3, 3),
    (512, 4608),
    (1024, 1024, 3, 3),
    (4096, 4096),
]
SN_SHAPES_QUICK = [(16, 3, 4, 4), (64, 288)]
DSTEP_BATCH, DSTEP_BATCH_QUICK = 64, 8


def _sn_module(provider: str, weight: torch.Tensor) -> nn.Module:
    """The parametrization of `provider` for `weight` (training mode)."""
    if provider.startswith("gk-"):
        from .nn.spectral_norm import SpectralNorm

        return SpectralNorm(weight.detach(), 1, 0, 1e-12)
    from torch.nn.utils.parametrizations import _SpectralNorm

    return _SpectralNorm(weight.detach(), 1, 0, 1e-12)


def _sn_reference(module: nn.Module, weight: torch.Tensor) -> nn.Module:
    """A float64 torch parametrization holding the same u, v as `module` right now."""
    from torch.nn.utils.parametrizations import _SpectralNorm

    ref = _SpectralNorm(weight.detach().double(), 1, 0, 1e-12)
    with torch.no_grad():
        ref._u.copy_(module._u)
        ref._v.copy_(module._v)
    return ref


def _prepare_sn_fwd(shape: tuple[int, ...]):
    def prepare(provider: str, cfg: Config) -> Prepared:
        numel = math.prod(shape)
        size = cfg.dtype.itemsize
        weights = [cfg.randn(*shape) for _ in range(cfg.copies(2 * numel * size))]
        sn = _sn_module(provider, weights[0])

        def eager(w):
            return sn(w)

        f = compiled(eager) if provider == "torch.compile" else eager
        pool = itertools.cycle(weights)

        def fn():
            with torch.no_grad():
                return f(next(pool))

        def check() -> float:
            w = cfg.randn(*shape)
            ref = _sn_reference(sn, w)
            with torch.no_grad():
                out = f(w)
                expected = ref(w.double())
            return rel_err(out, expected)

        return Prepared(fn, check)

    return prepare


def _prepare_sn_bwd(shape: tuple[int, ...]):
    def prepare(provider: str, cfg: Config) -> Prepared:
        numel = math.prod(shape)
        size = cfg.dtype.itemsize
        n = cfg.copies(4 * numel * size)
        weights = [cfg.randn(*shape).requires_grad_() for _ in range(n)]
        sn = _sn_module(provider, weights[0])

        def eager(w):
            return sn(w)

        f = compiled(eager) if provider == "torch.compile" else eager
        # One graph per input set, built once; each timed call runs only the backward.
        sets = [(f(w), w, cfg.randn(*shape)) for w in weights]
        pool = itertools.cycle(sets)

        def fn():
            out, w, grad = next(pool)
            return torch.autograd.grad(out, w, grad, retain_graph=True)

        def check() -> float:
            w = cfg.randn(*shape).requires_grad_()
            ref = _sn_reference(sn, w)
            grad = cfg.randn(*shape)
            out = f(w)
            (gw,) = torch.autograd.grad(out, w, grad)
            w64 = w.detach().double().requires_grad_()
            out64 = ref(w64)
            (gw64,) = torch.autograd.grad(out64, w64, grad.double())
            return max(rel_err(out, out64), rel_err(gw, gw64))

        return Prepared(fn, check)

    return prepare


def make_discriminator(
    sn: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> nn.Sequential:
    """The SN-DCGAN discriminator of the `sn_dstep` case for 1x28x28 inputs.

    sn: 'torch' (torch's parametrization), 'gk' (gankernels'), 'none' (plain layers).
    The same seed is used whatever `sn` is, so all variants start from equal weights.
    """
    torch.manual_seed(1234)
    layers = nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(128 * 7 * 7, 1),
    ).to(device=device, dtype=dtype)
    if sn != "none":
        if sn == "gk":
            from .nn.spectral_norm import spectral_norm
        else:
            from torch.nn.utils.parametrizations import spectral_norm
        for layer in layers:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                spectral_norm(layer)
    return layers


def _grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.detach().double().flatten() for p in model.parameters()])


def _prepare_sn_dstep(batch: int, forwards: int = 1):
    """Zero grads, `forwards` D forwards (real, fake) and one backward. Provider 'sn-once':
    gankernels' SN under gk.nn.utils.spectral_norm_once (one power iteration per step)."""

    def prepare(provider: str, cfg: Config) -> Prepared:
        gk = provider.startswith("gk-") or provider == "sn-once"
        sn = "none" if provider == "no-sn" else "gk" if gk else "torch"
        model = make_discriminator(sn, cfg.device, cfg.dtype)
        forward = compiled(model) if provider == "torch.compile" else model
        xs = [cfg.randn(batch, 1, 28, 28) for _ in range(forwards)]
        if provider == "sn-once":
            from .nn.spectral_norm import spectral_norm_once

            block = lambda: spectral_norm_once(model)  # noqa: E731
        else:
            block = contextlib.nullcontext

        def step(inputs):
            with block():
                outs = [forward(x).mean() for x in inputs]
            return sum(outs[1:], outs[0])

        def fn():
            model.zero_grad(set_to_none=True)
            step(xs).backward()

        def check() -> float:
            ref = make_discriminator("torch", cfg.device, torch.float64)
            ref.load_state_dict(model.state_dict())
            x = cfg.randn(batch, 1, 28, 28)
            # One forward: every provider runs one power iteration, as the reference.
            loss = step([x])
            model.zero_grad(set_to_none=True)
            loss.backward()
            ref(x.double()).mean().backward()
            return rel_err(_grads(model), _grads(ref))

        return Prepared(fn, None if provider == "no-sn" else check)

    return prepare


@register_op("sn")
def sn_cases(cfg: Config) -> list[Case]:
    """Spectral norm: training-mode forward, backward alone, and a whole D step."""
    size = cfg.dtype.itemsize
    cases = []
    shapes = SN_SHAPES_QUICK if cfg.quick else SN_SHAPES
    for shape in shapes:
        moved = 3 * math.prod(shape) * size  # the least a training-mode forward moves
        cases.append(Case("sn", "sn_fwd", _shape_str(shape), _prepare_sn_fwd(shape), moved))
    for shape in shapes:
        moved = 4 * math.prod(shape) * size
        cases.append(
            Case(
                "sn", "sn_bwd", _shape_str(shape), _prepare_sn_bwd(shape), moved, retains_graph=True
            )
        )
    batch = DSTEP_BATCH_QUICK if cfg.quick else DSTEP_BATCH
    cases.append(
        Case(
            "sn",
            "sn_dstep",
            f"D {batch}x1x28x28",
            _prepare_sn_dstep(batch),
            None,
            extra_providers=("no-sn",),
            # A step varies more from call to call (allocations, convolutions); the SN share
            # is a difference of two steps, so it needs more samples.
            time_scale=4.0,
            # Whole-network gradients: TF32 convolutions on the GPU in float32.
            tolerance={torch.float32: 2e-2, torch.bfloat16: 1e-1},
        )
    )
    # A GAN's D step runs D on real and fake images before one backward: torch (and gk
    # without spectral_norm_once) iterates twice, 'sn-once' once.
    cases.append(
        Case(
            "sn",
            "sn_dstep2",
            f"D 2x{batch}x1x28x28",
            _prepare_sn_dstep(batch, forwards=2),
            None,
            extra_providers=("sn-once", "no-sn"),
            time_scale=4.0,
            tolerance={torch.float32: 2e-2, torch.bfloat16: 1e-1},
        )
    )
    return cases


# ---------------------------------------------------------------------------------------
# Gradient penalties.

PENALTY_SHAPES = [(64, 1, 28, 28), (64, 3, 64, 64), (32, 3, 256, 256)]
PENALTY_SHAPES_QUICK = [(8, 1, 28, 28)]


def _gp_eager(provider: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The WGAN-GP penalty of a gradient batch, as `provider` computes it."""
    if provider.startswith("gk-"):
        from .ops.penalty import gradient_penalty

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
            from .ops.penalty import interpolate

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
    from .regularizers import r1_penalty_from

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
        from .regularizers import wgan_gp_critic_loss

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


def sn_share_lines(rows: list[dict]) -> list[str]:
    """sn_fwd speed-ups against torch, weights within and beyond the last-level cache;
    (t_sn - t_nosn) / t_sn of the D steps for torch and each gankernels provider."""
    lines = []
    fwd = [r for r in rows if r["case"] == "sn_fwd" and r["median_ms"]]
    torch_ms = {r["shape"]: r["median_ms"] for r in fwd if r["provider"] == "torch"}
    llc = _last_level_cache_bytes()
    for r in fwd:
        if r["provider"] == "torch" or r["shape"] not in torch_ms:
            continue
        numel = math.prod(int(d) for d in r["shape"].split("x"))
        itemsize = {"fp32": 4, "bf16": 2, "fp64": 8}.get(r["dtype"], 4)
        size = f"{numel * itemsize / 2**20:.1f} MiB"
        if r["device"] == "cpu":
            size += " > LLC" if numel * itemsize > llc else " < LLC"
        lines.append(
            f"sn_fwd {r['shape']} ({size}): {r['provider']} "
            f"{torch_ms[r['shape']] / r['median_ms']:.2f}x torch"
        )
    for case in ("sn_dstep", "sn_dstep2"):
        steps = {r["provider"]: r for r in rows if r["case"] == case and r["median_ms"]}
        base = steps.get("no-sn")
        if base is None:
            continue
        t0 = base["median_ms"]
        noise = base["p75_ms"] - base["p25_ms"]
        parts = []
        for name, row in steps.items():
            if name in ("no-sn", "torch.compile"):
                continue
            t = row["median_ms"]
            flag = " (within noise)" if abs(t - t0) < noise else ""
            parts.append(f"{name} {100 * (t - t0) / t:.1f}% ({t - t0:.3f} of {t:.3f} ms){flag}")
        if parts:
            lines.append(
                f"SN share of {case}, (t_sn - t_nosn) / t_sn, no-sn {t0:.3f} ms "
                f"(IQR {noise:.3f} ms): " + "; ".join(parts)
            )
    return lines


# What the GB/s column counts, per op.
BYTES_COUNTED = {
    "sn": "sn_fwd: 3*W (the least a training-mode forward moves: one power-iteration "
    "read, W/sigma read + write; torch moves 5*W); "
    "sn_bwd: 4*W (grad read twice, W read, grad_W written); dsteps: none",
    "conv": "bias_lrelu: 5*X (x read, y written; dy and y read, dx written); "
    "instnorm_lrelu: 8*X (x read twice, y written; two passes reading dy and x, dx "
    "written); upfirdn_up2_fwd: X read + 4*X written; upfirdn_down2_fwd: X read + X/4 "
    "written; others: none",
    "penalty": "gp_fwd_bwd: 3*G (G read for the norms, read again with dG written); "
    "interpolate: 3*X (real and fake read, x_hat written); critic steps: none",
}

SUMMARIES: dict[str, Callable[[list[dict]], list[str]]] = {
    "sn": sn_share_lines,
    "penalty": penalty_overhead_lines,
}

# ---------------------------------------------------------------------------------------
# Timing.


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_samples(
    fn: Callable[[], object], cfg: Config, target_s: float, warmup_s: float, min_reps: int
) -> list[float]:
    """Milliseconds of each timed call, after a warm-up of about `warmup_s`."""
    fn()  # the first call may set things up lazily: keep it out of the estimate
    _sync(cfg.device)
    start, calls = time.perf_counter(), 0
    while calls < 2 or (time.perf_counter() - start < warmup_s and calls < 200):
        fn()
        calls += 1
    _sync(cfg.device)
    estimate = max((time.perf_counter() - start) / calls, 1e-7)
    reps = int(min(cfg.max_reps, max(min_reps, target_s / estimate)))
    if cfg.is_cuda:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for s, e in zip(starts, ends, strict=False):
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize(cfg.device)
        return [s.elapsed_time(e) for s, e in zip(starts, ends, strict=False)]
    times = []
    clock = time.perf_counter
    for _ in range(reps):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1e3)
    return times


def time_call(fn: Callable[[], object], cfg: Config) -> tuple[float, int]:
    """(median milliseconds per call, repetitions) after a warm-up."""
    times = time_samples(fn, cfg, cfg.target_s, cfg.warmup_s, cfg.min_reps)
    return statistics.median(times), len(times)


def copy_bandwidth(cfg: Config) -> tuple[float, int]:
    """(GB/s, bytes per copy) of dst.copy_(src), counting bytes read plus bytes written."""
    mb = 8 if cfg.quick else 256 if cfg.is_cuda else 64
    n = mb * 2**20 // 4
    src = torch.randn(n, device=cfg.device)
    dst = torch.empty_like(src)
    quick_cfg = Config(
        cfg.device, cfg.dtype, warmup_s=0.05, target_s=0.3 if not cfg.quick else 0.05, min_reps=5
    )
    ms, _ = time_call(lambda: dst.copy_(src), quick_cfg)
    moved = 2 * n * 4
    return moved / (ms * 1e-3) / 1e9, moved


# ---------------------------------------------------------------------------------------
# Environment.


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _last_level_cache_bytes() -> int:
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        with contextlib.suppress(ValueError):
            sizes.append(int(text.rstrip("KMG")) * scale)
    return max(sizes, default=32 * 2**20)


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:
        return None


def environment(cfg: Config) -> dict:
    from . import __version__

    info = {
        "gankernels": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "torch_cuda": torch.version.cuda,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "backends": _backend.backends(),
        "backends_missing": {k: why for k, (ok, why) in _backend.availability().items() if not ok},
        # How each backend's kernels have been validated (on a GPU, in emulation, ...).
        "validation": _backend.validation(),
        "git_commit": _git_commit(),
        "platform": platform.platform(),
    }
    if cfg.is_cuda:
        props = torch.cuda.get_device_properties(cfg.device)
        info.update(
            device_name=torch.cuda.get_device_name(cfg.device),
            capability=".".join(map(str, torch.cuda.get_device_capability(cfg.device))),
            sm_count=props.multi_processor_count,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            l2_cache_bytes=getattr(props, "L2_cache_size", None),
        )
    else:
        info.update(
            device_name=info["cpu"],
            last_level_cache_bytes=_last_level_cache_bytes(),
            # torch's CPU allocator backs large tensors with huge pages when this is 1:
            # far fewer page faults for every fresh output, for torch and gankernels alike.
            thp_mem_alloc=os.environ.get("THP_MEM_ALLOC_ENABLE", "0"),
        )
    return info


# ---------------------------------------------------------------------------------------
# Running, reporting.


def _short(text: str, width: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _new_row(case: Case, provider: str, cfg: Config) -> dict:
    return {
        "op": case.op,
        "case": case.name,
        "shape": case.shape,
        "dtype": SHORT_DTYPE.get(cfg.dtype, str(cfg.dtype)),
        "device": cfg.device.type,
        "provider": provider,
        "median_ms": None,
        "p25_ms": None,
        "p75_ms": None,
        "reps": 0,
        "speedup": None,
        "gbps": None,
        "pct_copy": None,
        "bytes": case.bytes_per_call,
        "check_rel_err": None,
        "check_ok": None,
        "status": "ok",
        "note": "",
    }


def _failed(row: dict, provider: str, stage: str, err: Exception) -> None:
    kind = "skipped" if provider == "torch.compile" else "error"
    what = "compile failed" if provider == "torch.compile" else f"{stage} failed"
    row.update(status=kind, note=f"{what}: {type(err).__name__}: {_short(err, 200)}")


def measure_case(
    case: Case,
    providers: list[str],
    cfg: Config,
    skip: Callable[[str], str | None] = lambda provider: None,
) -> list[dict]:
    """One row per provider. All providers are prepared and checked first, then timed in
    `cfg.rounds` interleaved rounds (rotating the order) so that a slow drift of the
    machine hits them alike; the median is over the samples of all rounds."""
    rows = {p: _new_row(case, p, cfg) for p in providers}
    ready: dict[str, Prepared] = {}
    tol = case.tolerance.get(cfg.dtype, TOLERANCE.get(cfg.dtype, 1e-2))
    for provider in providers:
        row = rows[provider]
        reason = skip(provider)
        if reason:
            row.update(status="skipped", note=reason)
            continue
        stage = "prepare"
        try:
            with provider_scope(case, provider):
                prepared = case.prepare(provider, cfg)
                if prepared.check is not None:
                    stage = "check"
                    err = prepared.check()
                    row["check_rel_err"] = err if math.isfinite(err) else None
                    row["check_ok"] = bool(err <= tol)
                    if not row["check_ok"]:
                        why = (
                            f"rel err {err:.2e} > {tol:.0e}" if math.isfinite(err) else "non-finite"
                        )
                        row.update(status="wrong", note=f"check failed: {why}")
            ready[provider] = prepared
        except Exception as err:  # a failing provider must not end the run
            _failed(row, provider, stage, err)
    samples: dict[str, list[float]] = {p: [] for p in ready}
    rounds = max(1, cfg.rounds)
    per_round_reps = max(2, math.ceil(cfg.min_reps / rounds))
    for r in range(rounds):
        order = list(ready)
        order = order[r % len(order) :] + order[: r % len(order)] if order else order
        for provider in order:
            try:
                with provider_scope(case, provider):
                    samples[provider] += time_samples(
                        ready[provider].fn,
                        cfg,
                        cfg.target_s * case.time_scale / rounds,
                        cfg.warmup_s if r == 0 else cfg.warmup_s / rounds,
                        per_round_reps,
                    )
            except Exception as err:
                _failed(rows[provider], provider, "timing", err)
                del ready[provider]
    for provider in ready:
        times = samples[provider]
        q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
        rows[provider].update(
            median_ms=statistics.median(times), p25_ms=q1, p75_ms=q3, reps=len(times)
        )
    ready.clear()
    if cfg.is_cuda:
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(cfg.device)
            torch.cuda.empty_cache()
    return [rows[p] for p in providers]


def _fill_derived(rows: list[dict], copy_gbps: float) -> None:
    base = {
        (r["op"], r["case"], r["shape"]): r["median_ms"] for r in rows if r["provider"] == "torch"
    }
    for r in rows:
        ms = r["median_ms"]
        if not ms:
            continue
        ref = base.get((r["op"], r["case"], r["shape"]))
        if ref:
            r["speedup"] = ref / ms
        if r["bytes"]:
            r["gbps"] = r["bytes"] / (ms * 1e-3) / 1e9
            r["pct_copy"] = 100 * r["gbps"] / copy_gbps


def format_table(rows: list[dict]) -> str:
    head = ["op", "case", "shape", "dtype", "device", "provider"]
    head += ["median ms", "vs torch", "GB/s", "% copy", "check"]
    lines = []
    for r in rows:
        ms = r["median_ms"]
        if r["status"] in ("skipped", "error"):
            check = f"{r['status']}: {_short(r['note'], 48)}"
        elif r["check_ok"] is None:
            check = "-"
        elif r["check_rel_err"] is None:
            check = "WRONG non-finite"
        else:
            check = ("ok " if r["check_ok"] else "WRONG ") + f"{r['check_rel_err']:.1e}"
        lines.append(
            [
                r["op"],
                r["case"],
                r["shape"],
                r["dtype"],
                r["device"],
                r["provider"],
                f"{ms:.4f}" if ms else "-",
                f"{r['speedup']:.2f}x" if r["speedup"] else "-",
                f"{r['gbps']:.3g}" if r["gbps"] else "-",
                f"{r['pct_copy']:.0f}%" if r["pct_copy"] else "-",
                check,
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    numeric = {6, 7, 8, 9}

    def fmt(cells):
        out = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ]
        return " | ".join(out).rstrip()

    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([fmt(head), sep, *(fmt(line) for line in lines)])


def _write_csv(path: Path, rows: list[dict], meta: dict) -> None:
    with open(path, "w", newline="") as fh:
        for key, value in meta.items():
            text = json.dumps(value) if isinstance(value, (dict, list)) else value
            fh.write(f"# {key}: {text}\n")
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)


def _write_plot(path: Path, rows: list[dict], meta: dict, op: str) -> None:
    """Speedup vs torch eager: one panel per case, bars grouped by shape, one bar per
    provider, drawn from 1 (up: faster than torch, down: slower)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    case_names = list(dict.fromkeys(r["case"] for r in rows))
    providers = [p for p in dict.fromkeys(r["provider"] for r in rows) if p != "torch"]
    colours = dict(zip(providers, plt.get_cmap("tab10").colors, strict=False))
    most = max(max(2, len({r["shape"] for r in rows if r["case"] == c})) for c in case_names)
    fig, axes = plt.subplots(
        len(case_names),
        1,
        figsize=(max(7.0, 2.0 + 1.6 * most), 0.6 + 3.2 * len(case_names)),
        squeeze=False,
    )
    times = FuncFormatter(lambda value, _: f"{value:g}x")
    for ax, name in zip(axes[:, 0], case_names, strict=False):
        sub = [r for r in rows if r["case"] == name]
        shapes = list(dict.fromkeys(r["shape"] for r in sub))
        here = [p for p in providers if any(r["provider"] == p and r["speedup"] for r in sub)]
        bar = 0.8 / max(1, len(here))
        values = [1.0] + [r["speedup"] for r in sub if r["speedup"]]
        lo, hi = min(values), max(values)
        log = hi / lo > 6
        for j, prov in enumerate(here):
            xs, ys = [], []
            for i, shape in enumerate(shapes):
                for r in sub:
                    if r["shape"] == shape and r["provider"] == prov and r["speedup"]:
                        xs.append(i - 0.4 + bar * (j + 0.5))
                        ys.append(r["speedup"])
            heights = [y - 1 for y in ys]
            ax.bar(xs, heights, bar * 0.95, bottom=1, label=prov, color=colours[prov])
            for x, y in zip(xs, ys, strict=False):
                ax.annotate(
                    f"{y:.2g}",
                    (x, y),
                    ha="center",
                    va="bottom" if y >= 1 else "top",
                    fontsize=7,
                    xytext=(0, 2 if y >= 1 else -2),
                    textcoords="offset points",
                )
        ax.axhline(1.0, color="black", lw=0.8)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(lo / 1.4, hi * 1.6)
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_minor_formatter(NullFormatter())
        else:
            span = hi - lo
            ax.set_ylim(lo - 0.15 * span - 0.05, hi + 0.15 * span + 0.05)
        ax.yaxis.set_major_formatter(times)
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels(shapes, fontsize=8)
        ax.set_title(
            name + (" (log scale)" if log else "") + ": higher is faster, 1x = torch eager",
            fontsize=9,
        )
        ax.set_xlim(-0.6, most - 0.4)  # equal bar widths in every panel
        ax.grid(axis="y", which="major", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("speedup vs torch eager", fontsize=8)
    where = meta["device_name"]
    if meta["device"] == "cpu":
        where += f", {meta['cpu_count']} cores"
    fig.suptitle(
        f"gankernels {op} | {where} | {meta['dtype']} | torch {meta['torch']} | "
        f"copy {meta['copy_gbps']:.0f} GB/s",
        fontsize=10,
        y=1 - 0.12 / fig.get_figheight(),
    )
    from matplotlib.patches import Patch

    handles = [Patch(color=colours[p], label=p) for p in providers]
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=max(1, len(handles)),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 1 - 0.45 / fig.get_figheight()),
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / fig.get_figheight()))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(out_dir: Path, op: str, rows: list[dict], meta: dict, stamp: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"{op}_{meta['device']}_{stamp}"
    written = []
    with open(base.with_suffix(".json"), "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=2, default=str)
    written.append(base.with_suffix(".json"))
    _write_csv(base.with_suffix(".csv"), rows, meta)
    written.append(base.with_suffix(".csv"))
    try:
        _write_plot(base.with_suffix(".png"), rows, meta, op)
        written.append(base.with_suffix(".png"))
    except Exception as err:  # a plotting problem must not lose the numbers
        print(f"plot not written: {type(err).__name__}: {err}", file=sys.stderr)
    return written


def make_config(device: str, dtype: str, quick: bool, use_compile: bool) -> Config:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    cfg = Config(dev, DTYPES[dtype], quick=quick, compile=use_compile)
    if quick:
        cfg.rotate_bytes, cfg.warmup_s, cfg.target_s = 0, 0.01, 0.02
        cfg.min_reps, cfg.max_reps = 3, 50
    elif dev.type == "cuda":
        l2 = getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0) or 50 * 2**20
        cfg.rotate_bytes, cfg.target_s, cfg.max_reps, cfg.rounds = 2 * l2, 0.3, 5000, 3
    else:
        cfg.rotate_bytes, cfg.target_s, cfg.rounds = 2 * _last_level_cache_bytes(), 0.6, 5
    return cfg


# ---------------------------------------------------------------------------------------
# Command line.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument(
        "--ops", default=",".join(OPS), help=f"comma-separated ops to time ({', '.join(OPS)})"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=default_device,
        help=f"device to time on (default here: {default_device})",
    )
    parser.add_argument(
        "--dtype", choices=tuple(DTYPES), default="float32", help="dtype of weights and inputs"
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repetitions")
    parser.add_argument(
        "--out", default="bench/results", help="results folder (default: bench/results)"
    )
    parser.add_argument(
        "--cases",
        default="",
        help="comma-separated case names to time (e.g. bias_lrelu,bias_lrelu_cl); default all",
    )
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument(
        "--tests-passed",
        action="store_true",
        help="the gankernels test suite passed on this device in this run: gk rows that also "
        "pass the harness's own check are then marked validated",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="after this many seconds, skip the remaining torch.compile providers",
    )
    from . import benchmark_train

    benchmark_train.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.train:
        from . import benchmark_train

        return benchmark_train.run(args)
    if args.metrics:
        from . import benchmark_metrics

        return benchmark_metrics.run(args)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    unknown = [o for o in ops if o not in OPS]
    if unknown or not ops:
        print(f"bench: unknown op(s) {unknown}; known: {list(OPS)}", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    cfg = make_config(args.device, args.dtype, args.quick, not args.no_compile)
    began = time.perf_counter()
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    env = environment(cfg)
    copy_gbps, copy_bytes = copy_bandwidth(cfg)
    print(
        f"bench: {env['device_name']} | torch {env['torch']} | triton {env['triton']} | "
        f"backends {env['backends']} | copy bandwidth {copy_gbps:.1f} GB/s "
        f"({copy_bytes / 2**20:.0f} MiB read+written)",
        flush=True,
    )
    for name in DEVICE_BACKENDS.get(cfg.device.type, ()):
        print(f"  gk-{name}: {env['validation'][name]}", flush=True)
    wanted = {c.strip() for c in args.cases.split(",") if c.strip()}
    all_rows, written, summaries, status = [], [], [], 0
    for op in ops:
        rows = []
        cases = [c for c in OPS[op](cfg) if not wanted or c.name in wanted]
        if not cases:
            known = sorted({c.name for c in OPS[op](cfg)})
            print(f"bench: no case of {op} in --cases; its cases: {known}", file=sys.stderr)
            return 2
        for case in cases:

            def skip(provider: str) -> str | None:
                spent = time.perf_counter() - began
                if provider == "torch.compile" and args.budget is not None and spent > args.budget:
                    return f"time budget of {args.budget:.0f} s spent"
                return None

            t0 = time.perf_counter()
            case_rows = measure_case(case, providers_for(case, cfg), cfg, skip)
            print(f"  {case.name} {case.shape} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
            for row in case_rows:
                gk_row = row["provider"].startswith("gk-")
                row["validated"] = (
                    bool(row["check_ok"] and args.tests_passed) if gk_row else row["check_ok"]
                )
                ms = f"{row['median_ms']:.4f} ms" if row["median_ms"] else row["status"]
                print(
                    f"    {row['provider']:14s} {ms} {_short(row['note'], 100)}",
                    file=sys.stderr,
                    flush=True,
                )
                if row["status"] in ("error", "wrong") and row["provider"] != "torch.compile":
                    status = 1
            rows += case_rows
        _fill_derived(rows, copy_gbps)
        meta = dict(
            env,
            op=op,
            device=cfg.device.type,
            dtype=SHORT_DTYPE.get(cfg.dtype, str(cfg.dtype)),
            date=_dt.datetime.now().isoformat(timespec="seconds"),
            quick=cfg.quick,
            compile=cfg.compile,
            copy_gbps=copy_gbps,
            copy_bytes=copy_bytes,
            rotate_bytes=cfg.rotate_bytes,
            timing=(
                f"median over {cfg.rounds} interleaved round(s) of "
                + ("CUDA events per call" if cfg.is_cuda else "perf_counter per call")
            ),
            note=args.note,
            tests_passed=bool(args.tests_passed),
            validated_means=(
                "gk rows: passed the harness's float64 check here and --tests-passed was given "
                "(the test suite passed on this device); other rows: the check result"
            ),
            bytes_counted=BYTES_COUNTED.get(op, "none"),
            elapsed_s=round(time.perf_counter() - began, 1),
        )
        lines = SUMMARIES.get(op, lambda _: [])(rows)
        meta["summary"] = lines
        summaries += lines
        written += write_results(Path(args.out), op, rows, meta, stamp)
        all_rows += rows
    for path in written:
        print(f"wrote {path}")
    notes = [] if cfg.compile else ["torch.compile left out (--no-compile)"]
    if args.note:
        notes.append(f"note: {args.note}")
    print()
    print(format_table(all_rows))
    for line in summaries + notes:
        print(line)
    print(
        f"copy bandwidth {copy_gbps:.1f} GB/s; speedups vs torch eager; median of "
        f"{'CUDA events' if cfg.is_cuda else 'perf_counter'}; {time.perf_counter() - began:.0f} s",
        flush=True,
    )
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gankernels bench", description="Time gankernels ops against torch."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


# The conv-block cases live in their own module; importing it registers them.
from . import benchmark_conv  # noqa: E402, F401

if __name__ == "__main__":
    sys.exit(main())
