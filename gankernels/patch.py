"""`gk.patch(model)`: swap torch layers for gankernels' fused equivalents, in place.

1. Spectral normalisation, both torch APIs (the parametrization and the legacy
   `torch.nn.utils.spectral_norm` hook), keeping the current weights, u and v, with
   torch's numbers: a converted legacy hook keeps the hook's order of power-iteration
   updates (v, then u; the parametrization does u, then v).
2. Chains inside `nn.Sequential` containers (the only place where the order in which
   modules run is known without reading a forward):
   - Conv*/ConvTranspose*/Linear with a bias, then an activation: the layer runs without
     its bias and the activation becomes a BiasAct holding that same bias tensor, which
     adds it, activates and (in backward) reduces its gradient in one pass each way;
   - InstanceNorm*/BatchNorm*, then an activation: one NormAct holding the norm's own
     parameters and buffers (same state_dict keys); the activation slot becomes Identity.
   Indices in the Sequential stay the same, so every other state_dict key is unchanged.
   Renamed keys (a fused bias moves from `i.bias` to `i+1.bias`; a legacy spectral norm's
   `weight_orig/_u/_v` move into the parametrization) are listed in `report.renamed`; the
   patched model still loads the original state_dicts, and `report.original_state_dict`
   turns a patched model's state_dict back into one the unpatched model loads.
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
    # state_dict keys the patch moved: original key -> key in the patched model
    renamed: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.changed)

    def __str__(self) -> str:
        lines = [f"gankernels.patch: {len(self.changed)} change(s)"]
        lines += [f"  + {line}" for line in self.changed]
        lines += [f"  - {line}" for line in self.skipped]
        return "\n".join(lines)

    def original_state_dict(self, state_dict: dict) -> dict:
        """A patched model's state_dict with the keys the unpatched model expects."""
        back = {new: old for old, new in self.renamed.items()}
        return {back.get(key, key): value for key, value in state_dict.items()}


def _ours_from(torch_sn: nn.Module) -> SpectralNorm:
    """Our parametrization carrying torch's state (the same buffer tensors)."""
    ours = SpectralNorm.__new__(SpectralNorm)
    nn.Module.__init__(ours)
    ours.dim, ours.eps, ours.order = torch_sn.dim, torch_sn.eps, "uv"
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


