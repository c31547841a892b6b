#!/usr/bin/env bash
# The default run (`make demo`): synthetic data on the embedded body model,
# the whole training chain in its quick setting, then the evaluation.
# Usage: tools/demo.sh PYTHON DATA_DIR GPU_ID
set -euo pipefail
PY=${1:-.venv/bin/python}
DATA=${2:-Data/frames}
GPU=${3:--1}
cd "$(dirname "$0")/.."

if [ ! -f "$DATA/train.txt" ]; then
  echo "== Generating synthetic CLOTH3D-format data in $DATA"
  "$PY" -m DataReader.synthesize --out "$DATA" --sequences 8 --frames 25 --seed 0
fi

echo "== Training every stage (quick setting) on $DATA"
"$PY" train_all.py "$GPU" --data "$DATA" --quick

echo "== Evaluating SHN + DAE + SMPLR on $DATA/val.txt"
"$PY" test.py "$GPU" SHN DAE SMPLR --data "$DATA" --list val.txt

echo
echo "Results:     tmp/results/SMPLR/ (summary.json, per-group bar chart, overlays)"
echo "Checkpoints: tmp/checkpoints/"
echo "TensorBoard: $PY -m tensorboard.main --logdir tmp/logs"
