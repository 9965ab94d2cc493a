"""`gk.patch(model)`: swap torch layers for gankernels' fused equivalents, in place.

Today: spectral normalisation, both torch APIs (the parametrization and the legacy
`torch.nn.utils.spectral_norm` hook), keeping the current weights, u and v. A converted
parametrization gives exactly torch's numbers. A converted legacy hook follows the
parametrization's order of power-iteration updates (u, then v; the hook does v, then u),
which agrees with the hook once u and v have converged, as they have in a trained model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm as TorchSpectralNorm
from torch.nn.utils.spectral_norm import SpectralNorm as LegacySpectralNorm
from torch.nn.utils.spectral_norm import (
    SpectralNormLoadStateDictPreHook,
    SpectralNormStateDictHook,
)

from .nn.spectral_norm import SpectralNorm


@dataclass
class PatchReport:
    """What `patch` changed, and what it left alone and why."""

    changed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changed)

    def __str__(self) -> str:
        lines = [f"gankernels.patch: {len(self.changed)} change(s)"]
        lines += [f"  + {line}" for line in self.changed]
        lines += [f"  - {line}" for line in self.skipped]
        return "\n".join(lines)


def _ours_from(torch_sn: nn.Module) -> SpectralNorm:
    """Our parametrization carrying torch's state (the same buffer tensors)."""
    ours = SpectralNorm.__new__(SpectralNorm)
    nn.Module.__init__(ours)
    ours.dim, ours.eps = torch_sn.dim, torch_sn.eps
    ours.n_power_iterations = getattr(torch_sn, "n_power_iterations", 1)
    for name in ("_u", "_v"):
        if hasattr(torch_sn, name):
            ours.register_buffer(name, getattr(torch_sn, name))
    ours.train(torch_sn.training)
    return ours


def _patch_parametrized(name: str, module: nn.Module, report: PatchReport) -> None:
    for tensor_name, plist in module.parametrizations.items():
        for i, p in enumerate(plist):
            if isinstance(p, TorchSpectralNorm):
                plist[i] = _ours_from(p)
                report.changed.append(
                    f"{name}.{tensor_name}: torch spectral_norm parametrization -> gankernels "
                    "(same state_dict keys)"
                )


def _patch_legacy(name: str, module: nn.Module, report: PatchReport) -> None:
    for hook_id, hook in list(module._forward_pre_hooks.items()):
        if not isinstance(hook, LegacySpectralNorm):
            continue
        attr = hook.name
        weight = getattr(module, attr + "_orig")
        if weight.ndim < 2:
            report.skipped.append(
                f"{name}.{attr}: legacy spectral_norm on a {weight.ndim}-D weight left alone "
                "(it treats it as an (n, 1) matrix; the parametrization normalises it)"
            )
            continue
        u, v = getattr(module, attr + "_u"), getattr(module, attr + "_v")
        del module._forward_pre_hooks[hook_id]
        for hooks, kind in (
            (module._state_dict_hooks, SpectralNormStateDictHook),
            (module._load_state_dict_pre_hooks, SpectralNormLoadStateDictPreHook),
        ):
            for key, h in list(hooks.items()):
                if isinstance(h, kind) and h.fn.name == attr:
                    del hooks[key]
        delattr(module, attr)
        delattr(module, attr + "_orig")
        delattr(module, attr + "_u")
        delattr(module, attr + "_v")
        module.register_parameter(attr, weight)
        ours = SpectralNorm.__new__(SpectralNorm)
        nn.Module.__init__(ours)
        ours.dim, ours.eps, ours.n_power_iterations = hook.dim, hook.eps, hook.n_power_iterations
        ours.register_buffer("_u", u)
        ours.register_buffer("_v", v)
        ours.train(module.training)
        parametrize.register_parametrization(module, attr, ours, unsafe=True)
        report.changed.append(
            f"{name}.{attr}: legacy torch spectral_norm hook -> gankernels parametrization "
            f"(state_dict keys {attr}_orig/_u/_v become "
            f"parametrizations.{attr}.original/0._u/0._v; "
            "the parametrization updates u before v, the legacy hook v before u, so sigma "
            "agrees with the hook's once the power iteration has converged)"
        )


@torch.no_grad()
def patch(model: nn.Module) -> PatchReport:
    """Replace, in place, the layers of `model` that gankernels accelerates."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"patch(model): expected an nn.Module, got {type(model).__name__}")
    report = PatchReport()
    for name, module in model.named_modules():
        label = name or type(model).__name__
        if parametrize.is_parametrized(module):
            _patch_parametrized(label, module, report)
        _patch_legacy(label, module, report)
    if not report.changed:
        report.skipped.append("no torch spectral_norm found")
    return report
