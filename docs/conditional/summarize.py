"""Writes docs/conditional/README.md from the runs' logs and evaluations: one row per run
(flags, steps, images/s, minutes; FID, precision / recall and the condition's fidelity
from `gankernels eval`), the findings (findings.md) and each run's grid, one row per
condition."""

import csv
import json
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
FINDINGS = DOCS / "findings.md"


def _fidelity(e: dict) -> str:
    for key, what in (
        ("label_accuracy", "label"),
        ("text_fidelity", "text"),
        ("sound_agreement", "sound"),
    ):
        if key in e:
            return f"{100 * e[key]:.1f} % ({what})"
    return "-"


def _verdict(e: dict) -> str:
    return e["modes_verdict"].splitlines()[0] if "modes_verdict" in e else "-"


def main(runs_script: Path = DOCS / "run_all.sh") -> None:
    flags = dict(re.findall(r'\[([\w-]+)\]="([^"]+)"', runs_script.read_text()))
    rows, grids = [], []
    for name, extra in flags.items():
        log, scores = DOCS / f"{name}.csv", DOCS / f"{name}.eval.json"
        if not (log.exists() and scores.exists()):
            continue
        with open(log, newline="") as f:
            records = list(csv.DictReader(f))
        rates = sorted(float(r["img_per_s"]) for r in records[1:]) or [0.0]
        last, e = records[-1], json.loads(scores.read_text())
        # a resumed run's clock restarts: add up the segments
        seconds = sum(
            float(a["seconds"])
            for a, b in zip(records, records[1:] + [None], strict=True)
            if b is None or float(b["seconds"]) < float(a["seconds"])
        )
        rows.append(
            f"| {name} | `{extra}` | {last['step']} | {rates[len(rates) // 2]:.0f} | "
            f"{seconds / 60:.0f} | {e['fid']:.1f} | {e['precision']:.2f} / "
            f"{e['recall']:.2f} | {_fidelity(e)} | {_verdict(e)} |"
        )
        grids.append(f"### {name}\n\n`gankernels train {extra}`\n\n![{name}]({name}.png)\n")
    text = [
        "# Conditional generation: a class label, a sentence, a spoken digit",
        "",
        "Made by `bash docs/conditional/run_all.sh` (two runs at a time, one CPU thread each,",
        "on the 2-core machine of the benchmarks) and `python docs/conditional/summarize.py`.",
        "Scores: `gankernels eval --ckpt <run>/last.pt --n 10000` (`<run>.eval.json`), 10000",
        "samples of the EMA generator. Labels: digit-classifier features against the MNIST",
        "test images; label accuracy is the share the classifier assigns to the class asked",
        "for. Text: samples for held-out captions (test images' captions, in phrasings the",
        "training captions never use); Fashion-MNIST scored on our Fashion-MNIST classifier's",
        "features (text fidelity: the share classified as the caption's class), emoji on",
        "Inception features (the share whose nearest test emoji has the caption's category).",
        "Sound: samples for the real recorded voices (never trained on), on digit-classifier",
        "features (sound agreement: the share classified as the spoken digit). For scale,",
        "MNIST train against MNIST test: FID 5.4, precision / recall 0.86 / 0.87.",
        "",
        "| run | flags | steps | images/s | minutes | FID | precision / recall | fidelity | "
        "modes |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        FINDINGS.read_text().strip() if FINDINGS.exists() else "",
        "",
        *grids,
    ]
    (DOCS / "README.md").write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:]))
