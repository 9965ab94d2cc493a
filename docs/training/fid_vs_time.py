"""FID against training time for runs logged with --eval-every (docs/training/<run>.csv):
writes fid_vs_time.png and prints, for each run but the reference, the reference run's
FID after the same training time.

    python docs/training/fid_vs_time.py REFERENCE RUN [RUN ...]

Training time is the sum of the logged intervals (log_every steps at the interval's
images/s), so the time spent in the evaluations themselves is left out of both."""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DOCS = Path(__file__).resolve().parent


def curve(name: str, batch: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, training seconds, FID) at each evaluated step of run `name`."""
    with open(DOCS / f"{name}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    seconds, previous, out = 0.0, 0, []
    for row in rows:
        step = int(row["step"])
        seconds += (step - previous) * batch / float(row["img_per_s"])
        previous = step
        if row.get("fid"):
            out.append((step, seconds, float(row["fid"])))
    return tuple(np.array(c) for c in zip(*out, strict=True))


def main(reference: str, *runs: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ref_steps, ref_s, ref_fid = curve(reference)
    ax.plot(ref_s / 60, ref_fid, "o-", ms=3, label=reference)
    for name in runs:
        steps, s, fid = curve(name)
        ax.plot(s / 60, fid, "o-", ms=3, label=name)
        at = np.interp(s[-1], ref_s, ref_fid)
        ref_step = np.interp(s[-1], ref_s, ref_steps)
        print(f"{name}: FID {fid[-1]:.1f} after {steps[-1]:.0f} steps in {s[-1]:.0f} s; "
              f"{reference} after the same time (~{ref_step:.0f} steps): FID {at:.1f}")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("training minutes (one CPU thread, beside another run)")
    ax.set_ylabel("FID, digit features (1000 samples)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(DOCS / "fid_vs_time.png", dpi=110)
    print(f"wrote {DOCS / 'fid_vs_time.png'}")


if __name__ == "__main__":
    main(*sys.argv[1:])
