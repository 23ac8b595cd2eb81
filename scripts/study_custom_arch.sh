#!/usr/bin/env bash
# HALOC and baselines on a custom accelerator (default: the timeloopfe v0.4 weight-stationary design
# in arch/ws_array/), from base models the three-seed study (scripts/study_seeds.sh) trained, with
# that study's recipe: the rows "on the custom v0.4 design" of docs/RESULTS.md section 7.
#
#   OUT=runs/ws MODEL=resnet20 BASES=runs/seeds/r20 SEEDS=0 bash scripts/study_custom_arch.sh
#   OUT=/tmp/dry MODEL=resnet20 BASES=runs/seeds/r20 DEVICE=cpu SUBSET=64 EPOCHS_SEARCH=2 \
#       WARMUP_EPOCHS=1 EPOCHS_FT=1 bash scripts/study_custom_arch.sh         # plumbing dry run
#
# BASES holds one folder per seed, sN/base/ (or sN/ itself) with the model.pt of `haloc-hw train`.
# Knobs (env): OUT, MODEL, BASES, SEEDS, ARCH, TABLE (an existing cost table of MODEL on ARCH;
# default OUT/table/table.sqlite, built first when missing), STEP,
# BUDGET, METHODS, DATA_ROOT, DEVICE, BATCH, SUBSET, EPOCHS_SEARCH, WARMUP_EPOCHS, EPOCHS_FT,
# LR_ALPHA, TAU_FINAL, STOP_ENTROPY, DISTILL, PY. A run whose folder holds metrics.json is skipped.
set -u
OUT=${OUT:?set OUT to an output folder}
MODEL=${MODEL:-resnet20}
BASES=${BASES:?set BASES to the folder holding sN/base of each seed}
SEEDS=${SEEDS:-0}
ARCH=${ARCH:-arch/ws_array/top.yaml.jinja2}
declare -A STEPS=([resnet20]=4 [vgg16]=8)
declare -A BUDGETS=([resnet20]=0.55 [vgg16]=0.2)
STEP=${STEP:-${STEPS[$MODEL]:-8}}
BUDGET=${BUDGET:-${BUDGETS[$MODEL]:-0.5}}
TABLE=${TABLE:-$OUT/table/table.sqlite}
METHODS=${METHODS:-alds uniform greedy}
DATA_ROOT=${DATA_ROOT:-/usr/share/datasets/fashion-mnist}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
source "$(dirname "${BASH_SOURCE[0]}")/study_lib.sh"
require_distinct_seeds "$SEEDS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
base_of() { [ -e "$BASES/s$1/base/model.pt" ] && echo "$BASES/s$1/base" || echo "$BASES/s$1"; }
for seed in $SEEDS; do
  [ -e "$(base_of "$seed")/model.pt" ] || { echo "error: no base model for seed $seed in $BASES (looked for s$seed/base/model.pt and s$seed/model.pt); fix: train it with scripts/study_seeds.sh or point BASES at its folder" >&2; exit 2; }
done
if [ ! -e "$TABLE" ] && [ "$TABLE" != "$OUT/table/table.sqlite" ]; then
  echo "error: cost table not found: $TABLE (TABLE); fix: give an existing table, or leave TABLE unset to build one" >&2; exit 2
fi
mkdir -p "$OUT/logs"
common=(--model "$MODEL" --arch "$ARCH" --table "$TABLE" --step "$STEP" --budget-energy "$BUDGET"
        --epochs-finetune "${EPOCHS_FT:-20}" --lr-finetune 0.01 --data fashion-mnist --data-root "$DATA_ROOT"
        --batch "${BATCH:-256}" --device "$DEVICE" --no-onnx --no-progress)
[ -n "${DISTILL-4,0.9}" ] && common+=(--distill "${DISTILL-4,0.9}")
[ -n "${SUBSET:-}" ] && common+=(--subset "$SUBSET")
search=(--epochs-search "${EPOCHS_SEARCH:-10}" --warmup-epochs "${WARMUP_EPOCHS:-2}" --decode expected
        --lr-alpha "${LR_ALPHA:-0.1}" --penalty hinge --tau-final "${TAU_FINAL:-0.3}" --stop-entropy "${STOP_ENTROPY:-0.2}")
# the table once, before the runs that read it (`tables --out DIR` writes DIR/<DIR's name>.sqlite)
run table "$TABLE" hh tables --model "$MODEL" --dataset fashion-mnist --arch "$ARCH" --step "$STEP" --jobs 4 \
    --no-progress --out "$OUT/table"
for seed in $SEEDS; do
  base=$(base_of "$seed")
  resume=(); [ -e "$OUT/s$seed/haloc/config.yaml" ] && resume=(--resume)  # a search a cut-off command left behind
  ( run "haloc_s$seed" "$OUT/s$seed/haloc/metrics.json" hh search "${common[@]}" "${search[@]}" "${resume[@]}" \
        --base "$base" --seed "$seed" --out "$OUT/s$seed/haloc" ) &
  for method in $METHODS; do
    ( run "${method}_s$seed" "$OUT/s$seed/$method/metrics.json" hh baseline --method "$method" "${common[@]}" \
          --base "$base" --seed "$seed" --out "$OUT/s$seed/$method" ) &
  done
done
wait
echo "done $(date -u +%FT%TZ)" | tee -a "$OUT/logs/steps.txt"
