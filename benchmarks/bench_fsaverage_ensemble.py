"""Benchmark: every built-in MRI segmenter and every fusion rule on the real fsaverage T1.

The evidence asked for by issue 3 (a table like Table 1 of the ensemble label-transfer
paper): the built-in segmenters (three brainchop MeshNet models ported to PyTorch and
the Harvard-Oxford atlas registered to the MRI) are run on FreeSurfer's fsaverage T1;
their label maps are fused with consensus, majority, weighted (leave-one-out weights:
each segmenter's per-structure Dice against the majority of the others, no ground
truth used) and STAPLE (also checked voxel for voxel against SimpleITK's
``MultiLabelSTAPLEImageFilter``, with both run times); everything is scored against
fsaverage's own ``aseg.mgz`` with :func:`subct.evaluation.metrics.label_map_metrics` over the 17
canonical structures.

Columns: DSC (mean over structures), HD95 (mm = voxels here, mean over structures with
both masks non-empty), AVD (absolute volume difference in voxels, mean), and the number
of structures missed entirely. Caveat: one subject, and an *average* brain whose
"ground truth" is itself FreeSurfer's output, so this ranks segmenters on one example;
the paper used 18 + 20 manually labelled scans.

Usage::

    python benchmarks/bench_fsaverage_ensemble.py [--cache-dir /tmp/subct-ensemble]
        [--segmenters meshnet-subcortical meshnet-18 meshnet-104 atlas-ho]

Label maps are cached in ``--cache-dir`` so the fusion part can be re-run quickly.
Requires ``../shared/data`` (or ``SUBCT_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from subct.evaluation.metrics import label_map_metrics
from subct.io.readers import load_volume
from subct.io.writers import save_volume
from subct.labels.convert import convert_to_canonical
from subct.labels.schemes import CANONICAL_LABELS, STRUCTURES
from subct.paths import shared_data_dir
from subct.transfer.fusion import FUSION_METHODS, fuse, leave_one_out_weights
from subct.transfer.registry import BUILTIN_SEGMENTERS, get_segmenter
from subct.transfer.staple import _staple_simpleitk


def _row(name: str, pred: np.ndarray, ref: np.ndarray, seconds: float | None) -> dict:
    names = {s.label: s.name for s in STRUCTURES if s.label in CANONICAL_LABELS}
    case = label_map_metrics(pred, ref, (1.0, 1.0, 1.0), names, case=name)
    hd95 = [s.hd95_mm for s in case.structures if math.isfinite(s.hd95_mm)]
    return {
        "method": name,
        "dsc": round(case.mean_dice, 3),
        "hd95_vox": round(float(np.mean(hd95)), 2) if hd95 else math.inf,
        "avd_vox": round(float(np.mean([s.abs_volume_diff_voxels for s in case.structures])), 1),
        "missed": sum(s.status == "pred_empty" for s in case.structures),
        "seconds": None if seconds is None else round(seconds, 1),
        "dice_per_structure": {s.name: round(s.dice, 3) for s in case.structures},
    }


def main() -> None:
    from subct.model.runtime import cpu_line

    print(cpu_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/subct-ensemble"))
    parser.add_argument("--segmenters", nargs="+", default=list(BUILTIN_SEGMENTERS))
    parser.add_argument("--json", type=Path, help="also write all rows as JSON here")
    args = parser.parse_args()

    folder = shared_data_dir() / "mri" / "fsaverage"
    t1 = load_volume(folder / "T1.mgz")
    reference = convert_to_canonical(load_volume(folder / "aseg.mgz").array.astype(np.int32),
                                     "aseg")
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    maps: dict[str, np.ndarray] = {}
    rows = []
    for name in args.segmenters:
        cached = args.cache_dir / f"{name}.nii.gz"
        seconds = None
        if cached.is_file():
            maps[name] = np.asarray(load_volume(cached).array, dtype=np.int16)
        else:
            started = time.perf_counter()
            labels = get_segmenter(name).segment(t1)
            seconds = time.perf_counter() - started
            save_volume(labels, cached, dtype=np.int16)
            maps[name] = labels.array
        rows.append(_row(name, maps[name], reference, seconds))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "dice_per_structure"}),
              flush=True)

    stack = list(maps.values())
    for method in FUSION_METHODS:
        started = time.perf_counter()
        weights = leave_one_out_weights(stack, CANONICAL_LABELS) if method == "weighted" else None
        fused = fuse(stack, method, weights)
        seconds = time.perf_counter() - started
        label = f"{method} ({len(stack)} segmenters)"
        rows.append(_row(label, fused.labels, reference, seconds))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "dice_per_structure"}),
              flush=True)

    # Our pattern-EM STAPLE against SimpleITK's MultiLabelSTAPLEImageFilter (same model).
    started = time.perf_counter()
    ours = fuse(stack, "staple").labels
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    itk = _staple_simpleitk(stack, 50)
    itk_s = time.perf_counter() - started
    print(json.dumps({"staple_voxels_differing_from_simpleitk": int((ours != itk).sum()),
                      "staple_ours_s": round(ours_s, 2), "staple_simpleitk_s": round(itk_s, 2)}))

    print("\n| method | DSC ↑ | HD95 (vox) ↓ | AVD (vox) ↓ | structures missed | seconds |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['dsc']:.3f} | {row['hd95_vox']:.2f} | "
              f"{row['avd_vox']:.1f} | {row['missed']} | {row['seconds']} |")
    best_single = max(rows[: len(stack)], key=lambda r: r["dsc"])
    best_fused = max(rows[len(stack):], key=lambda r: r["dsc"])
    print(f"\nbest single: {best_single['method']} DSC {best_single['dsc']:.3f}; "
          f"best fusion: {best_fused['method']} DSC {best_fused['dsc']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
