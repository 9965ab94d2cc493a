"""Fuse only where it pays: for each layer, the faster of our fused kernels and the plain
torch path, chosen per op, shape, dtype, device, memory format and gradient mode.

A fused layer (a conv whose bias and activation run in our bias_act kernel, a NormAct,
a modulated convolution) has two implementations that give the same numbers to dtype
tolerance:

  fused  our kernels (the conv without its bias, then bias + activation in one pass;
         the norm and the activation in one kernel; per-sample modulated weights from
         our kernel, then one grouped convolution)
  torch  plain torch (the conv with its bias, which oneDNN and cuDNN add for free, then
         the activation in place; torch's norm, then the activation in place; the input
         scaled by the styles, a convolution with the shared weight, the output scaled)

Which one runs is decided on the layer's first call with a new input signature, like
cuDNN's benchmark mode: both run forward (and backward when autograd records, and the
double backward inside `second_order()`) a few times on copies of the call's tensors
(no random draws, no update of running statistics, no .grad written), the median times
are compared and the faster one is kept; fused wins only if it is faster by more than
MARGIN. On a CPU with torch on one thread the times are the thread's CPU time, which other
processes' load does not inflate; wall time otherwise (CUDA: synchronised). Decisions
are kept in memory and on disk, one file per machine (CPU model) and versions (torch,
gankernels, its compiled kernels), under $GANKERNELS_CACHE/fusion (default
~/.cache/gankernels/fusion), with the device, thread count and backend in each entry's
key; `clear_cache()` forgets this machine's decisions (re-measure on a quiet machine).

Modes (`set_fusion`, `use_fusion`, GANKERNELS_FUSION):
  auto    the disk cache, else measure (the default)
  cached  the disk cache, else the fixed rule; never times (deterministic given a cache)
  fixed   the fixed rule only (deterministic everywhere): `rule()`
  fused   always our kernels
  torch   always the plain torch path

Under torch.compile a layer uses the decision of its last eager call (else the mode set
with `set_fusion` when it is 'fused' or 'torch', else the fixed rule); nothing is timed or
read from disk while a graph is traced, and `use_fusion` blocks do not reach inside
compiled graphs.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import _backend

MODES = ("auto", "cached", "fixed", "fused", "torch")
IMPLS = ("fused", "torch")
MARGIN = 0.02  # fused must beat torch by 2 % (noise favours neither; ties go to torch)
REPS = 7  # timed runs per candidate at most
MIN_REPS = 3
BUDGET_S = 1.0  # stop after this much timing per decision once MIN_REPS are done

RESAMPLE_CONV_OPS = ("upsample2x+conv2d", "conv2d+avgpool2x")


def _validate(mode: str, where: str) -> str:
    if mode not in MODES:
        raise ValueError(f"{where}: unknown fusion mode {mode!r}; expected one of {MODES}")
    return mode


_global_mode = _validate(os.environ.get("GANKERNELS_FUSION", "auto"), "GANKERNELS_FUSION")
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gankernels_fusion", default=None
)
_second_order: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "gankernels_second_order", default=False
)


def set_fusion(mode: str) -> None:
    """Choose how fused layers pick their implementation from now on: 'auto', 'cached',
    'fixed', 'fused' or 'torch' (see the module doc)."""
    global _global_mode
    _global_mode = _validate(mode, "set_fusion(mode)")


def get_fusion() -> str:
    return _override.get() or _global_mode


@contextlib.contextmanager
def use_fusion(mode: str) -> Iterator[None]:
    """`with gk.use_fusion('torch'):` runs the block in that mode."""
    token = _override.set(_validate(mode, "use_fusion(mode)"))
    try:
        yield
    finally:
        _override.reset(token)


@contextlib.contextmanager
def second_order() -> Iterator[None]:
    """Marks the forwards in the block as ones whose input gradient is differentiated
    again (a gradient penalty: WGAN-GP, R1): their decisions time the double backward
    too, where our kernels skip work that torch does (zero second derivatives)."""
    token = _second_order.set(True)
    try:
        yield
    finally:
        _second_order.reset(token)


def rule(op: str, device_type: str) -> str:
    """The fixed rule, from measurements on this project's machines. On CPUs oneDNN adds a
    conv's or linear's bias inside the matmul and torch's activation runs in place, so the
    bias + activation kernel saves nothing there; our norm + activation kernel does save
    passes (torch's instance norm makes copies). Most modulated convolutions are faster
    on CPUs as StyleGAN2 trains them (one convolution with the shared weight) than as a
    grouped convolution over per-sample weights. On GPUs each fused kernel saves a pass
    over the activations. A resampling folded into a convolution's kernel
    (upsample2x+conv2d, conv2d+avgpool2x) does less than half the multiply-adds on every
    device."""
    if op in RESAMPLE_CONV_OPS:
        return "fused"
    if device_type == "cpu":
        return "fused" if op.startswith("norm") else "torch"
    return "fused"


@dataclass(frozen=True)
class Decision:
    choice: str  # "fused" or "torch"
    source: str  # "measured", "cache", "rule" or "forced"
    fused_ms: float | None = None
    torch_ms: float | None = None

    def why(self) -> str:
        if self.fused_ms is None:
            return {"rule": "fixed rule", "forced": "forced"}.get(self.source, self.source)
        times = f"fused {self.fused_ms:.3g} ms, torch {self.torch_ms:.3g} ms"
        return f"{times} ({self.source})"


# ---------------------------------------------------------------------------------------
# The disk cache.


def _versions() -> str:
    from . import __version__

    ext, _ = _backend._extension()
    kernels = getattr(ext, "sources_hash", "none")
    return f"torch {torch.__version__}, gankernels {__version__}, kernels {kernels}"


def cache_path() -> Path:
    """This machine's and these versions' decision file."""
    root = os.environ.get("GANKERNELS_CACHE", os.path.expanduser("~/.cache/gankernels"))
    machine = f"{_backend.cpu_name()} | {_versions()}"
    slug = hashlib.sha256(machine.encode()).hexdigest()[:16]
    return Path(root) / "fusion" / f"{slug}.json"


class _DiskCache:
    def __init__(self):
        self.path: Path | None = None
        self.entries: dict[str, dict] | None = None

    def _load(self) -> dict[str, dict]:
        if self.entries is None:
            self.path = cache_path()
            self.entries = self._read()
        return self.entries

    def _read(self) -> dict[str, dict]:
        try:
            return dict(json.loads(self.path.read_text())["entries"])
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # none yet, or unreadable: it is only a cache

    def get(self, key: str) -> dict | None:
        return self._load().get(key)

    def put(self, key: str, entry: dict) -> None:
        entries = self._load()
        entries[key] = entry
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            merged = {**self._read(), **entries}  # other processes' entries too
            doc = {"machine": _backend.cpu_name(), "versions": _versions(), "entries": merged}
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only home: decisions stay in memory

    def summary(self) -> tuple[Path, dict[str, int]]:
        entries = self._load()
        choices = [e.get("choice") for e in entries.values()]
        counts = {c: choices.count(c) for c in (*IMPLS, "contiguous", "channels_last")}
        return self.path, counts

    def clear_memory(self) -> None:
        self.entries = None


_disk = _DiskCache()
_decisions: dict[str, Decision] = {}  # key -> decision, shared by all layers


def clear_cache() -> None:
    """Delete this machine's decision file and forget the decisions in memory: layers
    measure again on their next call (in 'auto' mode)."""
    cache_path().unlink(missing_ok=True)
    clear_decisions()


def clear_decisions() -> None:
    """Forget the decisions held in memory (layers re-decide on their next call; the disk
    cache is read again)."""
    _decisions.clear()
    _disk.clear_memory()
    _generation[0] += 1


_generation = [0]  # bumped by clear_decisions: layers' own memos are then stale


# ---------------------------------------------------------------------------------------
# Timing.


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(device: torch.device) -> Callable[[], float]:
    """The CPU time of this thread when torch computes on it alone (a CPU tensor, one
    thread): other processes' load then does not count; wall time otherwise."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time
    return time.perf_counter


def measure(
    run: Callable[[str], None], device: torch.device, candidates: tuple[str, ...] = IMPLS
) -> dict[str, float]:
    """Median milliseconds of run(candidate) for each candidate (by default both impls),
    after one warm-up call each; the calls alternate (and alternate which goes first) so
    that a change in the machine's load falls on all."""
    for impl in candidates:
        run(impl)
    clock = _clock(device)
    times: dict[str, list[float]] = {impl: [] for impl in candidates}
    start = time.perf_counter()
    for rep in range(REPS):
        for impl in candidates if rep % 2 == 0 else candidates[::-1]:
            _sync(device)
            t0 = clock()
            run(impl)
            _sync(device)
            times[impl].append(clock() - t0)
        if rep + 1 >= MIN_REPS and time.perf_counter() - start > BUDGET_S:
            break
    return {impl: statistics.median(ts) * 1e3 for impl, ts in times.items()}


def _layout(x: torch.Tensor) -> str:
    if x.is_contiguous():
        return "contiguous"
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return "channels_last_3d"
    return "strided"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def _stand_in(t: torch.Tensor | None, grad: bool) -> torch.Tensor | None:
    """A copy to time on: same values, shape, dtype and strides, its own autograd leaf."""
    if t is None:
        return None
    copy = t.detach().clone(memory_format=torch.preserve_format)
    return copy.requires_grad_(grad and t.is_floating_point())


class FusionChoice:
    """Mixin for a module with two implementations of its forward. The module provides
      _fusion_op: str                             e.g. "conv2d+bias_act"
      _fusion_config() -> str                     what besides the inputs fixes the cost
      _fusion_tensors(inputs, raw) -> list        the tensors a forward reads: the inputs,
                                                  then parameters and buffers (raw: a
                                                  parametrized weight's original)
      _fusion_forward(impl, tensors) -> Tensor    the forward from those tensors, free of
                                                  side effects on the module
    and calls `self._fusion_impl(x, tensors)` in its forward."""

    _fusion_op = "op"

    def _fusion_config(self) -> str:
        return ""

    def _fusion_impl(self, x: torch.Tensor, tensors: list) -> str:
        if torch.compiler.is_compiling():
            # What the eager calls chose (a constant of the graph), else the process-wide
            # mode or the fixed rule: nothing is timed while a graph is traced.
            last = getattr(self, "_fusion_last", None)
            if last is not None:
                return last
            return _global_mode if _global_mode in IMPLS else rule(self._fusion_op, x.device.type)
        mode = _override.get() or _global_mode
        if mode in IMPLS:
            self.__dict__["_fusion_last"] = mode
            return mode
        # This runs on every call: kept to a few cheap checks and one dict lookup.
        grad = False
        if torch.is_grad_enabled():
            for t in tensors:
                if t is not None and t.requires_grad:
                    grad = True
                    break
        order2 = grad and _second_order.get()
        device = x.device
        autocast = device.type != "meta" and torch.is_autocast_enabled(device.type)
        layout = x.is_contiguous() or _layout(x)
        sig = (mode, x.shape, x.dtype, device, layout, grad, order2, autocast)
        memo = self.__dict__.get("_fusion_memo")
        if memo is None:
            memo = self.__dict__["_fusion_memo"] = {}
        found = memo.get(sig)
        if found is None or found[0] != _generation[0]:
            decision = self._fusion_decide(mode, x, tensors, grad, order2, autocast)
            found = memo[sig] = (_generation[0], decision, sig)
        choice = found[1].choice
        self.__dict__["_fusion_last"] = choice
        return choice

    def _fusion_key(self, x, grad, order2, autocast) -> str:
        from . import _backend

        mode = "fwd+bwd2" if order2 else "fwd+bwd" if grad else "fwd"
        amp = f"autocast {torch.get_autocast_dtype(x.device.type)}" if autocast else "no autocast"
        parts = (
            self._fusion_op,
            self._fusion_config(),
            f"x {tuple(x.shape)} {str(x.dtype).replace('torch.', '')} {_layout(x)}",
            mode,
            amp,
            f"{_device_name(x.device)}, {torch.get_num_threads()} threads",
            f"backend {_backend.resolve(x.device)}",
        )
        return " | ".join(parts)

    def _fusion_decide(self, mode, x, tensors, grad, order2, autocast) -> Decision:
        key = self._fusion_key(x, grad, order2, autocast)
        if mode == "fixed":
            return Decision(rule(self._fusion_op, x.device.type), "rule")
        decision = _decisions.get(key)
        if decision is not None:
            return decision
        entry = _disk.get(key)
        if entry is not None and entry.get("choice") in IMPLS:
            decision = Decision(
                entry["choice"], "cache", entry.get("fused_ms"), entry.get("torch_ms")
            )
        elif mode == "cached":
            decision = Decision(rule(self._fusion_op, x.device.type), "rule")
        else:
            ms = measure(self._fusion_runner(x, tensors, grad, order2), x.device)
            fused = ms["fused"] < (1 - MARGIN) * ms["torch"]
            decision = Decision("fused" if fused else "torch", "measured", ms["fused"], ms["torch"])
            _disk.put(
                key,
                dict(
                    choice=decision.choice,
                    fused_ms=round(ms["fused"], 4),
                    torch_ms=round(ms["torch"], 4),
                    date=_dt.datetime.now().isoformat(timespec="seconds"),
                ),
            )
        _decisions[key] = decision
        return decision

    def _fusion_runner(self, x, tensors, grad, order2) -> Callable[[str], None]:
        raw = self._fusion_tensors_raw(tensors)
        copies = [_stand_in(t, grad and t is not None and t.requires_grad) for t in raw]
        if order2 and copies[0] is not None:
            copies[0].requires_grad_(True)
        leaves = [t for t in copies if t is not None and t.requires_grad]
        grad_out: list[torch.Tensor] = []

        def run(impl: str) -> None:
            with torch.enable_grad() if grad else torch.no_grad():
                y = self._fusion_forward(impl, copies)
                if not grad:
                    return
                if not grad_out:
                    grad_out.append(y.detach().clone())  # realistic values, no random draw
                if order2:
                    (gx,) = torch.autograd.grad(y, copies[0], grad_out[0], create_graph=True)
                    torch.autograd.grad(gx.square().sum(), leaves, allow_unused=True)
                else:
                    torch.autograd.grad(y, leaves, grad_out[0], allow_unused=True)

        return run

    def _fusion_applies(self) -> bool:
        """False where there is nothing to fuse (a layer without a bias and activation)
        or nothing to choose (a reference build: plain torch)."""
        return getattr(self, "fused", True)

    def _fusion_tensors_raw(self, tensors: list) -> list:
        """The tensors to time on: by default those of the call; layers with a
        parametrized weight override this to give the original (no power iteration)."""
        return tensors

    def fusion_decisions(self) -> list[tuple[str, Decision]]:
        """[(input signature, decision)] of the calls so far."""
        memo = self.__dict__.get("_fusion_memo", {})
        out = []
        for _, decision, sig in memo.values():
            _, shape, dtype, device, layout, grad, order2, _ = sig
            mode = "fwd+bwd2" if order2 else "fwd+bwd" if grad else "fwd"
            dt = str(dtype).replace("torch.", "")
            layout = "contiguous" if layout is True else layout
            out.append((f"{tuple(shape)} {dt} {layout} {device} {mode}", decision))
        return out

    def _fusion_repr(self) -> str:
        mode = get_fusion()
        if mode in IMPLS:
            return f"impl={mode!r} (forced)"
        decisions = self.fusion_decisions()
        if not decisions:
            return f"impl=undecided ({mode})"
        parts = []
        for sig, d in decisions:
            shape, mode = sig.split(")")[0] + ")", sig.rsplit(" ", 1)[-1]
            why = (
                d.why() if d.fused_ms is None else f"{d.fused_ms:.3g} vs torch {d.torch_ms:.3g} ms"
            )
            parts.append(f"{d.choice} for {mode} {shape} [{why}]")
        return "impl: " + ", ".join(parts)


def fusion_report(model: nn.Module) -> str:
    """One line per fused layer of `model`: what each input signature chose and why
    (measured medians, cached, fixed rule or forced)."""
    lines = [f"fusion ({get_fusion()}):"]
    counts = dict.fromkeys(IMPLS, 0)
    for name, m in model.named_modules():
        if not isinstance(m, FusionChoice) or not m._fusion_applies():
            continue
        decisions = m.fusion_decisions()
        if not decisions:
            lines.append(f"  {name or type(model).__name__} ({m._fusion_op}): not run yet")
        for sig, d in decisions:
            counts[d.choice] += 1
            lines.append(
                f"  {name or type(model).__name__} ({m._fusion_op}) {sig}: {d.choice} [{d.why()}]"
            )
    lines[0] = f"fusion ({get_fusion()}): {counts['fused']} fused, {counts['torch']} torch"
    return "\n".join(lines)


def info_line() -> str:
    """For `gankernels info`: the mode and what the decision cache holds."""
    env = os.environ.get("GANKERNELS_FUSION", "unset")
    path, counts = _disk.summary()
    held = f"{counts['fused'] + counts['torch']} decisions ({counts['fused']} fused, "
    held += f"{counts['torch']} torch) and {counts['contiguous'] + counts['channels_last']} "
    held += f"training-step memory formats ({counts['channels_last']} channels_last)"
    return f"fusion     {get_fusion()} (GANKERNELS_FUSION={env}); cache {path}: {held}"
