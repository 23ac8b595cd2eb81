#!/usr/bin/env bash
# The three-seed study of docs/RESULTS.md section 7: per seed a base model, HALOC and the uniform,
# VBMF, greedy and ALDS baselines at the same Eyeriss energy budget, every method fine-tuned with
# the same recipe (and the same distillation from the base). All runs of all seeds share one GPU.
#
#   OUT=runs/seeds MODEL=resnet20 SEEDS="0 1 2" bash scripts/study_seeds.sh            # CUDA machine
#   OUT=/tmp/dry DEVICE=cpu SUBSET=300 EPOCHS_BASE=1 EPOCHS_SEARCH=2 WARMUP_EPOCHS=1 EPOCHS_FT=1 \
#       SEEDS="0 1" bash scripts/study_seeds.sh                                          # plumbing dry run
#
# The baselines run at the same budget fraction as HALOC and at the same time (HALOC's
# --decode expected lands within a fraction of a percent of its budget, the allocators at or
# below it; metrics.json records each run's energy). Knobs (env): MODEL, SEEDS (distinct),
# BUDGET, DATA_ROOT, DEVICE, BATCH, SUBSET, EPOCHS_BASE, EPOCHS_SEARCH, WARMUP_EPOCHS, EPOCHS_FT,
# LR_ALPHA, TAU_FINAL, STOP_ENTROPY, PENALTY, DISTILL ("T,alpha" or empty), METHODS, STEP, PY,
# ARCH_STEPS (per-val-batch | per-train-batch), MPS (1: start the CUDA MPS daemon so the runs'
# kernels share the GPU instead of taking turns), SCHEDULE (all: every seed's runs at once;
# seed: one seed's five runs at a time; auto: all when MPS runs, else seed).
#
# A run whose folder already holds metrics.json (a base: model.pt) is skipped, so the script can be
# restarted on a folder that a cut-off command left behind and only the missing runs are made.
set -u
OUT=${OUT:?set OUT to an output folder}
MODEL=${MODEL:-resnet20}
SEEDS=${SEEDS:-0 1 2}
DATA_ROOT=${DATA_ROOT:-/usr/share/datasets/fashion-mnist}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-256}
SUBSET=${SUBSET:-}
EPOCHS_BASE=${EPOCHS_BASE:-30}
EPOCHS_SEARCH=${EPOCHS_SEARCH:-12}
WARMUP_EPOCHS=${WARMUP_EPOCHS:-2}
EPOCHS_FT=${EPOCHS_FT:-30}
LR_ALPHA=${LR_ALPHA:-0.03}
TAU_FINAL=${TAU_FINAL:-0.3}
STOP_ENTROPY=${STOP_ENTROPY:-0.2}
PENALTY=${PENALTY:-hinge}
DISTILL=${DISTILL-4,0.9}
METHODS=${METHODS:-uniform vbmf greedy alds}
ARCH_STEPS=${ARCH_STEPS:-per-val-batch}
MPS=${MPS:-0}
SCHEDULE=${SCHEDULE:-all}
MPS_ON=0
PY=${PY:-python3}
declare -A STEPS=([resnet20]=4 [vgg16]=8)
declare -A BUDGETS=([resnet20]=0.55 [vgg16]=0.2)
STEP=${STEP:-${STEPS[$MODEL]:-8}}
BUDGET=${BUDGET:-${BUDGETS[$MODEL]:-0.5}}
source "$(dirname "${BASH_SOURCE[0]}")/study_lib.sh"
require_distinct_seeds "$SEEDS"
export PYTHONUNBUFFERED=1
cores=$(nproc 2>/dev/null || echo 4)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT/logs" "$OUT/tables"
{ date -u +%FT%TZ; git rev-parse HEAD 2>/dev/null; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
  "$PY" -c 'import torch; print("torch", torch.__version__)'; echo "cores $cores"; } >>"$OUT/logs/provenance.txt"
