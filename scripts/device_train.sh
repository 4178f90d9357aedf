#!/usr/bin/env bash
# Training on a lent GPU machine (`device` tool) in ONE call: a task gets 15 minutes of
# device time in all, and each machine start costs 1-2 of them. Two uses:
#
# * issue 23 (default): model v2 with the 180 real anatomies. The continuing run's
#   weights (checkpoints/model_v2/last.safetensors) trained on with many more samples
#   per minute than 2 CPU cores make; its checkpoint comes back and is fed into the
#   continuing run (`scripts/continue_training.sh adopt FILE`) and judged by the ship
#   rule (benchmarks/ship_rule.py).
# * issue 12: CONFIG=configs/robust_ct_unet_wide.yaml (a wider UNet from scratch).
#
# 1. Here, once (copies label maps 01-18 from ../shared and the paper's training and
#    validation maps from $SUBCT_PAPER_MASKS, each cut to its labelled box as uint8, into
#    the git-excluded .gpudata/, and the pure-Python wheels the device lacks into .whl/):
#        bash scripts/device_train.sh stage
#    and, just before the device call, take the large tracked files that the device does
#    not need out of the index (they stay on disk; the call refuses a working tree over
#    64 MiB, tracked files included, and checkpoints/ + the shipped weights are ~70 MB):
#        bash scripts/device_train.sh slim
# 2. On the device (run tool, carry [".gpudata", ".whl"], timeout_s 600):
#        TRAIN_MINUTES=6 bash scripts/device_train.sh train   # ~1.5 min more: wheels, label bank
#    Optional: CONFIG (default configs/model_v2.yaml), INIT (default for model v2: the
#    continuing run's last.safetensors as staged; "none" trains from scratch), LR (with INIT; 1e-4),
#    WORKERS (synthesis processes, 14), BATCH (8), SAMPLES (samples per epoch, 2000),
#    PIPELINE_EVERY (full-pipeline validation every N epochs; model v2: 10), EVAL=0 (skip
#    the validation-map evaluation afterwards).
#    Back in $OUT: best.safetensors (the checkpoint the config's pipeline_validation
#    chose, else the best patch validation loss; a file may come back at most 16 MiB, so
#    one over 15 MiB comes in parts: cat best.safetensors.part-* > best.safetensors),
#    training_log.csv, train_log.txt, eval_clean.txt and eval_clinical.txt (validation
#    maps 17-18, 1 mm / 5 mm, full pipeline).
# 3. Here, AT ONCE after the call (never commit while slim: the commit would delete them):
#        bash scripts/device_train.sh unslim
#    then model v2: `bash scripts/continue_training.sh adopt best.safetensors` and the ship
#    rule on it; issue 12: checkpoints/robust_ct_unet/README.md.
#
# Dry run on a CPU machine that has subct installed (no wheels, a few samples):
#    SKIP_WHEELS=1 OUT=/tmp/device_out TRAIN_MINUTES=0.3 WORKERS=1 BATCH=1 SAMPLES=2 \
#        PIPELINE_EVERY=0 EVAL=0 bash scripts/device_train.sh train
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"

#: large tracked paths the device run does not read (the init weights travel in .gpudata)
SLIM_PATHS=(checkpoints src/subct/model/weights)

if [[ "$mode" == "slim" ]]; then
  if ! git diff --cached --quiet; then
    echo "the index has staged changes: commit or unstage them first" >&2; exit 2
  fi
  [[ -s .git/info/exclude && -n "$(tail -c 1 .git/info/exclude)" ]] && echo >> .git/info/exclude
  for path in "${SLIM_PATHS[@]}"; do
    grep -qx "/$path/" .git/info/exclude || echo "/$path/" >> .git/info/exclude
    git rm -r -q --cached "$path"
  done
  echo "slim: ${SLIM_PATHS[*]} out of the index (still on disk); tracked now" \
    "$(( $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) / 1048576 )) MiB." \
    "Run 'bash scripts/device_train.sh unslim' right after the device call; commit nothing before."
  exit 0
fi
if [[ "$mode" == "unslim" ]]; then
  for path in "${SLIM_PATHS[@]}"; do
    git reset -q -- "$path"
    sed -i "\\#^/$path/\$#d" .git/info/exclude
  done
  git status --short -- "${SLIM_PATHS[@]}" | grep -v '^ M' && echo "check the paths above" >&2
  echo "unslim: ${SLIM_PATHS[*]} back in the index"
  exit 0
fi

if [[ "$mode" == "stage" ]]; then
  shared="${SUBCT_SHARED_DATA:-../shared/data}"
  mkdir -p .gpudata/label_maps/synthseg .gpudata/init .whl
  # the continuing run's weights, which the model-v2 device run starts from
  cp checkpoints/model_v2/last.safetensors .gpudata/init/model_v2_last.safetensors
  grep -qx '/.gpudata/' .git/info/exclude || echo '/.gpudata/' >> .git/info/exclude
  grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
  # maps 01-18 and the paper's training and validation maps (never its test maps), each
  # cut to its labelled box and stored as uint8 (the repository, these and the wheels must
  # stay under the 64 MiB a call carries, after `slim`); same labels, same world coordinates
  SHARED="$shared" SUBCT_PAPER_MASKS="${SUBCT_PAPER_MASKS:-../data/paper_masks}" python - <<'PY'
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from subct.paths import paper_split_maps


def save_labelled_box(source: Path, target: Path) -> None:
    image = nib.load(source)
    labels = np.asarray(image.dataobj)
    inside = np.argwhere(labels > 0)
    low, high = inside.min(axis=0), inside.max(axis=0) + 1
    box = labels[low[0]:high[0], low[1]:high[1], low[2]:high[2]].astype(np.uint8)
    affine = image.affine.copy()
    affine[:3, 3] = image.affine[:3, :3] @ low + image.affine[:3, 3]
    cropped = nib.Nifti1Image(box, affine)
    cropped.set_data_dtype(np.uint8)
    target.parent.mkdir(parents=True, exist_ok=True)
    nib.save(cropped, target)


