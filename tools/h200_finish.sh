#!/usr/bin/env bash
# After an SHN run of tools/h200_train.sh (its last `watch` exported the latest slot
# into RUN/export with EXPORT_SLOTS=latest), on the same GPU machine:
#   1. re-estimate the SHN's batch-norm statistics on 4,096 stream frames
#      (tools/recalibrate_bn.py; the shipped SHN's statistics come from here),
#   2. write the error bank of that SHN (tools/shn_error_bank.py): 30,000 frames in
#      the demo's look (seed 777) + 30,000 with loose garments and varied cameras (seed 778),
#   3. put the re-estimated SHN (15 MB parts) and both banks into OUT, in place of the
#      exported latest slot (a call returns at most 8 files).
#   bash tools/h200_finish.sh OUT
# ~4 minutes on one H200. The banks feed --error-bank of the SMPLR stages (README).
set -euo pipefail
OUT=${1:?output folder}
RUN=${RUN:-/tmp/smplr_run}
WORKERS=${SHN_WORKERS:-15}
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
src=/tmp/bn_src dst=/tmp/bn_dst
rm -rf "$src" "$dst"
mkdir -p "$src/checkpoints/shn"
cp -r "$RUN/export/checkpoints/shn/latest" "$src/checkpoints/shn/best"
python3 tools/recalibrate_bn.py 0 "$src" shn "$dst" --stream --batches 128 --batch-size 32 \
    --weights-dtype float16 --workers "$WORKERS"
rm -f "$OUT"/shn_latest.tar.part_*
tar cf - -C "$dst/checkpoints" shn/best | split -b 15M - "$OUT/shn_recalibrated.tar.part_"
python3 tools/shn_error_bank.py 0 shn --tmp "$dst" --out "$OUT/bank_tight.npz" --frames 30000 --seconds "${BANK_SECONDS:-600}" \
    --seed 777 --batch-size 64 --workers "$WORKERS"
python3 tools/shn_error_bank.py 0 shn --tmp "$dst" --out "$OUT/bank_loose.npz" --frames 30000 --seconds "${BANK_SECONDS:-600}" \
    --seed 778 --garments loose --cameras varied --batch-size 64 --workers "$WORKERS"
ls -la "$OUT"