if [ "$MPS" = 1 ]; then  # keep MPS only when a CUDA client really works through it
  # a daemon an earlier window started is reused (starting a second one fails)
  if echo get_server_list | nvidia-cuda-mps-control >/dev/null 2>&1; then mps_how="mps daemon already running"
  elif nvidia-cuda-mps-control -d 2>>"$OUT/logs/provenance.txt"; then mps_how="mps daemon started"
  else mps_how=""; fi
  if [ -n "$mps_how" ] && timeout 60 "$PY" -c 'import torch; torch.ones(1, device="cuda").sum().item()' 2>>"$OUT/logs/provenance.txt"; then
    echo "$mps_how" >>"$OUT/logs/provenance.txt"; MPS_ON=1
  else
    echo quit | nvidia-cuda-mps-control 2>/dev/null
    echo "mps unavailable; the runs take turns on the GPU" >>"$OUT/logs/provenance.txt"
  fi
fi
common=(--data fashion-mnist --data-root "$DATA_ROOT" --batch "$BATCH" --device "$DEVICE" --no-onnx --no-progress)
[ -n "$SUBSET" ] && common+=(--subset "$SUBSET")
finetune=(--epochs-finetune "$EPOCHS_FT" --lr-finetune 0.01)
[ -n "$DISTILL" ] && finetune+=(--distill "$DISTILL")
search=(--epochs-search "$EPOCHS_SEARCH" --warmup-epochs "$WARMUP_EPOCHS" --decode expected --lr-alpha "$LR_ALPHA"
        --penalty "$PENALTY" --arch-steps "$ARCH_STEPS")
[ -n "$TAU_FINAL" ] && search+=(--tau-final "$TAU_FINAL")
[ -n "$STOP_ENTROPY" ] && search+=(--stop-entropy "$STOP_ENTROPY")
table="$OUT/tables/${MODEL}_eyeriss/${MODEL}_eyeriss.sqlite"

if [ "$SCHEDULE" = auto ]; then SCHEDULE=$([ "$MPS_ON" = 1 ] && echo all || echo seed); fi
echo "schedule $SCHEDULE" >>"$OUT/logs/provenance.txt"

# 1. the Eyeriss energy table (CPU) while the base models train
( run "table" "$table" hh tables --model "$MODEL" --dataset fashion-mnist --arch arch/eyeriss.yaml --step "$STEP" \
      --jobs 4 --no-progress --out "$OUT/tables/${MODEL}_eyeriss" ) &
for seed in $SEEDS; do
  ( run "base_s$seed" "$OUT/s$seed/base/model.pt" hh train --model "$MODEL" --data fashion-mnist \
        --data-root "$DATA_ROOT" --batch "$BATCH" --seed "$seed" --device "$DEVICE" --epochs "$EPOCHS_BASE" \
        --schedule cosine --no-onnx --no-progress ${SUBSET:+--subset "$SUBSET"} --out "$OUT/s$seed/base" ) &
done
wait

# 2. HALOC and every baseline: every seed at once, or one seed at a time
seed_runs() {  # seed_runs SEED: HALOC and the baselines of one seed, in the background
  local seed=$1 method resume=()
  [ -e "$OUT/s$seed/haloc/config.yaml" ] && resume=(--resume)  # a search a cut-off command left behind
  ( run "haloc_s$seed" "$OUT/s$seed/haloc/metrics.json" hh search --model "$MODEL" --arch arch/eyeriss.yaml \
        --table "$table" --step "$STEP" --base "$OUT/s$seed/base" --budget-energy "$BUDGET" --seed "$seed" \
        "${search[@]}" "${finetune[@]}" "${common[@]}" "${resume[@]}" --out "$OUT/s$seed/haloc" ) &
  for method in $METHODS; do
    ( run "${method}_s$seed" "$OUT/s$seed/$method/metrics.json" hh baseline --method "$method" --model "$MODEL" \
          --arch arch/eyeriss.yaml --table "$table" --step "$STEP" --base "$OUT/s$seed/base" \
          --budget-energy "$BUDGET" --seed "$seed" "${finetune[@]}" "${common[@]}" --out "$OUT/s$seed/$method" ) &
  done
}
for seed in $SEEDS; do
  seed_runs "$seed"
  [ "$SCHEDULE" = seed ] && wait
done
wait
echo "done $(date -u +%FT%TZ)" | tee -a "$OUT/logs/steps.txt"
