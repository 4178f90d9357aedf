#!/usr/bin/env bash
# The continuing training run of model v2 (issue 23): start it in the first minutes of every
# session; it resumes where the last session stopped and stops itself before this one ends.
#
#   bash scripts/continue_training.sh start [MINUTES]   # background; default 150 min of training
#   bash scripts/continue_training.sh status            # last epochs, pipeline Dice, pid
#   bash scripts/continue_training.sh save              # copy the state into checkpoints/ now
#   bash scripts/continue_training.sh stop              # stop after the epoch in progress
#   bash scripts/continue_training.sh adopt FILE        # continue from FILE's weights
#
# The run lives in runs/model_v2 (not committed); after every epoch a watcher copies the
# resumable state (weights, optimiser, scheduler, RNG, epoch: last.safetensors +
# last_state.pt), the best full-pipeline checkpoint and the log into checkpoints/model_v2/
# (each file < 50 MB), which a session commits. `start` first restores that state into
# runs/model_v2 when the run folder holds none or an older one, then resumes; with no state
# anywhere it starts from the shipped weights (configs/model_v2.yaml). Environment:
# CONFIG (default configs/model_v2.yaml), THREADS (torch threads, default 2), NICE (10),
# RESTART_LR (a one-off warm restart at that learning rate; schedule.restart_lr), SET (extra
# space-separated config overrides for this and later starts, e.g. "data.patch_size=[96,96,96]";
# each start appends the overrides it used to runs/model_v2/overrides.log), SUBCT_CACHE_DIR
# (default runs/model_v2/cache: the run's label bank, built at the first start).
#
# `adopt` feeds a checkpoint of the same network trained elsewhere (a lent GPU:
# scripts/device_train.sh) into the run while it is stopped: its weights become the run's
# last.safetensors and restart the weight average (ema.safetensors), here and in
# checkpoints/; epoch, optimiser moments (those of the replaced weights: they adapt within
# a few hundred steps), schedule and best figures stay. The next start continues from it.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${CONFIG:-configs/model_v2.yaml}"
RUN=runs/model_v2
STATE=checkpoints/model_v2
FILES=(last.safetensors last_state.pt ema.safetensors best_pipeline.safetensors training_log.csv)
mode="${1:-status}"

copy_files() {  # copy_files FROM TO: atomic per file (temporary name, then rename)
  local from="$1" to="$2" name
  mkdir -p "$to"
  for name in "${FILES[@]}"; do
    if [[ -f "$from/$name" ]]; then
      cp "$from/$name" "$to/.$name.tmp" && mv -f "$to/.$name.tmp" "$to/$name"
    fi
  done
}

epoch_of() {  # the epoch recorded in a training log (0 when none)
  if [[ -f "$1/training_log.csv" ]]; then
    tail -n 1 "$1/training_log.csv" | cut -d, -f1 | grep -E '^[0-9]+$' || echo 0
  else
    echo 0
  fi
}

