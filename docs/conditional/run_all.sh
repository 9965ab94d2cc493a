#!/usr/bin/env bash
# Trains the conditional generators on the CPU: a class label, a caption and a spoken
# digit, each through the same G (conditional batch norm) and the same matching-aware
# projection D; scores each with `gankernels eval` (10000 samples: FID, precision /
# recall, and the condition's fidelity) and collects the grids (one row per condition),
# logs and scores shown in docs/conditional/README.md (python docs/conditional/summarize.py).
#
#   bash docs/conditional/run_all.sh                 # all runs, two at a time, one thread each
#   bash docs/conditional/run_all.sh dcgan-label     # only these
set -euo pipefail
cd "$(dirname "$0")/../.."
GK=${GK:-.venv/bin/gankernels}
OUT=${OUT:-runs/conditional}
DOCS=docs/conditional

# name: flags of `gankernels train` (defaults for everything not named)
declare -A RUNS=(
  # the targets' commands: default flags (R1 gamma 0.0002 * 28^2 / 64 = 0.00245)
  [dcgan-label]="--model dcgan --conditional --data mnist --steps 3000"
  # SNGAN + R1 defaults: width 32, lr G 2e-4, D 8e-4 (the recipe of sngan-label-w32-ttur)
  [sngan-label]="--model sngan --conditional --data mnist --steps 6000"
  # SNGAN at width 32: R1 at lr 2e-4 (at R1's 2e-3 its D stops learning), and hinge
  [sngan-label-w32-lr2e-4]="--model sngan --conditional --data mnist --steps 3000 --width 32 --lr-g 2e-4 --lr-d 2e-4"
  # two time-scale: D at 4x G's rate (spectral norm shrinks its Adam steps, see findings)
  [sngan-label-w32-ttur]="--model sngan --conditional --data mnist --steps 3000 --width 32 --lr-g 2e-4 --lr-d 8e-4"
  [sngan-label-w32-ttur-6k]="--model sngan --conditional --data mnist --steps 6000 --width 32 --lr-g 2e-4 --lr-d 8e-4"
  [sngan-label-w32-hinge]="--model sngan --conditional --data mnist --steps 3000 --width 32 --loss hinge --n-critic 1"
  [sngan-label-w32-lr2e-4-ms02]="--model sngan --conditional --data mnist --steps 3000 --width 32 --lr-g 2e-4 --lr-d 2e-4 --mode-seeking 0.2"
  [dcgan-text]="--model dcgan --condition text --data fashion-mnist:captions --steps 3000"
  [dcgan-sound]="--model dcgan --condition sound --data mnist --steps 3000"
  # width 32 (a quarter of the default's convolution work, for the CPU)
  [dcgan-text-w32]="--model dcgan --condition text --data fashion-mnist:captions --steps 3000 --width 32"
  [dcgan-sound-w32]="--model dcgan --condition sound --data mnist --steps 3000 --width 32"
  [dcgan-text-emoji]="--model dcgan --condition text --data emoji:captions --steps 3000 --width 32"
  # R1 gamma 10, the default before (these runs were made under it)
  [dcgan-label-g10]="--model dcgan --conditional --data mnist --steps 3000 --penalty-weight 10"
  [dcgan-text-g10]="--model dcgan --condition text --data fashion-mnist:captions --steps 3000 --penalty-weight 10"
  [dcgan-sound-g10]="--model dcgan --condition sound --data mnist --steps 3000 --penalty-weight 10"
  [dcgan-text-w32-g10]="--model dcgan --condition text --data fashion-mnist:captions --steps 3000 --width 32 --penalty-weight 10"
  [dcgan-sound-w32-g10]="--model dcgan --condition sound --data mnist --steps 3000 --width 32 --penalty-weight 10"
  # the mode-seeking term: recall for label fidelity
  [dcgan-label-ms02]="--model dcgan --conditional --data mnist --steps 3000 --mode-seeking 0.2 --penalty-weight 10"
  # the sound encoder trained from scratch through D
  [dcgan-sound-scratch]="--model dcgan --condition sound --data mnist --steps 3000 --width 32 --sound-encoder scratch --penalty-weight 10"
  # the classic input (label embedding beside z), and D without mismatched negatives
  [dcgan-label-concat]="--model dcgan --conditional --data mnist --steps 3000 --model-option g_cond=concat"
  [dcgan-label-nomatch]="--model dcgan --conditional --data mnist --steps 3000 --no-matching"
)
ORDER=(sngan-label dcgan-text dcgan-label dcgan-sound dcgan-text-w32 dcgan-sound-w32
       dcgan-text-emoji dcgan-label-concat dcgan-label-nomatch)

if [ "${1:-}" = "--one" ]; then
  name=$2
  [ -n "${RUNS[$name]+x}" ] || { echo "unknown run $name; known: ${!RUNS[*]}"; exit 2; }
  export OMP_NUM_THREADS=1
  # shellcheck disable=SC2086
  $GK train ${RUNS[$name]} --no-progress --overwrite --out "$OUT/$name" \
    > "$OUT/$name.log" 2>&1 || { echo "FAILED $name"; exit 1; }
  cp "$OUT/$name/samples.png" "$DOCS/$name.png"
  cp "$OUT/$name/log.csv" "$DOCS/$name.csv"
  $GK eval --ckpt "$OUT/$name/last.pt" --n 10000 --no-progress \
    --json "$DOCS/$name.eval.json" > "$OUT/$name.eval.log" 2>&1 || { echo "FAILED eval $name"; exit 1; }
  echo "$name: $(grep images/s "$OUT/$name.log")"
  exit 0
fi

mkdir -p "$OUT"
if [ $# -gt 0 ]; then names=("$@"); else names=("${ORDER[@]}"); fi
printf '%s\n' "${names[@]}" | xargs -P "${JOBS:-2}" -n 1 bash "$0" --one
