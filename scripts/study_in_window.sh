#!/usr/bin/env bash
# The three-seed study (scripts/study_seeds.sh) inside a fixed time window, e.g. a batch job with
# a wall-clock limit: restores the state an earlier window left, runs the study until LIMIT
# seconds, and packs small result files plus the resumable state (base models, checkpoints,
# tables) for the next window. Optionally runs one co-design beside it on the same GPU.
#
#   LIMIT=540 DATA_ROOT=/data/fashion-mnist RESULTS=/tmp/out STATE=/tmp/state bash scripts/study_in_window.sh
#
# Knobs (env): LIMIT (s), DATA_ROOT, RESULTS (where r20.tgz, cd.tgz and state.tgz.part-* go),
# STATE (a folder holding state.tgz.part-* from the last window, if any), SEEDS, SCHEDULE,
# EPOCHS_BASE, EPOCHS_SEARCH, EPOCHS_FT, CODESIGN (1: also run the co-design), CD_SEARCH, CD_FT.
set -u
LIMIT=${LIMIT:-520}
DATA_ROOT=${DATA_ROOT:-/usr/share/datasets/fashion-mnist}
RESULTS=${RESULTS:?set RESULTS to a folder for the archives}
STATE=${STATE:-}
WORK=${WORK:-/tmp/study-window}
T0=$SECONDS
export PYTHONUNBUFFERED=1
mkdir -p "$RESULTS" "$WORK"
if [ -n "$STATE" ] && ls "$STATE"/state.tgz.part-* >/dev/null 2>&1; then
  cat "$STATE"/state.tgz.part-* | tar xzf - -C "$WORK" && echo "state restored: $(du -sh "$WORK/r20" | cut -f1)"
fi
STUDY_S=$((LIMIT - 45))
timeout -k 15 $STUDY_S env OUT="$WORK/r20" MODEL=resnet20 SEEDS="${SEEDS:-0 1 2}" MPS=1 SCHEDULE=${SCHEDULE:-auto} \
  DATA_ROOT="$DATA_ROOT" EPOCHS_BASE=${EPOCHS_BASE:-30} EPOCHS_SEARCH=${EPOCHS_SEARCH:-12} WARMUP_EPOCHS=2 \
  EPOCHS_FT=${EPOCHS_FT:-30} LR_ALPHA=0.1 TAU_FINAL=0.3 STOP_ENTROPY=0.2 bash scripts/study_seeds.sh \
  > "$WORK/study.log" 2>&1 &
study=$!
if [ "${CODESIGN:-1}" = 1 ]; then
  ( while [ ! -e "$WORK/r20/s0/base/model.pt" ] && [ $((SECONDS - T0)) -lt $STUDY_S ]; do sleep 5; done
    [ -e "$WORK/r20/s0/base/model.pt" ] && timeout $((STUDY_S - (SECONDS - T0))) "${PY:-python3}" -m haloc_hw.cli codesign \
      --space spaces/eyeriss.yaml --model resnet20 --data fashion-mnist --data-root "$DATA_ROOT" \
      --base "$WORK/r20/s0/base" --haloc-candidates 1 --epochs-search ${CD_SEARCH:-6} --warmup-epochs 1 \
      --epochs-finetune ${CD_FT:-10} --batch 256 --device cuda --jobs 8 --out "$WORK/cd" > "$WORK/cd.log" 2>&1
    echo "codesign rc=$?" >> "$WORK/cd.log" ) &
fi
wait $study; echo "study rc=$?"
wait
cat "$WORK/r20/logs/steps.txt" 2>/dev/null; tail -5 "$WORK/cd.log" 2>/dev/null
cp "$WORK/study.log" "$WORK/r20/logs/" 2>/dev/null; cp "$WORK/cd.log" "$WORK/cd/" 2>/dev/null
tar czf "$RESULTS/r20.tgz" -C "$WORK" --exclude='*.pt' --exclude='*.sqlite*' --exclude='*.onnx' r20
[ -d "$WORK/cd" ] && tar czf "$RESULTS/cd.tgz" -C "$WORK" --exclude='*.pt' --exclude='*.onnx' --exclude='cache' cd
tar czf "$WORK/state.tgz" -C "$WORK" --exclude='*.onnx' r20 && split -b 15M "$WORK/state.tgz" "$RESULTS/state.tgz.part-"
ls -la "$RESULTS"; echo "wall $((SECONDS - T0)) s"
