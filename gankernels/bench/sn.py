"""`gankernels bench --ops sn`: spectral norm, training-mode forward, backward alone and
whole SN-DCGAN discriminator steps (with and without spectral_norm_once), against
torch's parametrization and its torch.compile.
"""

from __future__ import annotations

import contextlib
import itertools
import math

import torch
from torch import nn

from .core import (
    BYTES_COUNTED,
    SUMMARIES,
    Case,
    Config,
    Prepared,
    _grads,
    _last_level_cache_bytes,
    _shape_str,
    compiled,
    register_op,
    rel_err,
)

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
        from ..nn.spectral_norm import SpectralNorm

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
            from ..nn.spectral_norm import spectral_norm
        else:
            from torch.nn.utils.parametrizations import spectral_norm
        for layer in layers:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                spectral_norm(layer)
    return layers


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
            from ..nn.spectral_norm import spectral_norm_once

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


# What the GB/s column counts.
BYTES_COUNTED["sn"] = (
    "sn_fwd: 3*W (the least a training-mode forward moves: one power-iteration "
    "read, W/sigma read + write; torch moves 5*W); "
    "sn_bwd: 4*W (grad read twice, W read, grad_W written); dsteps: none"
)
SUMMARIES["sn"] = sn_share_lines
