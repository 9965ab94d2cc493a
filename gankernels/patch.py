"""`gk.patch(model)`: swap torch layers for gankernels' fused equivalents, in place.

1. Spectral normalisation, both torch APIs (the parametrization and the legacy
   `torch.nn.utils.spectral_norm` hook), keeping the current weights, u and v, with
   torch's numbers: a converted legacy hook keeps the hook's order of power-iteration
   updates (v, then u; the parametrization does u, then v).
2. Chains that end in an activation, found by dataflow: the graph torch.fx records for
   the model's forward (all arguments given), across nested blocks and skip
   connections. Where a forward cannot be traced (it branches on tensor values, checks
   shapes, ...), its children are traced instead, and modules inside no traced region
   fall back to adjacency in nn.Sequential (where the order modules run in is known).
   - Conv*/ConvTranspose*/Linear with a bias, then an activation: the layer object
     becomes its gankernels.nn.*Act class (same parameters, hooks, parametrizations and
     state_dict keys) and applies the activation itself;
   - InstanceNorm*/BatchNorm*, then an activation: one NormAct holding the norm's own
     parameters and buffers (same state_dict keys), running statistics included;
   the activation's call site becomes an nn.Identity. A chain is fused only if the
   layer's output reaches nothing but the activation (an in-place activation may also
   have users after it: they see the activated values either way), the layer runs at
   one call site, and every call site of a shared activation module is fused too.
   Each fused chain then runs our kernel or the plain torch path, whichever
   gankernels.fusion measures faster; `report.fusion()` says which, after a forward.
   The report lists what was fused and every activation left alone, with the reason.
   Renamed keys (only a legacy spectral norm's `weight_orig/_u/_v`, which move into the
   parametrization) are listed in `report.renamed`; the patched model still loads the
   original state_dicts, and `report.original_state_dict` turns a patched model's
   state_dict back into one the unpatched model loads.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import fx, nn
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
    # How chains were found, and how many of the activations found ended a fused chain.
    method: str = ""
    chains_fused: int = 0
    chains_left: int = 0
    _model: object = None  # a weak reference to the patched model

    def __bool__(self) -> bool:
        return bool(self.changed)

    def __str__(self) -> str:
        lines = [f"gankernels.patch: {len(self.changed)} change(s)"]
        if self.method:
            lines.append(
                f"  chains ({self.method}): {self.chains_fused} fused, {self.chains_left} left"
            )
        lines += [f"  + {line}" for line in self.changed]
        lines += [f"  - {line}" for line in self.skipped]
        decisions = self.fusion()
        if decisions and "fusion (" in decisions and " 0 fused, 0 torch" not in decisions:
            lines += ["  " + line for line in decisions.splitlines()]
        return "\n".join(lines)

    def fusion(self) -> str:
        """Which implementation each fused chain runs (gankernels.fusion's decisions so
        far, with the measured times); '' once the model is gone."""
        from .fusion import fusion_report

        model = self._model() if self._model is not None else None
        return fusion_report(model) if model is not None else ""

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
# Chains.

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_LAYERS += (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_NORMS += (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def _activation(module: nn.Module) -> tuple[str, float | None] | str | None:
    """(bias_act name, alpha) of a torch activation module with the same numbers; a
    string saying why not for activations we do not fuse; None for other modules."""
    kind = type(module)
    if kind is nn.ReLU:
        return "relu", None
    if kind is nn.LeakyReLU:
        if module.negative_slope < 0:
            return f"LeakyReLU with a negative slope ({module.negative_slope})"
        return "lrelu", float(module.negative_slope)
    if kind is nn.Tanh:
        return "tanh", None
    if kind is nn.Sigmoid:
        return "sigmoid", None
    if kind is nn.SiLU:
        return "swish", None
    if kind is nn.ELU:
        return "elu", float(module.alpha)
    if kind is nn.SELU:
        return "selu", None
    if kind is nn.Softplus:
        if module.beta != 1 or module.threshold != 20:
            return "Softplus with beta != 1 or threshold != 20"
        return "softplus", None
    if kind in (nn.PReLU, nn.GELU, nn.Hardtanh, nn.Mish, nn.CELU, nn.ReLU6, nn.Hardswish):
        return f"{kind.__name__} is not one of bias_act's activations"
    return None


def _producer_problem(module: nn.Module) -> str | None:
    """Why `module` cannot start a chain (None: it can)."""
    from .nn.layer_act import plain_layer_class

    if type(module) in _NORMS:
        if module.momentum is None and isinstance(module, nn.modules.batchnorm._BatchNorm):
            return "batch norm with momentum=None (a cumulative average) is not supported"
        return None
    if plain_layer_class(module) is None:
        return f"it follows {type(module).__name__}, not a conv, linear or norm layer"
    if module.bias is None:
        return "the layer has no bias, so the activation alone is already one pass"
    if parametrize.is_parametrized(module, "bias"):
        return "the layer's bias is parametrized"
    return None


def _fuse(layer: nn.Module, act_module: nn.Module, act: str, alpha) -> nn.Module:
    """Fuse in place where possible; the module that now stands for the layer."""
    from .nn.layer_act import adopt
    from .nn.norm_act import NormAct

    if type(layer) in _NORMS:
        return NormAct.from_modules(layer, act_module)
    adopt(layer, act, alpha)
    return layer


def _replace(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Every registration of `old` under root (and root's descendants) becomes `new`."""
    for parent in list(root.modules()):
        for name, child in list(parent._modules.items()):
            if child is old:
                setattr(parent, name, new)


