"""Left/right asymmetry of the subcortical structures in the 20 real SynthSeg label maps
(manual whole-head segmentations in ``../shared/data/label_maps/synthseg``).

The asymmetry index of a structure is AI = |L − R| / ((L + R) / 2). ``subct segment``
flags a case whose AI exceeds 1.5 × the 90th percentile of these maps
(:data:`subct.qc.anatomy.ASYMMETRY_LIMIT_PERCENT`); this script prints the figures the
limits come from.

Usage: ``python benchmarks/bench_asymmetry_norms.py``
"""

from __future__ import annotations

import numpy as np

from subct.io.readers import load_volume
from subct.paths import shared_data_dir
from subct.qc.anatomy import ASYMMETRY_LIMIT_PERCENT, LEFT_RIGHT_STRUCTURES


def main() -> None:
    paths = sorted((shared_data_dir() / "label_maps" / "synthseg").glob("training_seg_*.nii.gz"))
    indices: dict[str, list[float]] = {name: [] for name in LEFT_RIGHT_STRUCTURES}
    for path in paths:
        labels = np.rint(np.asarray(load_volume(path).array)).astype(np.int64).clip(0, 100)
        counts = np.bincount(labels.ravel(), minlength=101)
        for name, (left, right) in LEFT_RIGHT_STRUCTURES.items():
            a, b = counts[left], counts[right]
            indices[name].append(100.0 * abs(a - b) / ((a + b) / 2.0))
    print(f"{len(paths)} label maps")
    print(f"{'structure':20s} {'median':>7s} {'p90':>7s} {'max':>7s} "
          f"{'1.5 x p90':>10s} {'limit':>7s}")
    for name, values in indices.items():
        v = np.asarray(values)
        print(f"{name:20s} {np.median(v):7.1f} {np.percentile(v, 90):7.1f} {v.max():7.1f} "
              f"{1.5 * np.percentile(v, 90):10.1f} {ASYMMETRY_LIMIT_PERCENT[name]:7.0f}")


if __name__ == "__main__":
    main()
