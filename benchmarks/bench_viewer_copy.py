"""Size and time of the report viewer's copy of a case (``viewer/<case>.js``) at 2 and
1 mm, full HU range and clipped to :data:`subct.qc.viewer.VIEWER_HU_RANGE` (issue 26).

Usage: ``python benchmarks/bench_viewer_copy.py [CT]`` (default: the real GE series).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from subct.image.resample import geometry_with_spacing, resample_to_geometry
from subct.io.readers import load_volume
from subct.paths import shared_data_dir
from subct.qc import viewer


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else shared_data_dir() / "ct" / "dicom_ge_tilted"
    ct = load_volume(path)
    print("| spacing | grid | full HU range (MB) | clipped (MB) | seconds (clipped) |")
    print("|---|---|---|---|---|")
    for spacing in (2.0, 1.0):
        start = time.perf_counter()
        grid = geometry_with_spacing(ct.reoriented_view("RAS").geometry, spacing)
        small = resample_to_geometry(ct, grid, "linear")
        hu = np.rint(np.asarray(small.array, np.float32))
        clipped = viewer._nifti_base64(np.clip(hu, *viewer.VIEWER_HU_RANGE).astype(np.int16),
                                       small.affine)
        seconds = time.perf_counter() - start
        full = viewer._nifti_base64(np.clip(hu, -1024, 3071).astype(np.int16), small.affine)
        print(f"| {spacing:g} mm | {'x'.join(map(str, small.shape))} | {len(full) / 1e6:.1f} | "
              f"{len(clipped) / 1e6:.1f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
