"""Writes docs/translation/README.md from the runs' logs and evaluations: one row per run
(flags, steps, images/s, minutes, and its held-out scores: L1, PSNR, SSIM, FID, KID) next
to the identity baseline of its data set, then each run's grid of held-out inputs,
outputs and true targets, and its loss curves."""

import csv
import json
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
NOTES = DOCS / "findings.md"  # the findings in words, written after reading the table


def _run_rows(name: str) -> tuple[str, str, str]:
    """(steps, images/s, minutes) from a run's log, or dashes for a baseline."""
    log = DOCS / f"{name}.csv"
    if not log.exists():
        return "-", "-", "-"
    with open(log, newline="") as f:
        records = list(csv.DictReader(f))
    rates = sorted(float(r["img_per_s"]) for r in records[1:]) or [0.0]
    last = records[-1]
    return last["step"], f"{rates[len(rates) // 2]:.0f}", f"{float(last['seconds']) / 60:.0f}"


def _scores(e: dict, fashion: dict | None) -> str:
    fid = f"{e['fid']:.3f}" if "fid" in e else "-"
    fid_fashion = f"{fashion['fid']:.2f}" if fashion else "-"
    kid = f"{e['kid']:.4f}" if "kid" in e else "-"
    cycle = f"{e['cycle_a']:.3f} / {e['cycle_b']:.3f}" if "cycle_a" in e else "-"
    return (
        f"{e['l1']:.4f} | {e['psnr']:.2f} | {e['ssim']:.4f} | {fid} | {kid} | {fid_fashion} | "
        f"{cycle} | {e['num_pairs']} ({e['extractor']})"
    )


def main(runs_script: Path = DOCS / "run_all.sh") -> None:
    flags = dict(re.findall(r'\[([\w-]+)\]="([^"]+)"', runs_script.read_text()))
    rows, grids = [], []
    for name, extra in flags.items():
        scores = DOCS / f"{name}.eval.json"
        if not scores.exists():
            continue
        e = json.loads(scores.read_text())
        extra_scores = DOCS / f"{name}.fashion.eval.json"
        fashion = json.loads(extra_scores.read_text()) if extra_scores.exists() else None
        steps, rate, minutes = _run_rows(name)
        command = f"gankernels eval --{extra}" if extra.startswith("identity") else extra
        rows.append(
            f"| {name} | `{command}` | {steps} | {rate} | {minutes} | {_scores(e, fashion)} |"
        )
        if (DOCS / f"{name}.png").exists():
            grids.append(
                f"### {name}\n\n`gankernels train {extra}`\n\n![{name}]({name}.png)\n\n"
                f"Loss curves: [{name}.losses.png]({name}.losses.png)\n"
            )
    text = [
        "# Image-to-image translation: pix2pix and CycleGAN on offline data",
        "",
        "Made by `bash docs/translation/run_all.sh` (two runs at a time, one CPU thread each,",
        "on the 2-core machine of the benchmarks) and `python docs/translation/summarize.py`.",
        "Scores: `gankernels eval --ckpt <run>/last.pt` on the held-out test pairs (the first",
        "1000, or all when fewer; `<run>.eval.json`): L1, PSNR and SSIM of the EMA generator's",
        "outputs against the true targets (images in [0, 1]; SSIM with an 11x11 Gaussian",
        "window, sigma 1.5, as scikit-image), FID and KID of the outputs against the targets",
        "on Inception features (pool3 when the pairs outnumber its 2048 dimensions, else an",
        "earlier block's, as named); for the Fashion-MNIST pairs also FID on our",
        "Fashion-MNIST classifier's 256 features (`--extractor fashion`), which sees these",
        "32 px grey images at their own size. CycleGAN's cycle columns: |b2a(a2b(a)) - a| and",
        "|a2b(b2a(b)) - b|. Identity rows score the input itself as the output.",
        "Grids: rows of held-out inputs, outputs and true targets (CycleGAN: then the",
        "targets translated back).",
        "",
        "| run | flags | steps | images/s | minutes | L1 | PSNR (dB) | SSIM | FID | KID | "
        "FID (fashion) | cycle L1 (a / b) | pairs (features) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        NOTES.read_text().strip() if NOTES.exists() else "",
        "",
        *grids,
    ]
    (DOCS / "README.md").write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:]))