class _Tracer(fx.Tracer):
    """torch.nn modules and gankernels' own modules are leaves (their calls are nodes);
    nn.Sequential and user modules are traced through."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if type(m).__module__.startswith("gankernels."):
            return True
        return super().is_leaf_module(m, qualname)


def _trace(module: nn.Module) -> fx.Graph | str:
    try:
        return _Tracer().trace(module)
    except Exception as err:  # any failure to trace: the caller falls back
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return f"{type(err).__name__}: {text}"[:160]


@dataclass
class _Site:
    """An activation's call site and the chain it would end."""

    act_node: fx.Node
    act_module: nn.Module
    label: str
    problem: str | None = None
    layer: nn.Module | None = None
    spec: tuple | None = None
    index: int = -1  # in a Sequential (the adjacency fallback)


def _sites(region: nn.Module, where: str, graph: fx.Graph) -> list[_Site]:
    nodes = list(graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    modules = {}
    calls: dict[int, int] = {}
    for n in nodes:
        if n.op == "call_module":
            m = region.get_submodule(n.target)
            modules[n] = m
            calls[id(m)] = calls.get(id(m), 0) + 1
    sites = []
    for n in nodes:
        m = modules.get(n)
        spec = _activation(m) if m is not None else None
        if spec is None:
            continue
        name = f"{where}.{n.target}" if where else str(n.target)
        site = _Site(n, m, f"{name} ({type(m).__name__})")
        sites.append(site)
        if isinstance(spec, str):
            site.problem = spec
            continue
        src = n.args[0] if len(n.args) == 1 and not n.kwargs else None
        if not isinstance(src, fx.Node):
            site.problem = "its call has other arguments"
            continue
        if src not in modules:
            what = (
                src.target if src.op == "call_method" else getattr(src.target, "__name__", src.op)
            )
            site.problem = f"it follows {what}, not a layer or norm module"
            continue
        layer = modules[src]
        site.label = (
            f"{where + '.' if where else ''}{src.target} ({type(layer).__name__}) -> {site.label}"
        )
        problem = _producer_problem(layer)
        if problem is None and (len(src.args) != 1 or src.kwargs):
            problem = "the layer is called with more than its input"
        if problem is None and calls[id(layer)] > 1:
            problem = f"the layer runs at {calls[id(layer)]} call sites"
        if problem is None:
            others = [u for u in src.users if u is not n]
            inplace = getattr(m, "inplace", False)
            if others and not inplace:
                problem = "the layer's output is also used elsewhere (before the activation)"
            elif any(order[u] < order[n] for u in others):
                problem = "the layer's output is also used before the in-place activation"
        producer = src.args[0] if src.args else None
        if type(layer) in _NORMS and producer in modules:  # conv -> norm -> act
            prev = f"{where + '.' if where else ''}{producer.target}"
            site.label = f"{prev} ({type(modules[producer]).__name__}) -> {site.label}"
        site.problem, site.layer, site.spec = problem, layer, spec
    # A shared activation module becomes an Identity only if all its call sites fuse.
    by_module: dict[int, list[_Site]] = {}
    for site in sites:
        by_module.setdefault(id(site.act_module), []).append(site)
    for group in by_module.values():
        if len(group) > 1 and any(s.problem for s in group):
            for s in group:
                if s.problem is None:
                    s.problem = (
                        f"the activation module is shared by {len(group)} call sites and not "
                        "all of them can be fused"
                    )
    return sites


def _apply(region: nn.Module, root: nn.Module, sites: list[_Site], report: PatchReport) -> None:
    identity: dict[int, nn.Module] = {}
    for site in sites:
        if site.problem is not None:
            report.skipped.append(f"{site.label} left alone: {site.problem}")
            report.chains_left += 1
            continue
        act, alpha = site.spec
        try:
            fused = _fuse(site.layer, site.act_module, act, alpha)
        except (ValueError, TypeError) as err:
            report.skipped.append(f"{site.label} left alone: {err}")
            report.chains_left += 1
            continue
        if fused is not site.layer:
            _replace(root, site.layer, fused)
        identity[id(site.act_module)] = site.act_module
        what = "NormAct" if fused is not site.layer else type(fused).__name__
        report.changed.append(f"{site.label} -> {what} (same state_dict keys)")
        report.chains_fused += 1
    for act_module in identity.values():
        _replace(root, act_module, nn.Identity())


def _sequential_sites(name: str, root: str, seq: nn.Sequential, registered: dict) -> list[_Site]:
    """Chains by adjacency in a Sequential: seq[i]'s output goes to seq[i + 1] only.
    `registered`: how many times each module object is registered in the model."""
    where = name or root
    sites = []
    for i in range(len(seq) - 1):
        first, second = seq[i], seq[i + 1]
        spec = _activation(second)
        if spec is None:
            continue
        label = f"{where}.{i} ({type(first).__name__}) -> {where}.{i + 1} ({type(second).__name__})"
        site = _Site(None, second, label, index=i)
        sites.append(site)
        if isinstance(spec, str):
            site.problem = spec
            continue
        site.problem = _producer_problem(first)
        if site.problem is None and registered.get(id(first), 0) > 1:
            site.problem = "the layer is registered in more than one place"
        site.layer, site.spec = first, spec
    return sites


def _patch_chains(model: nn.Module, report: PatchReport) -> None:
    root = type(model).__name__
    traced: list[str] = []  # qualified names of the traced regions
    untraced: dict[str, str] = {}  # name -> why not

    def visit(name: str, module: nn.Module) -> None:
        from .fusion import FusionChoice

        if isinstance(module, FusionChoice) or type(module).__module__.startswith("torch.nn"):
            if not isinstance(module, nn.Sequential | nn.ModuleList | nn.ModuleDict):
                return  # a leaf
        graph = _trace(module) if not isinstance(module, nn.ModuleList | nn.ModuleDict) else None
        if isinstance(graph, fx.Graph):
            traced.append(name)
            _apply(module, model, _sites(module, name, graph), report)
            return
        if graph is not None:
            untraced[name or root] = graph
        for child_name, child in list(module.named_children()):
            visit(f"{name}.{child_name}" if name else child_name, child)
        if isinstance(module, nn.Sequential):  # fallback: adjacency
            sites = _sequential_sites(name, root, module, registered)
            _apply_sequential(module, sites, report)

    registered: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        registered[id(m)] = registered.get(id(m), 0) + 1

    visit("", model)
    if traced == [""]:
        report.method = "torch.fx dataflow"
    elif not traced:
        why = untraced.get(root, "")
        report.method = f"nn.Sequential adjacency; {root}.forward not traceable ({why})"
    else:
        why = untraced.get(root, "")
        report.method = (
            f"torch.fx dataflow in {len(traced)} submodule(s), nn.Sequential adjacency "
            f"elsewhere; {root}.forward not traceable ({why})"
        )


def _apply_sequential(seq: nn.Sequential, sites: list[_Site], report: PatchReport) -> None:
    from .nn.layer_act import adopt
    from .nn.norm_act import NormAct

    for site in sites:
        if site.problem is None:
            i = site.index
            try:
                if type(site.layer) in _NORMS:
                    seq[i] = NormAct.from_modules(site.layer, site.act_module)
                    what = "NormAct"
                else:
                    adopt(site.layer, *site.spec)
                    what = type(site.layer).__name__
            except (ValueError, TypeError) as err:
                site.problem = str(err)
            else:
                seq[i + 1] = nn.Identity()
                report.changed.append(f"{site.label} -> {what} (same state_dict keys)")
                report.chains_fused += 1
                continue
        report.skipped.append(f"{site.label} left alone: {site.problem}")
        report.chains_left += 1


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
    norms; layer + activation and norm + activation chains, found by dataflow)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"patch(model): expected an nn.Module, got {type(model).__name__}")
    report = PatchReport(_model=weakref.ref(model))
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
    _patch_chains(model, report)
    if not found_sn:
        report.skipped.append("no torch spectral_norm found")
    if report.renamed:
        model._register_load_state_dict_pre_hook(_load_renamed(dict(report.renamed)))
    return report
