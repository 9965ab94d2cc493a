"""`gankernels bench --train`: images/s of whole training steps (D step with its penalty,
then G step) through the real training loop, ours against the same architectures built
from plain torch (`--reference`) and that compiled, on one device in one run.

Each provider trains the same configuration from the same seed for a few log intervals;
the rate is the median over the intervals after the first (which pays for warm-up and
compilation). n_critic is 1 so that a step is one D step plus one G step.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .train import TrainConfig, train

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
PROVIDERS = ("torch", "torch.compile", "gk")


def provider_config(provider: str, base: TrainConfig) -> TrainConfig:
    reference = provider.startswith("torch")
    values = dict(base.__dict__, reference=reference, compile=provider.endswith("compile"))
    return TrainConfig(**values)


def measure(case: str, provider: str, args: argparse.Namespace, out: Path) -> dict:
    model, loss, what = TRAIN_CASES[case]
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
        width=8 if args.quick else None,
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
    config = provider_config(provider, base)
    row = dict(case=case, model=model, loss=loss, what=what, provider=provider, batch=args.batch)
    row.update(data=data, image_size=image_size)
    t0 = time.perf_counter()
    try:
        result = train(config)
    except Exception as err:  # a provider that fails is reported, not fatal
        row.update(status="error", note=f"{type(err).__name__}: {err}"[:300])
        return row
    rates = [r["img_per_s"] for r in result.history[1:]] or [result.images_per_second]
    row.update(
        status="ok",
        images_per_s=statistics.median(rates),
        intervals=len(rates),
        steps_per_interval=interval,
        wall_s=round(time.perf_counter() - t0, 1),
    )
    return row


def _rate(row: dict | None) -> float | None:
    return row["images_per_s"] if row and row["status"] == "ok" else None


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{row['images_per_s']:.1f}" if row["status"] == "ok" else row["status"]


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def format_table(rows: list[dict]) -> str:
    lines = [
        "| case | torch img/s | torch.compile img/s | gk img/s | gk / torch | gk / compile |",
        "|---|---|---|---|---|---|",
    ]
    for case in dict.fromkeys(r["case"] for r in rows):
        by = {r["provider"]: r for r in rows if r["case"] == case}
        t, c, g = (by.get(p) for p in PROVIDERS)
        lines.append(
            f"| {case} | {_cell(t)} | {_cell(c)} | {_cell(g)} "
            f"| {_ratio(_rate(g), _rate(t))} | {_ratio(_rate(g), _rate(c))} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from .benchmark import environment, make_config

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
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in wanted:
            for provider in providers:
                row = measure(case, provider, args, Path(tmp))
                rate = f"{row['images_per_s']:.1f} img/s" if row["status"] == "ok" else row["note"]
                print(f"  {case:16s} {provider:14s} {rate}", file=sys.stderr, flush=True)
                rows.append(row)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    meta = dict(
        env,
        op="train",
        device=args.device,
        dtype="fp32",
        data=args.data,
        batch=args.batch,
        width=8 if args.quick else None,
        image_size=28 if args.quick else None,
        date=_dt.datetime.now().isoformat(timespec="seconds"),
        quick=args.quick,
        timing="median images/s over log intervals after the first; real images through D",
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
    print(f"images/s of full training steps on {env['device_name']}; ratios in the same run")
    return 0 if all(r["status"] == "ok" for r in rows if r["provider"] != "torch.compile") else 1


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
