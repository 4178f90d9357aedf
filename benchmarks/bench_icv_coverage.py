"""Partial coverage and the intracranial volume: the real head CTs with their top or bottom
cut off.

For every real head CT (:mod:`real_cts`) 0, 10, 20, 30, 40 and 60 mm of slices are
removed from the top, then from the bottom; for each, the intracranial volume the skull
locator measures, the area of its mask on the top and bottom slices (the
``icv_cut_by_field_of_view`` evidence; thresholds ``ICV_TOP_EDGE_MM2`` and
``ICV_BOTTOM_EDGE_MM2`` of :mod:`subct.qc.case_checks`), whether that flag fires, and
whether the adult-range check (``icv_range``, 900–2 200 cm³) would have noticed.

Usage: ``python benchmarks/bench_icv_coverage.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from real_cts import real_cts  # noqa: E402
from subct.image.intracranial import locate_intracranial  # noqa: E402
from subct.image.masks import mask_edge_areas_mm2  # noqa: E402
from subct.image.volume import Volume  # noqa: E402
from subct.qc.case_checks import ICV_BOTTOM_EDGE_MM2, ICV_TOP_EDGE_MM2  # noqa: E402
from subct.qc.checks import NORMAL_ICV_RANGE_MM3  # noqa: E402


def without(volume: Volume, millimetres: float, end: str) -> Volume:
    """The scan with ``millimetres`` of slices removed at its ``end`` (top or bottom)."""
    axis = int(np.argmax(np.abs(volume.affine[2, :3])))
    count = int(round(millimetres / float(np.linalg.norm(volume.affine[:3, axis]))))
    if count == 0:
        return volume
    array = np.asarray(volume.array)
    keep = [slice(None)] * 3
    affine = volume.affine.copy()
    # the first slices are the top ones when the axis points down, the bottom ones else
    first_removed = (volume.affine[2, axis] > 0) == (end == "bottom")
    if first_removed:
        keep[axis] = slice(count, None)
        affine[:3, 3] += volume.affine[:3, axis] * count
    else:
        keep[axis] = slice(0, array.shape[axis] - count)
    return Volume(array[tuple(keep)], affine)


def main() -> None:
    print(f"thresholds: top {ICV_TOP_EDGE_MM2:g} mm², bottom {ICV_BOTTOM_EDGE_MM2:g} mm²; "
          f"adult ICV range {NORMAL_ICV_RANGE_MM3[0] / 1000:.0f}–"
          f"{NORMAL_ICV_RANGE_MM3[1] / 1000:.0f} cm³\n")
    print("| CT | removed | ICV (cm³) | vs whole | top / bottom slice mask (mm²) | flagged "
          "| icv_range would fire |")
    print("|---|---|---|---|---|---|---|")
    for name, volume in real_cts().items():
        whole = None
        for end in ("top", "bottom"):
            for millimetres in (0.0, 10.0, 20.0, 30.0, 40.0, 60.0):
                if end == "bottom" and millimetres == 0.0:
                    continue
                location = locate_intracranial(without(volume, millimetres, end))
                assert location.mask is not None and location.mask_affine is not None
                icv = float(location.intracranial_volume_mm3 or 0.0)
                whole = whole or icv
                top, bottom = mask_edge_areas_mm2(location.mask, location.mask_affine)
                flagged = top > ICV_TOP_EDGE_MM2 or bottom > ICV_BOTTOM_EDGE_MM2
                outside = not NORMAL_ICV_RANGE_MM3[0] <= icv <= NORMAL_ICV_RANGE_MM3[1]
                print(f"| {name} | {end} {millimetres:.0f} mm | {icv / 1000:.0f} | "
                      f"{100 * (icv / whole - 1):+.1f} % | {top:.0f} / {bottom:.0f} | "
                      f"{'yes' if flagged else 'no'} | {'yes' if outside else 'no'} |",
                      flush=True)


if __name__ == "__main__":
    main()
