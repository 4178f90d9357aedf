"""Time all metrics for the 17 canonical structures on a realistic 256³ label-map pair.

Target (foundation issue): under 5 s on the 2-core development machine.

The reference is a real whole-head label map (SynthSeg training set, 256³, 1 mm,
FreeSurfer IDs) converted to the canonical scheme; the prediction is a perturbed
copy: shifted by (1, 2, -1) voxels and with the outer boundary of all structures
eroded by one voxel, so every structure has a non-trivial overlap and surface.

Run (from the repository root)::

    python benchmarks/bench_metrics.py --repeats 5

It prints the timing of :func:`subct.evaluation.metrics.label_map_metrics` (all metrics, 17
structures) and of :func:`subct.evaluation.evaluate.evaluate_case` (adds scheme conversion),
median and best of the repeats, plus the machine load (``os.getloadavg``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from subct.evaluation.evaluate import EvaluationConfig, evaluate_case
from subct.evaluation.metrics import label_map_metrics
from subct.image.volume import Volume
from subct.labels.convert import convert_to_canonical
from subct.labels.schemes import CANONICAL_NAMES
from subct.paths import shared_data_dir


def build_pair(label_map: Path) -> tuple[Volume, Volume]:
    """Reference = real canonical map; prediction = shifted and boundary-eroded copy."""
    image = nib.load(str(label_map))
    affine = np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
    raw = np.asarray(image.dataobj)  # type: ignore[attr-defined]
    reference = convert_to_canonical(np.rint(raw).astype(np.int32), "synthseg")
    prediction = np.roll(reference, (1, 2, -1), axis=(0, 1, 2))
    foreground = prediction > 0
    prediction[foreground & ~ndimage.binary_erosion(foreground)] = 0
    return Volume(prediction, affine), Volume(reference, affine)


def time_call(function, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Wall-clock seconds of each of ``repeats`` calls."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    from subct.model.runtime import cpu_line

    print(cpu_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--label-map",
        type=Path,
        default=shared_data_dir() / "label_maps" / "synthseg" / "training_seg_01.nii.gz",
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    prediction, reference = build_pair(args.label_map)
    print(f"pair: {reference.shape} voxels, spacing {reference.spacing} mm, "
          f"{len(CANONICAL_NAMES)} structures; cpus={os.cpu_count()}")
    metrics_seconds = time_call(
        lambda: label_map_metrics(prediction.array, reference.array, reference.spacing,
                                  CANONICAL_NAMES), args.repeats)
    case_seconds = time_call(
        lambda: evaluate_case(prediction, reference, EvaluationConfig(), "bench"), args.repeats)
    result = evaluate_case(prediction, reference, EvaluationConfig(), "bench")
    load = os.getloadavg()
    print(f"label_map_metrics: median {statistics.median(metrics_seconds):.2f} s, "
          f"best {min(metrics_seconds):.2f} s over {args.repeats} runs")
    print(f"evaluate_case:     median {statistics.median(case_seconds):.2f} s, "
          f"best {min(case_seconds):.2f} s over {args.repeats} runs")
    print(f"mean Dice {result.mean_dice:.3f}, volume-weighted Dice "
          f"{result.volume_weighted_dice:.3f}, mean HD95 "
          f"{np.mean([s.hd95_mm for s in result.structures]):.2f} mm")
    print(f"load average (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
