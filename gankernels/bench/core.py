"""The harness core behind `gankernels bench`: configuration, cases and providers,
timing, the environment record, running the cases, and the results files (JSON, CSV,
plot). The families of cases live in their own modules (sn, penalty, conv) and register
themselves here; this module imports none of them.

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

from .. import _backend

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


def _grads(model: nn.Module) -> torch.Tensor:
    """Every parameter's gradient, flattened into one float64 vector."""
    return torch.cat([p.grad.detach().double().flatten() for p in model.parameters()])


# What the GB/s column counts, per op (each family adds its own).
BYTES_COUNTED: dict[str, str] = {}
# Lines that sum up an op's rows under the table, per op (each family adds its own).
SUMMARIES: dict[str, Callable[[list[dict]], list[str]]] = {}

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


def _last_level_cache_bytes() -> int:
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        with contextlib.suppress(ValueError):
            sizes.append(int(text.rstrip("KMG")) * scale)
    return max(sizes, default=32 * 2**20)


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
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
    from .. import __version__

    info = {
        "gankernels": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "torch_cuda": torch.version.cuda,
        "cpu": _backend.cpu_name(),
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


def run_ops(args: argparse.Namespace) -> int:
    """Time the cases of `--ops` and write one set of results files per op."""
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
