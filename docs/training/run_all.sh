#!/usr/bin/env bash
# Trains every loss and every model on MNIST for 2000 steps on the CPU, evaluates each
# (gankernels eval, digit features, 10000 samples against MNIST test) and collects the
# sample grids, logs and scores shown in docs/training/README.md (python
# docs/training/summarize.py writes it).
#
#   bash docs/training/run_all.sh            # all runs, two at a time, one thread each
#   bash docs/training/run_all.sh dcgan-lsgan sngan-hinge   # only these
set -euo pipefail
cd "$(dirname "$0")/../.."
GK=${GK:-.venv/bin/gankernels}
OUT=${OUT:-runs/matrix}
STEPS=${STEPS:-2000}
DOCS=docs/training

# name: flags (every run: --data mnist --steps $STEPS --batch 64)
declare -A RUNS=(
  [dcgan-minimax]="--model dcgan --loss minimax --width 32"
  [dcgan-nonsaturating]="--model dcgan --loss nonsaturating --width 32"
  [dcgan-lsgan]="--model dcgan --loss lsgan --width 32"
  [dcgan-r1]="--model dcgan --loss r1 --width 32 --penalty-weight 10"
  [dcgan-r2]="--model dcgan --loss r2 --width 32 --penalty-weight 10"
  [dcgan-wgan]="--model dcgan --loss wgan --width 32"
  [dcgan-wgan-gp]="--model dcgan --loss wgan-gp --width 32"
  [dcgan-hinge-conditional]="--model dcgan --loss hinge --width 32 --n-critic 1 --conditional"
  [sngan-hinge]="--model sngan --loss hinge --width 16 --n-critic 1"
  [sngan-hinge-conditional]="--model sngan --loss hinge --width 16 --n-critic 1 --conditional"
  # The two conditional runs above ignore their noise; the mode-seeking term fights that.
  [dcgan-hinge-conditional-ms]="--model dcgan --loss hinge --width 32 --n-critic 1 --conditional --mode-seeking 1"
  [dcgan-hinge-conditional-ms02]="--model dcgan --loss hinge --width 32 --n-critic 1 --conditional --mode-seeking 0.2"
  [sngan-hinge-conditional-ms]="--model sngan --loss hinge --width 16 --n-critic 1 --conditional --mode-seeking 1"
  # R1 gamma from the StyleGAN2-ADA heuristic (then the default), then the gamma of 10 used
  # before that; lr 2e-3 (R1's, the paper's) was the default for all runs up to gw32 below.
  [stylegan2-r1]="--model stylegan2 --loss r1 --width 16 --penalty-weight 0.00245 --lr-g 2e-3 --lr-d 2e-3 --model-option g_output=linear"
  [stylegan2-r1-g10]="--model stylegan2 --loss r1 --width 16 --penalty-weight 10 --lr-g 2e-3 --lr-d 2e-3 --model-option g_output=linear"
  # The StyleGAN2 paper's learning rate (2e-3 above) collapses this small G on MNIST
  # within 500 steps; at a tenth of it the collapse comes later (see README.md).
  [stylegan2-r1-lr2e-4]="--model stylegan2 --loss r1 --width 16 --penalty-weight 10 --lr-g 2e-4 --lr-d 2e-4 --model-option g_output=linear"
  # G slower than D (two time scales): with the paper's rate on both, D cannot follow
  # G's moves and G drops its dependence on z (see README.md).
  [stylegan2-r1-glr2e-4]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.00245 --lr-g 2e-4 --lr-d 2e-3 --model-option g_output=linear"
  [stylegan2-r1-glr5e-4]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.00245 --lr-g 5e-4 --lr-d 2e-3 --model-option g_output=linear"
  # The runs above used the paper's linear output; tanh (the default now) keeps digits'
  # flat background without dropping z. Beside DCGAN + R1 for the same wall-clock time.
  [stylegan2-r1-3000]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.00245 --lr-g 2e-3 --lr-d 2e-3"
  [dcgan-r1-3000]="--steps 3000 --model dcgan --loss r1 --width 32 --penalty-weight 10"
  # R1 gamma above StyleGAN2-ADA's heuristic (0.00245 here).
  [stylegan2-r1-3000-g005]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.05 --lr-g 2e-3 --lr-d 2e-3"
  [stylegan2-r1-3000-g05]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.5 --lr-g 2e-3 --lr-d 2e-3"
  # Second seeds of the default and gamma 0.05, and gamma 0.05 with D twice as wide.
  [stylegan2-r1-3000-s1]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.00245 --lr-g 2e-3 --lr-d 2e-3 --seed 1"
  [stylegan2-r1-3000-g005-s1]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.05 --lr-g 2e-3 --lr-d 2e-3 --seed 1"
  [stylegan2-r1-3000-g005-dw32]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.05 --lr-g 2e-3 --lr-d 2e-3 --model-option d_width=32"
  # A G twice as wide (D stays at 16).
  [stylegan2-r1-3000-gw32]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.00245 --lr-g 2e-3 --lr-d 2e-3 --model-option g_width=32"
  # All of the above trained G and D at R1's 2e-3 (the paper's). Equalised-lr weights are
  # ~N(0, 1), so an Adam step moves them by ~lr of their size: faster rates, with FID on
  # 1000 samples every 500 steps in the logs. 2e-2 with gamma 0.05 is the default now.
  [stylegan2-r1-3000-lr5e-3]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.05 --lr-g 5e-3 --lr-d 5e-3 --eval-every 500"
  [stylegan2-r1-3000-lr1e-2]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.05 --lr-g 1e-2 --lr-d 1e-2 --eval-every 500"
  [stylegan2-r1-3000-lr1e-2-g00245]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.00245 --lr-g 1e-2 --lr-d 1e-2 --eval-every 500"
  [stylegan2-r1-3000-lr2e-2]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.05 --lr-g 2e-2 --lr-d 2e-2 --eval-every 500"
  [stylegan2-r1-3000-lr2e-2-s1]="--steps 3000 --model stylegan2 --loss r1 --width 16 --penalty-weight 0.05 --lr-g 2e-2 --lr-d 2e-2 --eval-every 500 --seed 1"
  # The defaults alone (lr 2e-2, gamma 0.004 x 28^2 / 64 = 0.049), a third seed.
  [stylegan2-r1-3000-defaults-s2]="--steps 3000 --model stylegan2 --width 16 --eval-every 500 --seed 2"
  # Width 64 (the model's own default; two threads, alone): 2e-2 collapses, 1e-2 (the
  # default there now: 2e-2 * sqrt(16 / width)) trains. 1000 steps each.
  [stylegan2-r1-1000-w64-lr2e-2]="--steps 1000 --model stylegan2 --width 64 --lr-g 2e-2 --lr-d 2e-2 --eval-every 500"
  [stylegan2-r1-1000-w64]="--steps 1000 --model stylegan2 --width 64 --lr-g 1e-2 --lr-d 1e-2 --eval-every 250"
  # DCGAN + R1 for longer than those take, to compare FID at equal training time
  # (python docs/training/fid_vs_time.py dcgan-r1-15000 stylegan2-r1-3000-lr2e-2 ...).
  [dcgan-r1-15000]="--steps 15000 --model dcgan --loss r1 --width 32 --penalty-weight 10 --eval-every 500"
)
# Longest first, so that the two queues finish together.
ORDER=(dcgan-wgan-gp dcgan-wgan sngan-hinge-conditional sngan-hinge sngan-hinge-conditional-ms
       stylegan2-r1 stylegan2-r1-g10 stylegan2-r1-lr2e-4 stylegan2-r1-glr2e-4 stylegan2-r1-glr5e-4 stylegan2-r1-3000 dcgan-r1-3000 stylegan2-r1-3000-g005 stylegan2-r1-3000-g05 stylegan2-r1-3000-gw32 stylegan2-r1-3000-s1 stylegan2-r1-3000-g005-s1 stylegan2-r1-3000-g005-dw32 stylegan2-r1-3000-lr5e-3 stylegan2-r1-3000-lr1e-2 stylegan2-r1-3000-lr1e-2-g00245 stylegan2-r1-3000-lr2e-2 stylegan2-r1-3000-lr2e-2-s1 stylegan2-r1-3000-defaults-s2 stylegan2-r1-1000-w64-lr2e-2 stylegan2-r1-1000-w64 dcgan-r1-15000 dcgan-hinge-conditional dcgan-hinge-conditional-ms dcgan-hinge-conditional-ms02 dcgan-minimax dcgan-nonsaturating dcgan-lsgan dcgan-r1 dcgan-r2)

if [ "${1:-}" = "--one" ]; then
  name=$2
  [ -n "${RUNS[$name]+x}" ] || { echo "unknown run $name; known: ${!RUNS[*]}"; exit 2; }
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 $GK train --data mnist --steps "$STEPS" --batch 64 --no-progress --overwrite \
    --out "$OUT/$name" ${RUNS[$name]} > "$OUT/$name.log" 2>&1 || { echo "FAILED $name"; exit 1; }
  cp "$OUT/$name/samples.png" "$DOCS/$name.png"
  cp "$OUT/$name/log.csv" "$DOCS/$name.csv"
  OMP_NUM_THREADS=1 $GK eval --ckpt "$OUT/$name/last.pt" --data mnist --n 10000 --no-progress \
    --json "$DOCS/$name.eval.json" > "$OUT/$name.eval.log" 2>&1 || { echo "FAILED eval $name"; exit 1; }
  echo "$name: $(grep images/s "$OUT/$name.log")"
  exit 0
fi

mkdir -p "$OUT"
if [ $# -gt 0 ]; then names=("$@"); else names=("${ORDER[@]}"); fi
printf '%s\n' "${names[@]}" | xargs -P "${JOBS:-2}" -n 1 bash "$0" --one
