#!/usr/bin/env bash
# Issue 12 on a lent GPU machine (`device` tool): train a robust CT network there and
# score it with the full pipeline on the validation maps, in ONE call (a task gets
# 15 minutes of device time in all; each machine start costs 1-2 of them).
#
# 1. Here, once (copies label maps 01-18 from ../shared into the git-excluded .gpudata/
#    and the pure-Python wheels the device lacks into .whl/; 29 + 7 MB, under the 64 MiB
#    a call may carry):
#        bash scripts/device_train_robust.sh stage
# 2. On the device (run tool, carry [".gpudata", ".whl"], timeout_s 600):
#        CONFIG=configs/robust_ct_unet_wide.yaml TRAIN_MINUTES=7 \
#            bash scripts/device_train_robust.sh train
#    Optional: INIT=<checkpoint> LR=<lr> (fine-tune instead of from scratch), WORKERS
#    (synthesis processes, default 14), BATCH (8), SAMPLES (samples per epoch, 2000).
#    Back in $OUT: best.safetensors (the checkpoint the config's pipeline_validation
#    chose, else the best patch validation loss) in two parts (cat best.safetensors.part-* >
#    best.safetensors; a file may come back at most 16 MiB), training_log.csv,
#    train_log.txt, eval_clean.txt and eval_clinical.txt (validation maps 17-18, 1 mm /
#    5 mm, full pipeline).
# 3. Here: keep the checkpoint only if it beats the shipped weights on BOTH validation
#    figures (checkpoints/robust_ct_unet/README.md has the shipped numbers), then run the
#    held-out benchmarks (docs/benchmarks.md) on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"

if [[ "$mode" == "stage" ]]; then
  shared="${SUBCT_SHARED_DATA:-../shared/data}"
  mkdir -p .gpudata/label_maps/synthseg .whl
  grep -qx '/.gpudata/' .git/info/exclude || echo '/.gpudata/' >> .git/info/exclude
  grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
  # maps 01-18 cropped to the head and stored as uint8 (half the size: the repository,
  # these and the wheels must stay under the 64 MiB a call carries); same labels, same
  # world coordinates
  SHARED="$shared" python - <<'PY'
import os
from pathlib import Path

import nibabel as nib
import numpy as np

source = Path(os.environ["SHARED"]) / "label_maps" / "synthseg"
target = Path(".gpudata/label_maps/synthseg")
for number in range(1, 19):
    image = nib.load(source / f"training_seg_{number:02d}.nii.gz")
    labels = np.asarray(image.dataobj)
    inside = np.argwhere(labels > 0)
    low, high = inside.min(axis=0), inside.max(axis=0) + 1
    box = labels[low[0]:high[0], low[1]:high[1], low[2]:high[2]].astype(np.uint8)
    affine = image.affine.copy()
    affine[:3, 3] = image.affine[:3, :3] @ low + image.affine[:3, 3]
    cropped = nib.Nifti1Image(box, affine)
    cropped.set_data_dtype(np.uint8)
    nib.save(cropped, target / f"training_seg_{number:02d}.nii.gz")
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
  echo "with the repository: $(( ($(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) \
    + $(du -sb .gpudata | cut -f1) + $(du -sb .whl | cut -f1)) / 1048576 )) MiB (limit 64)"
  exit 0
fi

if [[ "$mode" != "train" ]]; then
  echo "usage: $0 stage|train" >&2
  exit 2
fi
: "${OUT:?set OUT to the output folder}"
# SKIP_WHEELS=1: a dry run on a machine that has subct's requirements installed
if [[ -z "${SKIP_WHEELS:-}" ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1
# the configs' label-map globs read {shared}/label_maps/synthseg/ (maps 01-18 only)
export SUBCT_SHARED_DATA=$PWD/.gpudata
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
             f"schedule.max_minutes={float(os.environ.get('TRAIN_MINUTES', '7'))}",
             f"data.num_workers={int(os.environ.get('WORKERS', '14'))}",
             f"data.batch_size={int(os.environ.get('BATCH', '8'))}",
             f"data.samples_per_epoch={int(os.environ.get('SAMPLES', '2000'))}",
             "keep_epoch_checkpoints=false", "evaluate_after_training=false"]
if os.environ.get("INIT"):
    overrides += [f"transfer.init_checkpoint={os.path.abspath(os.environ['INIT'])}",
                  f"optimiser.lr={os.environ.get('LR', '3e-4')}"]
config = load_training_config(os.environ.get("CONFIG", "configs/robust_ct_unet_wide.yaml"),
                              overrides)
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
for kind in clean clinical; do
  extra=()
  [[ "$kind" == clinical ]] && extra=(--pathology clinical)
  python3 benchmarks/bench_shipped_model.py --model "$OUT/best.safetensors" --tuning \
    --maps 17 18 --crop located --backend torch --out /tmp/eval_$kind "${extra[@]}" \
    > "$OUT/eval_$kind.txt" 2>&1 || echo "evaluation ($kind) failed" >> "$OUT/eval_$kind.txt"
  grep "^mean Dice" "$OUT/eval_$kind.txt" || true
done
# files come back at most 16 MiB each: the wide network's 18 MB checkpoint in two parts
# (here: cat best.safetensors.part-* > best.safetensors)
split -b 15M "$OUT/best.safetensors" "$OUT/best.safetensors.part-" && rm "$OUT/best.safetensors"
ls -la "$OUT"
