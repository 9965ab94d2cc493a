"""`gankernels bench --train`: images/s of whole training steps (D step with its penalty,
then G step) through the real training loop, ours against the same architectures built
from plain torch (`--reference`) and that compiled, on one device in one run.

Each provider trains the same configuration from the same seed for a few log intervals;
the rate is the median over the intervals after the first (which pays for warm-up and
compilation). n_critic is 1 so that a step is one D step plus one G step. The providers
run one after the other, or (--interleave) in separate processes taking turns interval
by interval.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from .. import fusion
from ..train import TrainConfig, train
from .core import environment, make_config

# name: (model, loss, what the step runs)
TRAIN_CASES = {
    "dcgan_wgan_gp": ("dcgan", "wgan-gp", "DCGAN, WGAN-GP (penalty every step)"),
    "sngan_hinge": ("sngan", "hinge", "SNGAN ResNet (spectral norm), hinge"),
    "stylegan2_r1": ("stylegan2", "r1", "StyleGAN2-style G, R1 every 16 steps"),
    "pix2pix": ("pix2pix", "nonsaturating", "pix2pix U-Net + PatchGAN, L1 + GAN"),
    "cyclegan": ("cyclegan", "lsgan", "CycleGAN ResNet Gs + PatchGANs, cycle + identity"),
}
# The translation cases train on their own paired data at 32 px, whatever --data says.
CASE_DATA = {"pix2pix": ("edges2fashion:shoes", 32), "cyclegan": ("emoji:google2twitter", 32)}
# Widths timed at the model's own default, not a training recipe's (StyleGAN2 + R1 trains
# at 16 by default; 64 is the workload of the recorded results).
CASE_WIDTH = {"stylegan2_r1": 64}
PROVIDERS = ("torch", "torch.compile", "gk")


def provider_config(provider: str, base: TrainConfig) -> TrainConfig:
    reference = provider.startswith("torch")
    values = dict(base.__dict__, reference=reference, compile=provider.endswith("compile"))
    return TrainConfig(**values)


def _timed_config(case: str, provider: str, args: argparse.Namespace, out: Path):
    """(config, interval): `args.intervals` timed log intervals after a warm-up one."""
    model, loss, _ = TRAIN_CASES[case]
    # Whole lazy-regularisation periods per interval (R1 every 16 steps), except --quick.
    interval = 16 if loss == "r1" and not args.quick else args.interval
    data, image_size = CASE_DATA.get(case, (args.data, None))
    if image_size is None and (args.quick or args.data == "digits"):
        image_size = 28  # digits are 8x8
    base = TrainConfig(
        model=model,
        loss=loss,
        data=data,
        batch=args.batch,
        width=8 if args.quick else CASE_WIDTH.get(case),
        image_size=image_size,
        n_critic=1,
        steps=interval * (args.intervals + 1),
        log_every=interval,
        sample_every=10**9,
        ckpt_every=10**9,
        ema=0.0,
        device=args.device,
        progress=False,
        out=str(out / f"{case}-{provider}"),
    )
    return provider_config(provider, base), interval


def _row(case: str, provider: str, config: TrainConfig, args: argparse.Namespace) -> dict:
    model, loss, what = TRAIN_CASES[case]
    row = dict(case=case, model=model, loss=loss, what=what, provider=provider, batch=args.batch)
    row.update(data=config.data, image_size=config.image_size, load_before=_load())
    return row


def measure(case: str, provider: str, args: argparse.Namespace, out: Path) -> dict:
    config, interval = _timed_config(case, provider, args, out)
    row = _row(case, provider, config, args)
    t0 = time.perf_counter()
    # The process's CPU time at every optimizer step: images per CPU second, which other
    # processes' load inflates far less than wall time (not at all on a single thread).
    marks: list[float] = []
    hook = register_optimizer_step_post_hook(lambda *_: marks.append(time.process_time()))
    try:
        result = train(config)
    except Exception as err:  # a provider that fails is reported, not fatal
        row.update(status="error", note=f"{type(err).__name__}: {err}"[:300])
        return row
    finally:
        hook.remove()
    rates = [r["img_per_s"] for r in result.history[1:]] or [result.images_per_second]
    per_step = max(1, len(marks) // config.steps)  # D and G optimizer steps per step
    step_ends = marks[per_step - 1 :: per_step][interval - 1 :]  # after the first interval
    cpu_seconds = [b - a for a, b in zip(step_ends, step_ends[1:], strict=False)]
    row.update(
        status="ok",
        images_per_s=statistics.median(rates),
        cpu_images_per_s=args.batch / statistics.median(cpu_seconds) if cpu_seconds else None,
        memory_format=result.memory_format,
        intervals=len(rates),
        steps_per_interval=interval,
        wall_s=round(time.perf_counter() - t0, 1),
        load_after=_load(),
    )
    return row


def measure_interleaved(
    case: str, providers: list[str], args: argparse.Namespace, out: Path
) -> list[dict]:
    """The providers train in separate processes that take turns, one timed interval each
    (every other process waiting, idle, for its turn), so that a change in the host's
    speed during the run reaches all of them alike; back to back, a provider's whole run
    can land in a slow minute. Warm-up intervals never overlap either."""
    ctx = multiprocessing.get_context("spawn")  # torch's thread pools do not survive fork
    turns, rows = {}, {}
    for provider in providers:
        config, interval = _timed_config(case, provider, args, out)
        rows[provider] = _row(case, provider, config, args)
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_take_turns, args=(config, interval, theirs))
        proc.start()
        turns[provider] = (proc, ours)
        _next_report(turns, provider, rows)  # its warm-up interval, alone
    timed = {p: [] for p in providers}
    t0, clock0 = time.perf_counter(), time.monotonic()
    for _ in range(args.intervals):
        for provider in [p for p in providers if p in turns]:
            turns[provider][1].send("go")
            report = _next_report(turns, provider, rows)
            if report is not None:
                timed[provider].append(report)
    for provider in list(turns):  # let each finish its run
        turns[provider][1].send("go")
        _next_report(turns, provider, rows)
    out_rows = []
    for provider in providers:
        row, intervals = rows[provider], timed[provider]
        if row.get("status") != "error":
            steps = intervals[0][2] if intervals else 0
            rates = [args.batch * steps / wall for wall, *_ in intervals]
            cpu = [args.batch * steps / c for _, c, *_ in intervals if c > 0]
            row.update(
                status="ok" if rates else "error",
                images_per_s=statistics.median(rates) if rates else None,
                cpu_images_per_s=statistics.median(cpu) if cpu else None,
                intervals=len(rates),
                steps_per_interval=steps,
                wall_s=round(time.perf_counter() - t0, 1),
                load_after=_load(),
                timing="interleaved",
                # when each timed interval ran, seconds from the first turn
                spans=[[round(a - clock0, 3), round(b - clock0, 3)] for *_, a, b in intervals],
            )
        out_rows.append(row)
    return out_rows


def _next_report(turns: dict, provider: str, rows: dict) -> tuple | None:
    """The provider's next message: an interval's (wall s, CPU s, steps, start, end), or at
    the end its memory format; an error (or a dead process) ends its turns and marks its
    row."""
    proc, conn = turns[provider]
    try:
        kind, *value = conn.recv()
    except EOFError:
        kind, value = "error", [f"the {provider} process ended (exit code {proc.exitcode})"]
    if kind == "interval":
        return tuple(value)
    if kind == "done":
        rows[provider]["memory_format"] = value[0]
    else:
        rows[provider].update(status="error", note=str(value[0])[:300])
    proc.join(timeout=60)
    del turns[provider]
    return None


def _take_turns(config: TrainConfig, interval: int, conn) -> None:
    """Train `config`; after every `interval` steps report the interval's wall and CPU
    seconds and wait for the word to go on (after the first interval, the warm-up, the
    report is all zeros)."""
    state = dict(calls=0, first=None, per_step=0, start=None)

    def after_step(optimizer, *_):
        # A training step is one step of each optimizer (n_critic 1); the first one seen
        # again marks how many there are.
        state["calls"] += 1
        if state["first"] is None:
            state["first"] = optimizer
        elif optimizer is state["first"] and not state["per_step"]:
            state["per_step"] = state["calls"] - 1
        per_step = state["per_step"]
        if not per_step or state["calls"] % (per_step * interval):
            return
        if state["start"] is not None:
            start, cpu_start = state["start"]
            end, cpu = time.monotonic(), time.process_time()  # monotonic: one clock for all
            conn.send(("interval", end - start, cpu - cpu_start, interval, start, end))
        else:
            conn.send(("interval", 0.0, 0.0, 0, 0.0, 0.0))  # the end of the warm-up
        conn.recv()
        state["start"] = (time.monotonic(), time.process_time())

    hook = register_optimizer_step_post_hook(after_step)
    try:
        result = train(config)
        conn.send(("done", result.memory_format))
    except Exception as err:  # reported in the provider's row
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        hook.remove()
        conn.close()


def _load() -> float | None:
    """The 1-minute load average: timings mean little when it exceeds the core count."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _rate(row: dict | None) -> float | None:
    return row["images_per_s"] if row and row["status"] == "ok" else None


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{row['images_per_s']:.1f}" if row["status"] == "ok" else row["status"]


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def format_table(rows: list[dict]) -> str:
    """One line per case; with several runs (--repeat) the medians, and the worst of the
    runs' gk / torch ratios (each run's pair measured back to back)."""
    runs = max(r.get("run", 0) for r in rows) + 1 if rows else 1
    worst = " | worst gk / torch" if runs > 1 else ""
    lines = [
        "| case | torch img/s | torch.compile img/s | gk img/s | gk / torch | gk / compile"
        f"{worst} |",
        "|---|---|---|---|---|---|" + ("---|" if runs > 1 else ""),
    ]
    for case in dict.fromkeys(r["case"] for r in rows):
        by = {p: [r for r in rows if r["case"] == case and r["provider"] == p] for p in PROVIDERS}
        t, c, g = (_median_row(by[p]) for p in PROVIDERS)
        line = (
            f"| {case} | {_cell(t)} | {_cell(c)} | {_cell(g)} "
            f"| {_ratio(_rate(g), _rate(t))} | {_ratio(_rate(g), _rate(c))} |"
        )
        if runs > 1:
            pairs = zip(by["gk"], by["torch"], strict=False)
            ratios = [_rate(a) / _rate(b) for a, b in pairs if _rate(a) and _rate(b)]
            line += f" {min(ratios):.2f}x |" if ratios else " - |"
        cpu = [_median_cpu(by[p]) for p in ("torch", "gk")]
        line += f" {_ratio(cpu[1], cpu[0])} |"
        lines.append(line)
    lines[0] += " gk / torch, CPU time |"
    lines[1] += "---|"
    return "\n".join(lines)


