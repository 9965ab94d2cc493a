#!/usr/bin/env bash
# Trains pix2pix and CycleGAN on the offline translation data sets on the CPU, scores
# each on its held-out pairs (gankernels eval: L1, PSNR, SSIM, FID/KID on Inception
# features) next to the identity baseline, and collects the grids, logs and scores shown
# in docs/translation/README.md (python docs/translation/summarize.py writes it).
#
#   bash docs/translation/run_all.sh                 # all runs, two at a time, one thread each
#   bash docs/translation/run_all.sh p2p-shoes       # only these
set -euo pipefail
cd "$(dirname "$0")/../.."
GK=${GK:-.venv/bin/gankernels}
OUT=${OUT:-runs/translation}
DOCS=docs/translation
EVAL_N=${EVAL_N:-1000}  # held-out pairs scored per run (all of them when fewer)

# name: flags of `gankernels train` ("identity": no training, the input scored as output)
declare -A RUNS=(
  [p2p-shoes]="--model pix2pix --data edges2fashion:shoes --image-size 32 --width 32 --batch 16 --steps 3000"
  # pix2pix with the GAN term off: the L1-only U-Net of the paper's comparison
  [p2p-shoes-l1]="--model pix2pix --data edges2fashion:shoes --image-size 32 --width 32 --batch 16 --steps 3000 --gan-weight 0"
  [identity-shoes]="identity --data edges2fashion:shoes --image-size 32"
  [p2p-emoji]="--model pix2pix --data emoji:google2twitter --image-size 32 --width 32 --batch 8 --steps 2500"
  [p2p-emoji-l1]="--model pix2pix --data emoji:google2twitter --image-size 32 --width 32 --batch 8 --steps 2500 --gan-weight 0"
  # the same pairs as two unpaired sets: the true pairs only score the result
  [cyclegan-emoji]="--model cyclegan --data emoji:google2twitter --image-size 32 --width 16 --batch 4 --steps 8000"
  [cyclegan-emoji-2k]="--model cyclegan --data emoji:google2twitter --image-size 32 --width 16 --batch 4 --steps 2000"
  # nearest upsampling and a conv in G instead of the transposed convs (no checkerboard)
  [cyclegan-emoji-nearest]="--model cyclegan --data emoji:google2twitter --image-size 32 --width 16 --batch 4 --steps 8000 --model-option g_upsample=nearest"
  # the identity term as strong as the cycle term: flat Twitter drawings stay flat
  [cyclegan-emoji-id10]="--model cyclegan --data emoji:google2twitter --image-size 32 --width 16 --batch 4 --steps 8000 --model-option g_upsample=nearest --identity-weight 10"
  # the same, 12000 steps: does SSIM keep rising past 8000 steps? (it does not: findings)
  [cyclegan-emoji-id10-12k]="--model cyclegan --data emoji:google2twitter --image-size 32 --width 16 --batch 4 --steps 12000 --model-option g_upsample=nearest --identity-weight 10"
  # a discriminator four times as wide (64 channels, the paper's; G stays at 16): a
  # 16-channel PatchGAN is easily fooled by fine texture
  [cyclegan-emoji-d64]="--model cyclegan --data emoji:google2twitter --image-size 32 --width 16 --batch 4 --steps 8000 --model-option g_upsample=nearest --model-option d_width=64 --identity-weight 10"
  # the same with a second stride-2 layer: each logit sees the whole 32 px image
  [cyclegan-emoji-d64-l2]="--model cyclegan --data emoji:google2twitter --image-size 32 --width 16 --batch 4 --steps 8000 --model-option g_upsample=nearest --model-option d_width=64 --model-option d_layers=2 --identity-weight 10"
  # the same without instance norm in the discriminators
  [cyclegan-emoji-d64-l2-dnone]="--model cyclegan --data emoji:google2twitter --image-size 32 --width 16 --batch 4 --steps 8000 --model-option g_upsample=nearest --model-option d_width=64 --model-option d_layers=2 --model-option d_norm=none --identity-weight 10"
  # the same recipe with another seed: how far the scores move between two runs
  [cyclegan-emoji-d64-l2-dnone-s1]="--model cyclegan --data emoji:google2twitter --image-size 32 --width 16 --batch 4 --steps 8000 --model-option g_upsample=nearest --model-option d_width=64 --model-option d_layers=2 --model-option d_norm=none --identity-weight 10 --seed 1"
  [identity-emoji]="identity --data emoji:google2twitter --image-size 32"
)
# Fashion-MNIST pairs are also scored on our Fashion-MNIST classifier's features: the
# Inception network sees these 32 px grey images only after a 9x upsampling.
SHOES_FEATURES="--extractor fashion"
ORDER=(cyclegan-emoji cyclegan-emoji-2k cyclegan-emoji-nearest cyclegan-emoji-id10 cyclegan-emoji-id10-12k cyclegan-emoji-d64 cyclegan-emoji-d64-l2 cyclegan-emoji-d64-l2-dnone cyclegan-emoji-d64-l2-dnone-s1 p2p-shoes p2p-shoes-l1 p2p-emoji p2p-emoji-l1 identity-shoes identity-emoji)

if [ "${1:-}" = "--one" ]; then
  name=$2
  [ -n "${RUNS[$name]+x}" ] || { echo "unknown run $name; known: ${!RUNS[*]}"; exit 2; }
  flags=${RUNS[$name]}
  export OMP_NUM_THREADS=1
  if [[ $flags == identity* ]]; then
    # shellcheck disable=SC2086
    $GK eval --identity ${flags#identity} --n "$EVAL_N" --no-progress \
      --json "$DOCS/$name.eval.json" > "$OUT/$name.eval.log" 2>&1 || { echo "FAILED $name"; exit 1; }
    if [[ $name == *shoes* ]]; then
      # shellcheck disable=SC2086
      $GK eval --identity ${flags#identity} --n "$EVAL_N" --no-progress $SHOES_FEATURES \
        --json "$DOCS/$name.fashion.eval.json" >> "$OUT/$name.eval.log" 2>&1
    fi
    echo "$name: scored"
    exit 0
  fi
  # shellcheck disable=SC2086
  $GK train $flags --no-progress --overwrite --sample-every 1000 --out "$OUT/$name" \
    > "$OUT/$name.log" 2>&1 || { echo "FAILED $name"; exit 1; }
  cp "$OUT/$name/samples.png" "$DOCS/$name.png"
  cp "$OUT/$name/losses.png" "$DOCS/$name.losses.png"
  cp "$OUT/$name/log.csv" "$DOCS/$name.csv"
  $GK eval --ckpt "$OUT/$name/last.pt" --n "$EVAL_N" --no-progress \
    --json "$DOCS/$name.eval.json" > "$OUT/$name.eval.log" 2>&1 || { echo "FAILED eval $name"; exit 1; }
  if [[ $name == *shoes* ]]; then
    # shellcheck disable=SC2086
    $GK eval --ckpt "$OUT/$name/last.pt" --n "$EVAL_N" --no-progress $SHOES_FEATURES \
      --json "$DOCS/$name.fashion.eval.json" >> "$OUT/$name.eval.log" 2>&1
  fi
  echo "$name: $(grep images/s "$OUT/$name.log")"
  exit 0
fi

mkdir -p "$OUT"
if [ $# -gt 0 ]; then names=("$@"); else names=("${ORDER[@]}"); fi
printf '%s\n' "${names[@]}" | xargs -P "${JOBS:-2}" -n 1 bash "$0" --one