case "$mode" in
  start)
    minutes="${2:-150}"
    mkdir -p "$RUN"
    if [[ -f "$RUN/pid" ]] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; then
      echo "already running (pid $(cat "$RUN/pid"))"; exit 0
    fi
    command -v subct >/dev/null 2>&1 || {
      echo "subct is not installed in this environment: pip install -e '.[dev]' first" >&2; exit 2; }
    rm -f "$RUN/STOP"
    # the label bank (142 maps, ~3 min to build) is cached beside the run, which outlives
    # a session's machine: later starts read it in seconds (subct.synth.bank_cache)
    export SUBCT_CACHE_DIR="${SUBCT_CACHE_DIR:-$(pwd)/$RUN/cache}"
    if [[ -f "$STATE/last_state.pt" ]] && (( $(epoch_of "$STATE") > $(epoch_of "$RUN") )); then
      copy_files "$STATE" "$RUN"
      echo "restored epoch $(epoch_of "$STATE") from $STATE"
    fi
    resume=()
    [[ -f "$RUN/last_state.pt" && -f "$RUN/last.safetensors" ]] && resume=(--resume)
    # RESTART_LR=1e-4: one-off warm restart of a run whose rate has decayed to min_lr
    [[ -n "${RESTART_LR:-}" && ${#resume[@]} -gt 0 ]] && resume+=(--set "schedule.restart_lr=$RESTART_LR")
    for override in ${SET:-}; do resume+=(--set "$override"); done
    echo "$(date -u +%FT%TZ) epoch $(epoch_of "$RUN"): ${resume[*]:-}" >> "$RUN/overrides.log"
    OMP_NUM_THREADS="${THREADS:-2}" nohup nice -n "${NICE:-10}" subct train "$CONFIG" \
      "${resume[@]}" --set "schedule.max_minutes=$minutes" >> "$RUN/train.out" 2>&1 &
    echo $! > "$RUN/pid"
    # watcher: copy the state back after every epoch, until the trainer exits
    ( trainer=$(cat "$RUN/pid"); seen=$(epoch_of "$RUN")
      while kill -0 "$trainer" 2>/dev/null; do
        sleep 30
        now=$(epoch_of "$RUN")
        if (( now > seen )); then sleep 5; copy_files "$RUN" "$STATE"; seen=$now; fi
      done
      copy_files "$RUN" "$STATE" ) >/dev/null 2>&1 &
    echo "training ${resume[*]:-from the shipped weights} for up to $minutes min (pid $(cat "$RUN/pid")); log $RUN/train.out"
    ;;
  save)
    copy_files "$RUN" "$STATE"; echo "saved epoch $(epoch_of "$STATE") to $STATE"
    ;;
  stop)
    touch "$RUN/STOP"; echo "stops after the epoch in progress (pid $(cat "$RUN/pid" 2>/dev/null || echo none))"
    ;;
  status)
    if [[ -f "$RUN/pid" ]] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; then
      echo "running (pid $(cat "$RUN/pid"))"; else echo "not running"; fi
    [[ -f "$RUN/training_log.csv" ]] && { head -n 1 "$RUN/training_log.csv" | cut -d, -f1-6,24-;
      tail -n 5 "$RUN/training_log.csv" | cut -d, -f1-6,24-; }
    ;;
  adopt)
    file="${2:?usage: $0 adopt CHECKPOINT}"
    if [[ -f "$RUN/pid" ]] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; then
      echo "the run is training (pid $(cat "$RUN/pid")): stop it first" >&2; exit 2
    fi
    mkdir -p "$RUN"
    if [[ -f "$STATE/last_state.pt" ]] && (( $(epoch_of "$STATE") > $(epoch_of "$RUN") )); then
      copy_files "$STATE" "$RUN"
    fi
    [[ -f "$RUN/last.safetensors" ]] || { echo "no run state to adopt into" >&2; exit 2; }
    python - "$file" "$RUN/last.safetensors" <<'PY' || exit 2
import sys

from subct.errors import SubctInputError
from subct.model.checkpoint import load_state_dict

try:
    adopted, current = (load_state_dict(path) for path in sys.argv[1:3])
except SubctInputError as error:
    sys.exit(str(error))
shapes = {name: tuple(tensor.shape) for name, tensor in current.items()}
if {name: tuple(tensor.shape) for name, tensor in adopted.items()} != shapes:
    sys.exit(f"{sys.argv[1]}: not the run's network (parameter names or shapes differ)")
PY
    for name in last.safetensors ema.safetensors; do
      cp "$file" "$RUN/.$name.tmp" && mv -f "$RUN/.$name.tmp" "$RUN/$name"
    done
    echo "$(date -u +%FT%TZ) epoch $(epoch_of "$RUN"): adopted $file" \
      "(sha256 $(sha256sum "$file" | cut -c1-16))" >> "$RUN/overrides.log"
    copy_files "$RUN" "$STATE"
    echo "adopted $file at epoch $(epoch_of "$RUN"); 'start' continues from it"
    ;;
  *)
    echo "usage: $0 start [MINUTES] | status | save | stop | adopt CHECKPOINT" >&2; exit 2
    ;;
esac
