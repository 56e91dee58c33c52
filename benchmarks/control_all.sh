#!/usr/bin/env bash
# The whole control study on one CPU core, in order; each stage is skipped when its output exists, and
# training resumes from runs/control/. Usage: bash benchmarks/control_all.sh [steps per model]
set -euo pipefail
STEPS=${1:-300}
export OMP_NUM_THREADS=1
PY=${PY:-python}
train() {  # kind folder
  [ -f "controlnets/$2/config.json" ] || $PY samples/train_control.py "$1" --steps "$STEPS"
}
train relevance fashion-pixart-relevance12-edges
train controlnet fashion-pixart-controlnet-edges
[ -f docs/control_relevance.json ] || $PY -m benchmarks.control_relevance
train relactrl fashion-pixart-relactrl-edges
train uniform fashion-pixart-tdsm-uniform-edges
[ -f docs/control_table.json ] || $PY -m benchmarks.control_table
echo "control study done"