synthseg = Path(os.environ["SHARED"]) / "label_maps" / "synthseg"
for number in range(1, 19):
    name = f"training_seg_{number:02d}.nii.gz"
    save_labelled_box(synthseg / name, Path(".gpudata/label_maps/synthseg") / name)
for split in ("train", "val"):
    target = Path(".gpudata/paper_masks/segmentation_models_training/data/masks") / split
    for path in paper_split_maps(split):  # refuses an incomplete split
        save_labelled_box(path, target / path.name)
PY
  # the device has Python 3.12 and torch; these are what subct needs besides, at the
  # versions installed here
  versions=$(python - <<'PY'
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in (
    "monai", "nibabel", "pydantic", "pydantic-core", "annotated-types", "typing-inspection")))
PY
)
  rm -f .whl/*.whl
  # shellcheck disable=SC2086
  python -m pip download -q --only-binary=:all: --python-version 3.12 --no-deps -d .whl $versions
  du -sh .gpudata .whl
  slim=$(git ls-files -z -- "${SLIM_PATHS[@]}" | xargs -0 du -cb | tail -1 | cut -f1)
  echo "with the repository: $(( ($(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) \
    + $(du -sb .gpudata | cut -f1) + $(du -sb .whl | cut -f1)) / 1048576 )) MiB, after" \
    "'slim' $(( ($(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) - slim \
    + $(du -sb .gpudata | cut -f1) + $(du -sb .whl | cut -f1)) / 1048576 )) MiB (limit 64)"
  exit 0
fi

if [[ "$mode" != "train" ]]; then
  echo "usage: $0 stage|slim|train|unslim" >&2
  exit 2
fi
: "${OUT:?set OUT to the output folder}"
# SKIP_WHEELS=1: a dry run on a machine that has subct's requirements installed
if [[ -z "${SKIP_WHEELS:-}" ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1
# the configs' label-map globs read {shared}/label_maps/synthseg/ (maps 01-18 only) and
# {paper_masks}/segmentation_models_training/data/masks/{train,val}/
export SUBCT_SHARED_DATA=$PWD/.gpudata SUBCT_PAPER_MASKS=$PWD/.gpudata/paper_masks
export CONFIG="${CONFIG:-configs/model_v2.yaml}"
if [[ "$CONFIG" == configs/model_v2.yaml ]]; then
  export INIT="${INIT:-.gpudata/init/model_v2_last.safetensors}" LR="${LR:-1e-4}"
  export PIPELINE_EVERY="${PIPELINE_EVERY:-10}"
fi
[[ "${INIT:-}" == none ]] && INIT=""
nvidia-smi -L || true
set -o pipefail
python3 - <<'PY' 2>&1 | tee "$OUT/train_log.txt"
import os, shutil, time
from pathlib import Path
from subct.training.config import load_training_config
from subct.training.distributed import context_from_environment
from subct.training.loop import train

run = Path("/tmp/run")
overrides = [f"output_dir={run}",
             f"schedule.max_minutes={float(os.environ.get('TRAIN_MINUTES', '6'))}",
             f"data.num_workers={int(os.environ.get('WORKERS', '14'))}",
             f"data.batch_size={int(os.environ.get('BATCH', '8'))}",
             f"data.samples_per_epoch={int(os.environ.get('SAMPLES', '2000'))}",
             "keep_epoch_checkpoints=false", "evaluate_after_training=false",
             "progress_bar=false"]
if os.environ.get("PIPELINE_EVERY"):
    overrides.append(f"pipeline_validation.every_epochs={int(os.environ['PIPELINE_EVERY'])}")
if os.environ.get("INIT"):
    overrides += [f"transfer.init_checkpoint={os.path.abspath(os.environ['INIT'])}",
                  f"optimiser.lr={os.environ.get('LR', '3e-4')}"]
config = load_training_config(os.environ["CONFIG"], overrides)
started = time.time()
train(config, context=context_from_environment())
print(f"training wall {time.time() - started:.0f} s")
# the checkpoint the full-pipeline validation chose when it ran, else the patch-loss one
chosen = run / "best_pipeline.safetensors"
if not chosen.exists():
    chosen = run / "best.safetensors"
print(f"bringing back {chosen.name}")
shutil.copy(chosen, Path(os.environ["OUT"]) / "best.safetensors")
shutil.copy(run / "training_log.csv", Path(os.environ["OUT"]) / "training_log.csv")
PY
[[ "${EVAL:-1}" == 0 ]] && { ls -la "$OUT"; exit 0; }
for kind in clean clinical; do
  extra=()
  [[ "$kind" == clinical ]] && extra=(--pathology clinical)
  python3 benchmarks/bench_shipped_model.py --model "$OUT/best.safetensors" --tuning \
    --maps 17 18 --crop located --backend torch --out /tmp/eval_$kind "${extra[@]}" \
    > "$OUT/eval_$kind.txt" 2>&1 || echo "evaluation ($kind) failed" >> "$OUT/eval_$kind.txt"
  grep "^mean Dice" "$OUT/eval_$kind.txt" || true
done
# files come back at most 16 MiB each: a larger checkpoint (the wide network's 18 MB) in
# parts (here: cat best.safetensors.part-* > best.safetensors)
if (( $(stat -c %s "$OUT/best.safetensors") > 15 * 1048576 )); then
  split -b 15M "$OUT/best.safetensors" "$OUT/best.safetensors.part-" && rm "$OUT/best.safetensors"
fi
ls -la "$OUT"
