#!/usr/bin/env bash
# Tuned plans for the peer grid (issue #12): one plan per model x step count x budget, tuned on calibration
# prompts that the grid never evaluates. Usage: bash benchmarks/tune_plans.sh fashion-sd [20 50]
set -euo pipefail
model=$1; shift
steps=${*:-20 50}
prompts=(--prompt "a photo of a t-shirt" --prompt "a pair of trousers, product shot" --prompt "a pullover on white"
         --prompt "a dress, studio photo" --prompt "a photo of a coat" --prompt "a sandal, catalogue image"
         --prompt "a photo of a sneaker" --prompt "a bag on white")
for s in $steps; do
  for b in 0.5 0.35; do
    out=benchmarks/plans/$model-$s-$b.json
    [ -e "$out" ] && continue
    diffskip tune --threads 1 --model "$model" --steps "$s" --budget "$b" "${prompts[@]}" --no-jumps --out "$out"
  done
done
