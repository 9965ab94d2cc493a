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
    "- Both conditional runs without the mode-seeking term ignore the noise (one image",
    "  per class: recall 0). These runs are kept as the record of that failure; the",
    "  defaults no longer train this way (docs/conditional has the runs with the fix).",
    "  The cause: these G's concatenated a learned label embedding to z, and both",
    "  entered G's first layer side by side. The embedding is trained (z is not): its",
    "  part of that layer's input grew until z barely moved the output (measured on",
    "  such a G: the spread of its output over z for a fixed label was 0.008, over",
    "  labels for a fixed z 0.28), and one image per label then satisfies D. This is",
    "  why neither a label-blind D nor removing G's batch norm helped, while a frozen",
    "  (zero) label input did. The fix, in the",
    "  defaults: class-conditional batch norm (the projection-discriminator paper's G:",
    "  z alone at the input, the label sets each batch norm's gain and bias), a",
    "  matching-aware D (real images under a wrong label are negatives too) and the R1",
    "  objective, whose gamma now follows the image size and batch (0.00245 here; recall",
    "  0.63 against 0.40 with gamma 10, docs/conditional). The mode-seeking term",
    "  (`--mode-seeking`, Mao et al. 2019) was the earlier workaround: at weight 1 recall",
    "  rose to 0.34 (DCGAN) and 0.42 (SNGAN) but only 16 % and 14 % of samples showed the",
    "  digit asked for.",
    "- With the paper's linear output (all the StyleGAN2 runs but the `-3000` ones,",
    "  `--model-option g_output=linear`) the StyleGAN2-style G made no digits in 2000",
    "  steps, under any recipe tried (the cause and the fix are in the last notes). Its",
    "  default objective then was the paper's lazy R1 with gamma from the StyleGAN2-ADA",
    "  heuristic, 0.0002 x 28^2 / 64 = 0.00245 (`stylegan2-r1`: one image, FID 2147); with",
    "  gamma 10 (`stylegan2-r1-g10`, the earlier default) it drew a few templates (FID",
    "  1585, recall 0); at lr 2e-4 (gamma 10) it collapsed later. 500-1000-step runs",
    "  (widths 16 and 32, same seed) all collapsed to one template by step 500-1000: gamma",
    "  0.003, 0.01 and 0.1; minibatch-stddev groups of 32; two or no mapping layers; D's",
    "  learning rate 5e-4; learning rates 2e-4, 5e-3 and 1e-2; channels doubling at each lower",
    "  resolution (64 / 32 / 16). What it is not: the kernels (`--reference` gives the same",
    "  losses), the objective (the same R1 recipe trains a DCGAN G without batch norm:",
    "  recall 0.44 at gamma 10 and 0.64 at 0.0025 after 1000 steps) or the StyleGAN2 D (a",
    "  DCGAN G trained against it stays as diverse as the data). The G itself learns",
    "  slowly: fitted alone (mean squared error, `docs/training/pairing_experiment.py",
    "  --fit`) to 64 digits from 64 fixed z, after 300 steps it is at 0.170 (width 16) and",
    "  0.095 (width 64), where DCGAN's G (width 32) is at 0.0035 with batch norm and 0.0054",
    "  without (the mean digit scores 0.252). With equalised learning rates an Adam step",
    "  moves a weight by about 0.2 % of its size, against about 10 % for DCGAN's N(0, 0.02)",
    "  weights, and StyleGAN2 trains for tens of millions of images, not 128 k. How it",
    "  collapses (`python docs/training/probe_stylegan2.py RUN/last.pt`: the spread of G's",
    "  output over 1024 draws of z, per-pixel noise off; the spread of real MNIST digits is",
    "  0.38 in [-1, 1] units): untrained, G's output spreads by 1.18; after 600 steps at",
    "  width 16 by 0.13, and at the default width 64 by 0.28 already after 200 steps. The",
    "  styles still spread by 0.6-0.8 across z in every layer, and each layer alone moves the",
    "  output by 0.05-0.10 (0.25-1.2 untrained): G learns to ignore its styles, in every",
    "  layer at once, rather than losing them in the mapping network. A wider G (64 channels,",
    "  the default) collapses as well. A slower G than D (two time scales, D at the paper's",
    "  2e-3) does not help either: 3000 steps with G at 2e-4 (`stylegan2-r1-glr2e-4`, FID",
    "  1857, recall 0) or 5e-4 (`stylegan2-r1-glr5e-4`, FID 1756) end on one template.",
    "- What does change it is the pairing (`python docs/training/pairing_experiment.py`:",
    "  G and D from either model in one minimal loop with the same R1 recipe; spread of G",
    "  over z after 600 steps, noise off). The StyleGAN2 G keeps a spread of 0.33 against",
    "  DCGAN's D (width 32), DCGAN's G keeps 0.37 against the StyleGAN2 D, and the",
    "  StyleGAN2 pair falls to 0.12. Against the StyleGAN2 D the collapse survived every D",
    "  change tried: a box filter or none in place of the [1, 3, 3, 1] FIR downsampling",
    "  (0.12 / 0.20), no residual skips with minibatch-stddev groups of 32 (StyleGAN2-ADA's",
    "  CIFAR settings, 0.14), no minibatch stddev (0.14), R1 off (0.12), D four times as",
    "  wide (0.24), D's learning rate 1e-2 / 5e-2 (0.12 / 0.27; 1e-1 diverges). Both Ds",
    "  tell G about detail: 40-54 % of the energy of their input gradient on the fakes",
    "  lies above the 2x2 block average in either pairing.",
    "- DCGAN's D does not make the StyleGAN2 G good, only diverse: after 3000 steps",
    "  (`--steps 3000 --d dcgan --d-width 32 --fid`) FID 1012, 54 % of samples a 1, classes",
    "  0 and 6 dropped, against FID 222 and all ten classes for DCGAN's G and D in the same",
    "  loop (in half the time). One limit of the 16-channel G: its first layer can only",
    "  reweight 16 learned 7x7 maps per output channel, so the spatial layouts z can reach",
    "  span 16 dimensions of 49 (StyleGAN2's 4x4 start has 512 channels for 16 pixels); the",
    "  64-channel G is free of it and collapsed all the same (above). A recipe that trains",
    "  it on MNIST within a few thousand CPU steps is open work; at the default width of 64",
    "  a step takes about 3.5 s here (one thread, beside another run).",
    "- The cause: the linear output. MNIST digits are mostly pixels at exactly -1, and a",
    "  linear G holds such a flat background only where its output does not depend on z;",
    "  its styles scale whole channels, so flattening the background flattens the digit",
    "  too, and z drops out everywhere. Put through tanh (the default now), the",
    "  background saturates at -1 whatever z does. In the minimal loop above (600 steps,",
    "  width 16, `--g-output tanh`) the spread over z is 0.35 (0.37 after 1200 steps;",
    "  linear output: 0.12), where neither a mapping network at the full learning rate",
    "  (`--mapping-lr 1`, 0.08) nor per-pixel noise off (`--noise none`, 0.13) had",
    "  stopped the collapse. With tanh and the learning rate then (R1's 2e-3),",
    "  `stylegan2-r1-3000` (gamma 0.00245, 3000 steps) draws",
    "  every digit: FID 461, precision / recall 0.63 / 0.26, all ten classes (its raw G,",
    "  without EMA: FID 443); with seed 1 (`-s1`) FID 362, recall 0.44. R1 gamma 0.05",
    "  does better with both seeds: FID 389 and 307, recall 0.37 and 0.42 (`-g005`,",
    "  `-g005-s1`); gamma 0.5 gave FID 484. Twice the width did not pay for its time: G at",
    "  32 channels (`-gw32`) FID 399 in 1.7 times the time, class 5 nearly dropped; D at 32",
    "  with gamma 0.05 (`-g005-dw32`) FID 374 in 1.9 times. DCGAN + R1 reached FID 250 in",
    "  3000 steps (`dcgan-r1-3000`, 117 s beside the StyleGAN2 run, which took 325 s).",
    "- What was left: the learning rate. Every StyleGAN2 run above trained at 2e-3 or less;",
    "  with equalised learning rates an Adam step moves a weight by about lr of its size",
    "  (the G-alone fit above), and at 2e-3 this G had barely moved in 3000 steps. With",
    "  tanh, G and D at 5e-3, 1e-2 and 2e-2 (gamma 0.05, 3000 steps, `-lr5e-3`, `-lr1e-2`,",
    "  `-lr2e-2`) reach FID 96, 37 and 26 (second seed at 2e-2, `-lr2e-2-s1`: 29), recall",
    "  0.45, 0.56, 0.62 / 0.56, every class at 12-13 % at most. At 1e-2 the heuristic's gamma",
    "  0.00245 (`-lr1e-2-g00245`) gave FID 71 against 37 with 0.05. These are the defaults of",
    "  `--model stylegan2` under R1 now: width 16, lr 2e-2 for G and D, gamma 0.004 x",
    "  resolution^2 / batch (0.049 here); `stylegan2-r1-3000-defaults-s2` ran with no lr or",
    "  gamma flag: FID 36, recall 0.54. Against DCGAN + R1 at equal training time",
    "  (`python docs/training/fid_vs_time.py dcgan-r1-15000 stylegan2-r1-3000-lr2e-2 ...`,",
    "  FID on the 1000 samples logged every 500 steps, each run on one thread beside one other",
    "  run; the time in the evaluations left out): after 3000 steps StyleGAN2 is at FID 52",
    "  and 60 (8.7 and 9.5 minutes), DCGAN + R1 after the same time (about 7700 and 8400",
    "  steps) at 206 and 209, and after 15000 steps at 179 on 10000 samples",
    "  (`dcgan-r1-15000`; its curve past 10 minutes, and part of `-defaults-s2`, ran beside",
    "  two other runs, so their images/s and minutes are lower than the others'). The target,",
    "  StyleGAN2's FID at 3000 steps below DCGAN + R1's at the same wall-clock time with",
    "  no mode dropping, is met:",
    "",
    "  ![FID against training time](fid_vs_time.png)",
    "",
    "  At the model's own width of 64 (two threads, alone, 1000 steps) lr 2e-2 collapsed",
    "  (`stylegan2-r1-1000-w64-lr2e-2`: near-identical saturated blobs, FID 1537, recall",
    "  0.01) and 1e-2 trained (`stylegan2-r1-1000-w64`: FID 40, recall 0.59, ten classes at",
    "  12 % at most): a wider layer sums more weights' moves, so the default rate is 2e-2 x",
    "  sqrt(16 / width) when `--width` is given. Class-conditional StyleGAN2",
    "  (`--conditional`, these defaults; logs not kept) draws every class but ignores its",
    "  noise: recall 0.02 on 1000 samples after 500 steps and 0.00 after 2000 (at lr 2e-3:",
    "  0.04 after 500 steps), open. Not run yet: rates above 2e-2 at width 16, width 64",
    "  past 1000 steps, and other data sets and sizes with these defaults.",
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
        quality = "| - | - | - | - |"
        if scores.exists():
            e = json.loads(scores.read_text())
            verdict = e["modes_verdict"].splitlines()[0]
            label = f"{100 * e['label_accuracy']:.0f} %" if "label_accuracy" in e else "-"
            quality = (
                f"| {e['fid']:.0f} | {e['precision']:.2f} / {e['recall']:.2f} | {label} "
                f"| {verdict} |"
            )
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
        "features, 10000 EMA samples against the 10000 MNIST test images; `<run>.eval.json`);",
        "label accuracy: for conditional runs, the share of samples the digit classifier",
        "assigns to the class G was asked for.",
        "For scale, MNIST train against MNIST test: FID 5.4, precision / recall 0.86 / 0.87.",
        "",
        "| run | flags | steps | loss_d | loss_g | finite | images/s | minutes | FID | "
        "precision / recall | label accuracy | modes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *NOTES,
        "",
        *grids,
    ]
    (DOCS / "README.md").write_text("\n".join(text))


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:]))
