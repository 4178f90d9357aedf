#!/usr/bin/env bash
# Outputs of the public pipeline for a before/after comparison (issue 13: the redesign
# must leave labels, volumes and QC unchanged). Run it on two checkouts, then compare:
#
#   benchmarks/regression_outputs.sh OUT_BEFORE /path/to/old/checkout
#   benchmarks/regression_outputs.sh OUT_AFTER  /path/to/new/checkout
#   python benchmarks/compare_outputs.py OUT_BEFORE OUT_AFTER
#
# Held-out benchmark (maps 19-20, 1 mm and 5 mm, label maps saved), the validation heads
# (maps 17-18, --tuning), `subct demo`, `subct segment` on the real GE tilted DICOM series,
# the VTK head (NRRD) and Debian's InVesalius head (when installed), `--fast` with
# posteriors, `subct info`. Needs ../shared/data (or SUBCT_SHARED_DATA).
set -euo pipefail
OUT=$1; ROOT=$2; rm -rf "$OUT"; mkdir -p "$OUT"
cd "$ROOT"
export PYTHONPATH=$ROOT/src
DATA=${SUBCT_SHARED_DATA:-$ROOT/../shared/data}
W=src/subct/models/ct_subcortical.safetensors
[ -f $W ] || W=src/subct/model/weights/ct_subcortical.safetensors
python benchmarks/bench_shipped_model.py --model $W --save-images --out "$OUT/heldout" > "$OUT/heldout.log" 2>&1
python benchmarks/bench_shipped_model.py --model $W --tuning --maps 17 18 --save-images --out "$OUT/validation" > "$OUT/validation.log" 2>&1
INV=/usr/share/doc/invesalius-examples/examples/Cranium.inv3
if [ -f $INV ]; then
  (cd benchmarks && python -c "import sys, nibabel as nib; from real_cts import load_invesalius; v = load_invesalius(); nib.save(nib.Nifti1Image(v.array, v.affine), sys.argv[1])" "$OUT/invesalius.nii.gz")
  python -m subct segment "$OUT/invesalius.nii.gz" -o "$OUT/seginv" > "$OUT/seginv.log" 2>&1 || true
fi
python -m subct demo -o "$OUT/demo" > "$OUT/demo.log" 2>&1 || true
python -m subct segment "$DATA/ct/dicom_ge_tilted" "$DATA/ct/headsq_quarter/quarter.nhdr" -o "$OUT/seg" > "$OUT/seg.log" 2>&1 || true
python -m subct segment "$DATA/ct/dicom_ge_tilted" --fast --posteriors -o "$OUT/segfast" > "$OUT/segfast.log" 2>&1 || true
python -m subct info "$DATA/ct/dicom_ge_tilted" > "$OUT/info.log" 2>&1 || true
