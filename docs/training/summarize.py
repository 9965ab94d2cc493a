"""Writes docs/training/README.md from the runs' logs and evaluations: one row per run
(flags, final losses, images/s, minutes, FID / precision / recall on digit features, the
mode-coverage verdict) and its sample grid."""

import csv
import json
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent

# What the table shows, read off the runs above (kept in sync by hand).
NOTES = [
    "What these runs show:",
    "- Every objective and model ran 2000 steps with finite losses (no divergence).",
    "- With the same DCGAN, R1 and R2 (gamma 10, lazy every 16 steps) reach the lowest FID",
    "  and the highest recall; the minimax, non-saturating, LSGAN and WGAN-GP runs make",
    "  rougher digits of every class.",
    "- WGAN with weight clipping has not left its collapsed start after 2000 steps",
    "  (`gankernels eval`: 67 % of samples are one class, recall 0); its paper trains for",
    "  far longer.",
    "- Both conditional runs draw the right digit per class but ignore the noise (one",
    "  image per class: recall 0, flagged as mode dropping); conditional batch norm in G",
    "  or more critic steps are the usual remedies and are not tried here.",
    "- The StyleGAN2-style G makes no digits in 2000 steps: at the StyleGAN2 paper's",
    "  learning rate (2e-3) it collapses to one image within 500 steps; at 2e-4 it is",
    "  still diverse at step 500 but collapsed by step 2000 (recall 0 both times). A",
    "  recipe that trains it on MNIST is open work.",
]


def main(runs_script: Path = DOCS / "run_all.sh") -> None:
    flags = dict(re.findall(r'\[([\w-]+)\]="([^"]+)"', runs_script.read_text()))
    rows, grids = [], []
    for name, extra in flags.items():
        log = DOCS / f"{name}.csv"
        if not log.exists():
            continue
        with open(log, newline="") as f:
            records = list(csv.DictReader(f))
        last = records[-1]
        finite = all(
            v not in ("nan", "inf", "-inf") for r in records for v in (r["loss_d"], r["loss_g"])
        )
        rate = sorted(float(r["img_per_s"]) for r in records[1:])[len(records[1:]) // 2]
        scores = DOCS / f"{name}.eval.json"
        quality = "| - | - | - |"
        if scores.exists():
            e = json.loads(scores.read_text())
            verdict = e["modes_verdict"].splitlines()[0]
            quality = f"| {e['fid']:.0f} | {e['precision']:.2f} / {e['recall']:.2f} | {verdict} |"
        rows.append(
            f"| {name} | `{extra}` | {last['step']} | {float(last['loss_d']):.3f} | "
            f"{float(last['loss_g']):.3f} | {'yes' if finite else 'NO'} | {rate:.0f} | "
            f"{float(last['seconds']) / 60:.1f} {quality}"
        )
        grids.append(
            f"### {name}\n\n`gankernels train --data mnist --batch 64 {extra}`\n\n"
            f"![{name}]({name}.png)\n"
        )
    text = [
        "# Every loss and model on MNIST",
        "",
        "Made by `bash docs/training/run_all.sh` (two runs at a time, one CPU thread each, on",
        "the 2-core machine of the benchmarks) and `python docs/training/summarize.py`. Each",
        "run: `gankernels train --data mnist --steps 2000 --batch 64` plus the flags below;",
        "grids show the EMA generator on fixed noise at the last step (conditional models:",
        "one row per class, 0 to 9). The logs (`<run>.csv`) have the losses every 50 steps.",
        "Scores: `gankernels eval --ckpt <run>/last.pt --data mnist --n 10000` (digit-classifier",
        "features, 10000 EMA samples against the 10000 MNIST test images; `<run>.eval.json`).",
        "For scale, MNIST train against MNIST test: FID 5.4, precision / recall 0.86 / 0.87.",
        "",
        "| run | flags | steps | loss_d | loss_g | finite | images/s | minutes | FID | "
        "precision / recall | modes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *NOTES,
        "",
        *grids,
    ]
    (DOCS / "README.md").write_text("\n".join(text))


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:]))
