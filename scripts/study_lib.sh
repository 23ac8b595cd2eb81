# Pieces the study scripts share (sourced, not run): the seed check, the CLI call and the logged,
# skippable run. Needs OUT (its logs/ folder must exist before `run`) and PY.

require_distinct_seeds() {  # require_distinct_seeds SEEDS: a repeated seed would run twice into one folder
  local dup
  dup=$(printf '%s\n' $1 | sort | uniq -d | head -1)
  if [ -n "$dup" ]; then echo "error: SEEDS repeats seed $dup (SEEDS=\"$1\"); fix: list each seed once" >&2; exit 2; fi
}

hh() { "$PY" -m haloc_hw.cli "$@"; }

run() {  # run NAME DONE_FILE COMMAND...: skip when DONE_FILE exists, else log, time, record the exit code
  local name=$1 done_file=$2; shift 2
  if [ -e "$done_file" ]; then echo "$name skipped (done)" | tee -a "$OUT/logs/steps.txt"; return 0; fi
  local t0=$SECONDS
  "$@" >"$OUT/logs/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc wall=$((SECONDS - t0))s" | tee -a "$OUT/logs/steps.txt"
  return $rc
}