def _median_cpu(rows: list[dict]) -> float | None:
    rates = [r["cpu_images_per_s"] for r in rows if r.get("cpu_images_per_s")]
    return statistics.median(rates) if rates else None


def _median_row(rows: list[dict]) -> dict | None:
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return rows[0] if rows else None
    return dict(ok[0], images_per_s=statistics.median(r["images_per_s"] for r in ok))


def run(args: argparse.Namespace) -> int:
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()] or list(TRAIN_CASES)
    unknown = [c for c in wanted if c not in TRAIN_CASES]
    if unknown:
        print(
            f"bench --train: unknown case(s) {unknown}; known: {list(TRAIN_CASES)}", file=sys.stderr
        )
        return 2
    if args.quick:
        args.data, args.batch, args.interval, args.intervals = "digits", 16, 2, 2
    providers = [p for p in PROVIDERS if not (args.no_compile and p == "torch.compile")]
    env = environment(make_config(args.device, "float32", args.quick, not args.no_compile))
    print(
        f"bench --train: {env['device_name']} | torch {env['torch']} | data {args.data} "
        f"| batch {args.batch}",
        flush=True,
    )
    if args.profile:
        return profile(wanted, args, env)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in wanted:
            for run_index in range(args.repeat):
                folder = Path(tmp) / str(run_index)
                if args.interleave:
                    run_rows = measure_interleaved(case, providers, args, folder)
                else:  # providers back to back
                    run_rows = [measure(case, p, args, folder) for p in providers]
                for row in run_rows:
                    row["run"] = run_index
                    rate = (
                        f"{row['images_per_s']:.1f} img/s" if row["status"] == "ok" else row["note"]
                    )
                    print(
                        f"  {case:16s} {row['provider']:14s} run {run_index + 1}/{args.repeat} "
                        f"{rate} (load {row['load_before']} -> {row.get('load_after')})",
                        file=sys.stderr,
                        flush=True,
                    )
                    rows.append(row)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    meta = dict(
        env,
        op="train",
        device=args.device,
        dtype="fp32",
        data=args.data,
        batch=args.batch,
        width=8 if args.quick else {**CASE_WIDTH, "other cases": "the model's default"},
        image_size=28 if args.quick else None,
        date=_dt.datetime.now().isoformat(timespec="seconds"),
        quick=args.quick,
        timing="median images/s over log intervals after the first; real images through D"
        + ("; providers interleaved interval by interval" if args.interleave else ""),
        repeat=args.repeat,
        interleave=args.interleave,
        fusion=fusion.get_fusion(),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS", "unset"),
        note=args.note,
    )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"train_{args.device}{'_quick' if args.quick else ''}_{stamp}"
    base.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(base.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {base.with_suffix('.json')} and .csv")
    print()
    print(format_table(rows))
    print(
        f"images/s of full training steps on {env['device_name']}; ratios in the same run; "
        "the last column compares images per second of the process's CPU time"
    )
    return 0 if all(r["status"] == "ok" for r in rows if r["provider"] != "torch.compile") else 1


# ---------------------------------------------------------------------------------------
# --profile: where the time of a step goes, per op, torch.profiler's tables.

# Row name -> category of the summary (first match wins; the rest is "other").
CATEGORIES = (
    ("gankernels", ("gankernels::", "gankernels.", "_BiasAct", "_NormAct", "_Lerp", "_RowPenalty")),
    ("conv and matmul", ("conv", "mkldnn", "addmm", "aten::mm", "bmm", "linear", "matmul")),
    (
        "torch norm and activation",
        ("batch_norm", "instance_norm", "relu", "threshold", "tanh", "sigmoid", "elu", "silu"),
    ),
    ("optimizer", ("Optimizer.",)),
)
# Calls that only group others (their self time is what is not in a recorded op).
GROUPS = ("ProfilerStep", "gankernels.d_step", "gankernels.g_step", "Optimizer.step")


def _category(name: str) -> str:
    for category, keys in CATEGORIES:
        if any(k.lower() in name.lower() for k in keys):
            return category
    return "other"


def profile(wanted: list[str], args: argparse.Namespace, env: dict) -> int:
    """Profile `--profile-steps` training steps of each case, plain torch and gk, after
    warm-up steps (two; fourteen for lazy R1, so that the window holds the step-16 R1
    penalty). Writes per case and provider the key_averages table sorted by self CPU time
    (text), all rows (CSV) and a summary by category (markdown), with the conditions."""
    from torch.profiler import ProfilerActivity, schedule
    from torch.profiler import profile as torch_profile

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out) / f"profile_{args.device}_{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    conditions = (
        f"{env['device_name']}, torch {env['torch']}, {torch.get_num_threads()} threads "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), batch {args.batch}, "
        f"fp32, fusion {fusion.get_fusion()}, git {env.get('git_commit')}"
    )
    csv_rows, summary = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for case in wanted:
            model, loss, what = TRAIN_CASES[case]
            warm = 14 if loss == "r1" else 2
            steps = args.profile_steps
            for provider in ("torch", "gk"):
                config = _profile_config(case, provider, args, Path(tmp), warm + steps)
                # One optimizer step for D and one for G per training step (n_critic 1):
                # the window opens after step warm - 1's G step, closes after the last.
                prof = torch_profile(
                    activities=[ProfilerActivity.CPU],
                    schedule=schedule(wait=2 * warm - 1, warmup=1, active=2 * steps, repeat=1),
                )
                hook = register_optimizer_step_post_hook(lambda *_, p=prof: p.step())
                load = _load()
                prof.start()
                try:
                    train(config)
                finally:
                    prof.stop()
                    hook.remove()
                averages = prof.key_averages()
                table = averages.table(sort_by="self_cpu_time_total", row_limit=40)
                head = (
                    f"# {case} ({what}), {provider}: {steps} training steps after {warm} "
                    f"warm-up steps\n# {conditions}\n# 1-minute load average {load} -> "
                    f"{_load()}\n# times are totals over the {steps} steps\n"
                )
                (out_dir / f"{case}_{provider}.txt").write_text(head + table + "\n")
                totals = dict.fromkeys([c for c, _ in CATEGORIES] + ["other"], 0.0)
                step_us = 0.0
                for e in averages:
                    row = dict(
                        case=case,
                        provider=provider,
                        name=e.key,
                        calls=e.count,
                        self_cpu_ms_per_step=round(e.self_cpu_time_total / 1e3 / steps, 4),
                        cpu_total_ms_per_step=round(e.cpu_time_total / 1e3 / steps, 4),
                    )
                    csv_rows.append(row)
                    if e.key.startswith("ProfilerStep"):
                        step_us += e.cpu_time_total
                    elif e.key.startswith("Optimizer.step"):
                        totals["optimizer"] += e.cpu_time_total
                    elif not any(e.key.startswith(g) for g in GROUPS):
                        category = _category(e.key)
                        if category != "optimizer":
                            totals[category] += e.self_cpu_time_total
                summary.append((case, provider, step_us / steps / 1e3, totals, steps))
                print(f"  profiled {case} {provider}: {step_us / steps / 1e3:.0f} ms/step",
                      file=sys.stderr, flush=True)  # fmt: skip
    with open(out_dir / "profile.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(csv_rows[0]))
        writer.writeheader()
        writer.writerows(csv_rows)
    names = [c for c, _ in CATEGORIES] + ["other"]
    lines = [
        f"# Where a training step's time goes ({stamp})",
        "",
        f"Conditions: {conditions}. Milliseconds per training step (one D step with its "
        "penalty when due, one G step), CPU time from torch.profiler; `other` is the "
        "remaining recorded ops (elementwise, copies, reductions, losses); the step total "
        "also holds what no op records (Python, the data pipeline).",
        "",
        "| case | provider | step ms | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for case, provider, step_ms, totals, steps in summary:
        cells = " | ".join(f"{totals[n] / steps / 1e3:.1f}" for n in names)
        lines.append(f"| {case} | {provider} | {step_ms:.1f} | {cells} |")
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out_dir}")
    return 0


def _profile_config(case: str, provider: str, args, tmp: Path, steps: int) -> TrainConfig:
    model, loss, _ = TRAIN_CASES[case]
    data, image_size = CASE_DATA.get(case, (args.data, None))
    if image_size is None and (args.quick or args.data == "digits"):
        image_size = 28
    base = TrainConfig(
        model=model, loss=loss, data=data, batch=args.batch,
        width=8 if args.quick else CASE_WIDTH.get(case),
        image_size=image_size, n_critic=1, steps=steps, log_every=steps, sample_every=10**9,
        ckpt_every=10**9, ema=0.0, device=args.device, progress=False,
        out=str(tmp / f"{case}-{provider}"),
    )  # fmt: skip
    return provider_config(provider, base)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--train",
        action="store_true",
        help=f"time whole training steps instead of ops ({', '.join(TRAIN_CASES)})",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="time FID (ours vs scipy's sqrtm path) and feature extraction instead of ops",
    )
    parser.add_argument("--data", default="mnist", help="data set for --train (default: mnist)")
    parser.add_argument("--batch", type=int, default=64, help="batch size for --train (default 64)")
    parser.add_argument(
        "--interval", type=int, default=8, help="--train: steps per timed interval (default 8)"
    )
    parser.add_argument(
        "--intervals", type=int, default=3, help="--train: timed intervals per run (default 3)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="--train: runs per case, the providers back to back in each (or taking turns, "
        "--interleave); the table then shows medians and the worst gk / torch ratio "
        "(default 1)",
    )
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="--train: the providers train in separate processes taking turns, one timed "
        "interval each, so that a change in the host's speed reaches them alike (default: "
        "one provider's whole run after the other's)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="--train: instead of timing, profile a few steps of each case (torch and gk) "
        "with torch.profiler and write the tables (text and CSV) to --out",
    )
    parser.add_argument(
        "--profile-steps",
        type=int,
        default=4,
        help="--profile: steps profiled after the warm-up steps (default 4; R1 cases place "
        "the window over a lazy R1 step)",
    )
