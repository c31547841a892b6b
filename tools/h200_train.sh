#!/usr/bin/env bash
# How the shipped weights (pretrained/) were trained: Keras 3 on JAX on one
# NVIDIA H200 (16 CPU cores), a machine without TensorFlow or a package
# registry; keras, namex, optree and rich travel as wheels in .whl/.
#
# From the repository root on the GPU machine:
#   bash tools/h200_train.sh start OUT          install, make the demo's frames, start both
#                                               trainings in the background (SHN on the stream,
#                                               then the SMPLR stages beside it)
#   bash tools/h200_train.sh watch OUT SECONDS  follow the runs for SECONDS, then copy the
#                                               checkpoints (split into 15 MB parts), the logs
#                                               and the TensorBoard events into OUT
# Settings: the variables below (SHN_EPOCHS, SHN_STEPS, ...) or the environment;
# SMPLR_STAGES=0 trains the SHN alone; SHN_FROM_PRETRAINED=1 starts the SHN from
# pretrained/checkpoints/shn (--finetune), e.g. to continue the shipped run;
# EXPORT_SLOTS="best latest" (default best) says which SHN slots watch copies out
# (35 MB in 3 parts each; a call returns at most 64 MiB, so one slot per call).
# The device machine is given back ~30 s after a call returns, and the background
# training with it: issue the next watch call at once.
set -uo pipefail
mode=${1:?start or watch}
OUT=${2:?output folder}
RUN=${RUN:-/tmp/smplr_run}
SHN_EPOCHS=${SHN_EPOCHS:-30}
SHN_STEPS=${SHN_STEPS:-500}
SHN_WORKERS=${SHN_WORKERS:-13}
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
mkdir -p "$OUT" "$RUN"

if [ "$mode" = start ]; then
  if [ ! -d /tmp/site/keras ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  fi
  nvidia-smi -L
  # The demo's frames (make demo: 8 sequences x 25 frames, seed 0): validation of every stage.
  [ -f "$RUN/frames/val.txt" ] || python3 -m DataReader.synthesize --out "$RUN/frames" --sequences 8 --frames 25 \
      --seed 0 --quiet || exit 1
  width=$(python3 -c "print(12.5 * $SHN_EPOCHS / 200)")
  finetune=""
  if [ "${SHN_FROM_PRETRAINED:-0}" = 1 ]; then
    mkdir -p "$RUN/tmp/checkpoints/shn_pretrained"
    cp -r pretrained/checkpoints/shn/best "$RUN/tmp/checkpoints/shn_pretrained/" || exit 1
    finetune="--finetune shn_pretrained"
  fi
  # The SHN: fast recipe, endless synthetic stream, bfloat16; 75% of the GPU's memory.
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.75 setsid nohup python3 -m training shn 0 --recipe fast --stream \
      --mixed-precision --data "$RUN/frames" --tmp "$RUN/tmp" --epochs "$SHN_EPOCHS" --steps "$SHN_STEPS" \
      --lr-width "$width" --train-check-batches 4 --bn-recalibrate 5 --workers "$SHN_WORKERS" \
      --log-every 100 $finetune ${SHN_EXTRA:-} > "$RUN/shn.log" 2>&1 < /dev/null &
  # The SMPLR stages on the demo's training points + bodies drawn from the body model.
  [ "${SMPLR_STAGES:-1}" = 1 ] && XLA_PYTHON_CLIENT_MEM_FRACTION=0.15 setsid nohup bash -c "
    set -e
    common='--data $RUN/frames --tmp $RUN/tmp --synthetic 200000 --synthetic-bodies model --lr 0.003 --steps 400'
    python3 -m training dae 0 \$common --dae-dropout 0 --epochs 20 --lr-width 1.25
    python3 -m training shape 0 \$common --epochs 20 --lr-width 1.25
    python3 -m training pose 0 \$common --epochs 20 --lr-width 1.25
    python3 -m training shapepose 0 --data $RUN/frames --tmp $RUN/tmp --synthetic 50000 --synthetic-bodies model \
        --finetune shape pose --name smplr --steps 400 --epochs 6 --lr-width 0.25
  " > "$RUN/smplr.log" 2>&1 < /dev/null &
  touch "$RUN/smplr.log"
  sleep 5
  echo "started: $RUN/shn.log, $RUN/smplr.log"
  exit 0
fi

# watch: show progress until SECONDS have passed, then copy what exists.
seconds=${3:-300}
end=$(( $(date +%s) + seconds ))
while [ "$(date +%s)" -lt "$end" ]; do
  sleep 30
  echo "== $(date +%T)"
  tr '\r' '\n' < "$RUN/shn.log" | grep -E "epoch|error|Error|SHN:|stream" | tail -3
  tr '\r' '\n' < "$RUN/smplr.log" | grep -E "epoch|error|Error|finished" | tail -2
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  # Nothing left to follow: both trainings have ended.
  pgrep -f "python3 -m training" > /dev/null || { echo "no training running"; break; }
done
mkdir -p "$RUN/logs_out"
tr '\r' '\n' < "$RUN/shn.log" | grep -v "^\s*$" | grep -v "step/s\]$" > "$RUN/logs_out/shn.log"
tr '\r' '\n' < "$RUN/smplr.log" | grep -v "^\s*$" | grep -v "step/s\]$" > "$RUN/logs_out/smplr.log"
grep "epoch" "$RUN/logs_out/shn.log" | tail -4
# The SHN slots of EXPORT_SLOTS (default best; latest = the end of the learning-rate
# schedule) as float16 weights (35 MB each, split into 15 MB parts), read on the CPU
# so as not to touch the training process's GPU memory.
rm -rf "$RUN/export"
slots="${EXPORT_SLOTS:-best}"
JAX_PLATFORMS=cpu python3 - "$RUN" $slots <<'PY'
import sys
from models import SHN
from training.checkpoints import CheckpointStore
run, slots = sys.argv[1], sys.argv[2:]
store = CheckpointStore(f"{run}/tmp", "shn")
for slot in slots:
    if not store.has(slot):
        print(f"no {slot} slot in {store.dir}: nothing exported for it")
        continue
    state = store.read_state(slot)
    shn = SHN(num_stacks=state["config"]["num_stacks"], num_features=state["config"]["num_features"])
    shn.build((1, 256, 256, 3))
    store.restore(slot, {"shn": shn})
    CheckpointStore(f"{run}/export", "shn").save(slot, {"shn": shn}, state, weights_dtype="float16")
    print(f"exported the SHN's {slot} slot: epochs done", state.get("epochs_done"), "best epoch", state.get("best_epoch"))
PY
for slot in $slots; do
  [ -d "$RUN/export/checkpoints/shn/$slot" ] && tar cf - -C "$RUN/export/checkpoints" "shn/$slot" | split -b 15M - "$OUT/shn_$slot.tar.part_"
done
names=$(cd "$RUN/tmp/checkpoints" 2>/dev/null && ls -d dae/best shape/best pose/best smplr/best 2>/dev/null)
[ -n "$names" ] && tar czf "$OUT/smplr_stages.tgz" -C "$RUN/tmp/checkpoints" $names
rm -rf "$RUN/logs_out/tensorboard"; cp -r "$RUN/tmp/logs" "$RUN/logs_out/tensorboard" 2>/dev/null
tar czf "$OUT/logs.tgz" -C "$RUN/logs_out" .
ls -la "$OUT"