def _patch_legacy(name: str, label: str, module: nn.Module, report: PatchReport) -> None:
    for hook_id, hook in list(module._forward_pre_hooks.items()):
        if not isinstance(hook, LegacySpectralNorm):
            continue
        attr = hook.name
        weight = getattr(module, attr + "_orig")
        if weight.ndim < 2:
            report.skipped.append(
                f"{label}.{attr}: legacy spectral_norm on a {weight.ndim}-D weight left alone "
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
        ours.order = "vu"  # the hook's order: v = normalize(W^T u), then u = normalize(W v)
        ours.register_buffer("_u", u)
        ours.register_buffer("_v", v)
        ours.train(module.training)
        parametrize.register_parametrization(module, attr, ours, unsafe=True)
        prefix = name + "." if name else ""
        for old, new in (("_orig", ".original"), ("_u", ".0._u"), ("_v", ".0._v")):
            report.renamed[f"{prefix}{attr}{old}"] = f"{prefix}parametrizations.{attr}{new}"
        report.changed.append(
            f"{label}.{attr}: legacy torch spectral_norm hook -> gankernels parametrization "
            f"(state_dict keys {attr}_orig/_u/_v become "
            f"parametrizations.{attr}.original/0._u/0._v; the hook's order of updates, v "
            "then u, is kept: same numbers)"
        )


# ---------------------------------------------------------------------------------------
# Chains in nn.Sequential.

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_LAYERS += (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def _activation(module: nn.Module) -> tuple[str, float | None] | str | None:
    """(bias_act name, alpha) of a torch activation module with the same numbers; a
    string saying why not for activations we do not fuse; None for other modules."""
    if isinstance(module, nn.ReLU):
        return "relu", None
    if isinstance(module, nn.LeakyReLU):
        if module.negative_slope < 0:
            return f"LeakyReLU with a negative slope ({module.negative_slope})"
        return "lrelu", float(module.negative_slope)
    if isinstance(module, nn.Tanh):
        return "tanh", None
    if isinstance(module, nn.Sigmoid):
        return "sigmoid", None
    if isinstance(module, nn.SiLU):
        return "swish", None
    if isinstance(module, nn.ELU):
        return "elu", float(module.alpha)
    if isinstance(module, nn.SELU):
        return "selu", None
    if isinstance(module, nn.Softplus):
        if module.beta != 1 or module.threshold != 20:
            return "Softplus with beta != 1 or threshold != 20"
        return "softplus", None
    if isinstance(module, (nn.PReLU, nn.GELU, nn.Hardtanh, nn.Mish, nn.CELU)):
        return f"{type(module).__name__} is not one of bias_act's activations"
    return None


def _channel_dim(layer: nn.Module) -> int:
    """The output channel dim counted from the end: it holds for batched and unbatched
    input alike (Conv2d: (N, C, H, W) or (C, H, W) -> -3)."""
    if isinstance(layer, nn.Linear):
        return -1
    return -(len(layer.kernel_size) + 1)


def _fuse_layer_act(
    where: str, prefix: str, seq: nn.Sequential, i: int, report: PatchReport
) -> None:
    from .nn.bias_act import BiasAct

    layer, (act, alpha) = seq[i], _activation(seq[i + 1])
    channels = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    fused = BiasAct(channels, act, alpha=alpha, gain=1.0, bias=False, dim=_channel_dim(layer))
    fused.register_parameter("bias", layer.bias)  # the same tensor: optimisers keep it
    layer.register_parameter("bias", None)
    seq[i + 1] = fused
    old, new = f"{prefix}{i}.bias", f"{prefix}{i + 1}.bias"
    report.renamed[old] = new
    report.changed.append(
        f"{where}.{i}-{i + 1}: {type(layer).__name__} + {act} -> {type(layer).__name__} "
        f"without bias + BiasAct({act!r}) (state_dict key {old} -> {new})"
    )


def _fuse_norm_act(where: str, seq: nn.Sequential, i: int, report: PatchReport) -> None:
    from .nn.norm_act import NormAct

    norm, act_module = seq[i], seq[i + 1]
    label = f"{where}.{i}-{i + 1}: {type(norm).__name__} + {type(act_module).__name__}"
    try:
        fused = NormAct.from_modules(norm, act_module)
    except (ValueError, TypeError) as err:
        report.skipped.append(f"{label} left alone: {err}")
        return
    seq[i], seq[i + 1] = fused, nn.Identity()
    report.changed.append(f"{label} -> NormAct (same state_dict keys)")


def _patch_chains(name: str, root: str, seq: nn.Sequential, report: PatchReport) -> None:
    where, prefix = (name, name + ".") if name else (root, "")
    i = 0
    while i < len(seq) - 1:
        first, act = seq[i], _activation(seq[i + 1])
        if act is None or not isinstance(first, _LAYERS + _NORMS):
            i += 1
            continue
        label = f"{where}.{i}-{i + 1}: {type(first).__name__} + {type(seq[i + 1]).__name__}"
        if isinstance(act, str):
            report.skipped.append(f"{label} left alone: {act}")
        elif isinstance(first, _NORMS):
            _fuse_norm_act(where, seq, i, report)
        elif first.bias is None:
            report.skipped.append(
                f"{label} left alone: the layer has no bias, so the activation alone is "
                "already one pass"
            )
        elif parametrize.is_parametrized(first, "bias"):
            report.skipped.append(f"{label} left alone: the bias is parametrized")
        else:
            _fuse_layer_act(where, prefix, seq, i, report)
        i += 2


def _load_renamed(renamed: dict[str, str]):
    """A load_state_dict pre-hook: original keys in an incoming state_dict become the
    patched model's keys, so the patched model loads checkpoints of the original."""

    def hook(state_dict, prefix, *args):
        for old, new in renamed.items():
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)

    return hook


@torch.no_grad()
def patch(model: nn.Module) -> PatchReport:
    """Replace, in place, the layers of `model` that gankernels accelerates (spectral
    norms; layer + activation and norm + activation chains in nn.Sequential)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"patch(model): expected an nn.Module, got {type(model).__name__}")
    report = PatchReport()
    root = type(model).__name__
    found_sn = False
    for name, module in list(model.named_modules()):
        label = name or root
        if parametrize.is_parametrized(module):
            before = len(report.changed)
            _patch_parametrized(label, module, report)
            found_sn |= len(report.changed) > before
        before = len(report.changed) + len(report.skipped)
        _patch_legacy(name, label, module, report)
        found_sn |= len(report.changed) + len(report.skipped) > before
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Sequential):
            _patch_chains(name, root, module, report)
    if not found_sn:
        report.skipped.append("no torch spectral_norm found")
    if report.renamed:
        model._register_load_state_dict_pre_hook(_load_renamed(dict(report.renamed)))
    return report
