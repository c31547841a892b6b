#!/usr/bin/env bash
# The default run (`make demo`): synthetic data on the embedded body model,
# the whole training chain in its quick setting, then the evaluation.
# Usage: tools/demo.sh PYTHON DATA_DIR GPU_ID
# A second run reuses the data and the trained checkpoints (delete Data/frames
# or tmp/checkpoints to start over) and refreshes tmp/results/smplr.
set -euo pipefail
PY=${1:-.venv/bin/python}
DATA=${2:-Data/frames}
GPU=${3:--1}
cd "$(dirname "$0")/.."
start=$(date +%s)

if [ ! -f "$DATA/train.txt" ]; then
  echo "== Generating synthetic CLOTH3D-format data in $DATA"
  "$PY" -m DataReader.synthesize --out "$DATA" --sequences 8 --frames 25 --seed 0
else
  echo "== Using the data in $DATA"
fi

if [ -f pretrained/checkpoints/shn/best/state.json ]; then
  echo "== The PRETRAINED chain (pretrained/, trained on the H200 on generated frames) on $DATA/val.txt"
  "$PY" test.py "$GPU" pretrained pretrained pretrained --data "$DATA" --list val.txt --out pretrained --overwrite
  echo "   (figures above: the shipped pretrained weights; results in tmp/results/pretrained)"
fi

if [ -d tmp/checkpoints/smplr ]; then
  echo "== Checkpoints found in tmp/checkpoints; skipping training (delete them to retrain)"
else
  echo "== Training every stage (quick setting) on $DATA"
  resume=()
  if [ -n "$(ls -A tmp/checkpoints 2>/dev/null)" ]; then resume=(--resume); fi
  "$PY" train_all.py "$GPU" --data "$DATA" --quick "${resume[@]}"
fi

echo "== The QUICK chain just trained (shows that training works; not an accuracy figure) on $DATA/val.txt"
"$PY" test.py "$GPU" shn dae smplr --data "$DATA" --list val.txt --overwrite

echo
echo "Finished in $(( $(date +%s) - start )) s."
echo "Results:     tmp/results/pretrained/ (the shipped weights) and tmp/results/smplr/ (the quick chain):"
echo "             summary.json, group_errors.png, overlay PNGs, per-batch .npz"
echo "Checkpoints: tmp/checkpoints/{shn,dae,shape,pose,smplr}"
echo "TensorBoard: $PY -m tensorboard.main --logdir tmp/logs   (then open http://localhost:6006)"
