#!/usr/bin/env bash
# Measure the shipped GPU tables and the checks of docs/GPU-TABLES.md in one go.
#
#   WORK=/tmp/hh DEVICE=cuda bash tables/scripts/run_device.sh
#
# Every step writes under $WORK and logs to $WORK/logs/STEP.log; a failing step does not stop
# the others. Knobs (env): DEVICE (cuda), BATCH (128), WARMUP (10), REPEATS (30),
# R18_EXTRA (extra 'tables' arguments for resnet18, e.g. a small --input-size for a dry run),
# STEP_TIMEOUT (seconds per step, 240), HEAT_STEP (rank step of the unequal layer table, 16),
# SKIP (space-separated step names to leave out).
set -u
WORK=${WORK:?set WORK to an output folder}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-128}
WARMUP=${WARMUP:-10}
REPEATS=${REPEATS:-30}
R18_EXTRA=${R18_EXTRA:-}
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
HEAT_STEP=${HEAT_STEP:-16}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$WORK/logs"

hh() { python3 -c 'import sys; from haloc_hw.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
export -f hh

step() {
  local name=$1; shift
  if [[ " ${SKIP:-} " == *" $name "* ]]; then echo "=== $name skipped"; return; fi
  local t0=$(date +%s.%N)
  timeout "$STEP_TIMEOUT" bash -c '"$@"' _ "$@" >"$WORK/logs/$name.log" 2>&1
  local rc=$?
  local secs=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
  echo "=== $name rc=$rc wall=${secs}s" | tee -a "$WORK/logs/steps.txt"
  grep -v '^\s*$' "$WORK/logs/$name.log" | grep -v 'it/s\]' | tail -n "${TAIL:-6}"
}

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  git rev-parse HEAD 2>/dev/null || echo "no git"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c 'import torch, platform; print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'
  nproc
} >"$WORK/env.txt" 2>&1
cat "$WORK/env.txt"
# bring the GPU to its working clocks before the first measurement
python3 -c 'import time, torch; a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); t = time.time()
while time.time() - t < 3: a @ a
torch.cuda.synchronize()' 2>/dev/null || true

COMMON=(--backend gpu --device "$DEVICE" --batch "$BATCH" --warmup "$WARMUP" --repeats "$REPEATS" --jobs 1 --no-progress)
TAIL=30 step r18_bf16 hh tables --model resnet18 --dtype bf16 "${COMMON[@]}" $R18_EXTRA --out "$WORK/resnet18_bf16"
step r18_bf16_repeat hh tables --model resnet18 --dtype bf16 "${COMMON[@]}" $R18_EXTRA --out "$WORK/repeat/resnet18_bf16"
TAIL=14 step r20_bf16 hh tables --model resnet20 --dtype bf16 "${COMMON[@]}" --out "$WORK/resnet20_bf16"
TAIL=4 step layer3 python3 tables/scripts/layer3_probe.py --device "$DEVICE" --batch "$BATCH" --warmup "$WARMUP" --repeats "$REPEATS" --out "$WORK/layer3.json"
TAIL=30 step r18_fp32 hh tables --model resnet18 --dtype fp32 "${COMMON[@]}" $R18_EXTRA --out "$WORK/resnet18_fp32"
step ranks_bf16 python3 tables/scripts/fastest_ranks.py "$WORK/resnet18_bf16/resnet18_bf16.sqlite" "$WORK/ranks_resnet18_bf16.json"
step ranks_fp32 python3 tables/scripts/fastest_ranks.py "$WORK/resnet18_fp32/resnet18_fp32.sqlite" "$WORK/ranks_resnet18_fp32.json"
TAIL=8 step bench_bf16 hh bench --model resnet18 --ranks "$WORK/ranks_resnet18_bf16.json" --batch "$BATCH" --dtype bf16 --device "$DEVICE" \
  --warmup "$WARMUP" --repeats "$REPEATS" --table "$WORK/resnet18_bf16/resnet18_bf16.sqlite" --json "$WORK/bench_resnet18_bf16.json"
TAIL=8 step bench_fp32 hh bench --model resnet18 --ranks "$WORK/ranks_resnet18_fp32.json" --batch "$BATCH" --dtype fp32 --device "$DEVICE" \
  --warmup "$WARMUP" --repeats "$REPEATS" --table "$WORK/resnet18_fp32/resnet18_fp32.sqlite" --json "$WORK/bench_resnet18_fp32.json"
TAIL=8 step r20_bench hh bench --model resnet20 --batch "$BATCH" --dtype bf16 --device "$DEVICE" --warmup "$WARMUP" --repeats "$REPEATS" \
  --table "$WORK/resnet20_bf16/resnet20_bf16.sqlite" --json "$WORK/bench_resnet20_bf16.json"
TAIL=2 step heat_r18_layer3 python3 tables/scripts/layer_table.py --model resnet18 --layers layer3.1.conv1 --step "$HEAT_STEP" \
  --device "$DEVICE" --dtype bf16 --batch "$BATCH" --warmup "$WARMUP" --repeats "$REPEATS" $R18_EXTRA \
  --out "$WORK/resnet18_layer3_unequal_bf16/resnet18_layer3_unequal_bf16.sqlite"
TAIL=2 step r20_unequal hh tables --model resnet20 --dtype bf16 "${COMMON[@]}" --unequal --out "$WORK/resnet20_unequal_bf16"
echo "done $(date -u +%Y-%m-%dT%H:%M:%SZ)"
