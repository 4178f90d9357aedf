"""Partial coverage and the intracranial volume: the real head CTs with their top cut off.

For every real head CT (:mod:`real_cts`) the top 0, 20, 40 and 60 mm of slices are
removed; for each, the intracranial volume the skull locator measures, the area of its
mask on the topmost slice (the ``icv_cut_by_field_of_view`` evidence; threshold
``subct.qc.case_checks.ICV_TOP_EDGE_MM2``), and whether the adult-range check
(``icv_range``, 900–2 200 cm³) would have noticed.

Usage: ``python benchmarks/bench_icv_coverage.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from real_cts import real_cts  # noqa: E402
from subct.image.intracranial import locate_intracranial  # noqa: E402
from subct.image.volume import Volume  # noqa: E402
from subct.qc.case_checks import ICV_TOP_EDGE_MM2  # noqa: E402
from subct.qc.checks import NORMAL_ICV_RANGE_MM3  # noqa: E402


def without_top(volume: Volume, millimetres: float) -> Volume:
    """The scan with its top ``millimetres`` of slices removed (the most superior axis)."""
    axis = int(np.argmax(np.abs(volume.affine[2, :3])))
    count = int(round(millimetres / float(np.linalg.norm(volume.affine[:3, axis]))))
    if count == 0:
        return volume
    array = np.asarray(volume.array)
    keep = [slice(None)] * 3
    affine = volume.affine.copy()
    if volume.affine[2, axis] > 0:
        keep[axis] = slice(0, array.shape[axis] - count)
    else:  # the first slices are the top ones
        keep[axis] = slice(count, None)
        affine[:3, 3] += volume.affine[:3, axis] * count
    return Volume(array[tuple(keep)], affine)


def top_slice_area_mm2(volume: Volume) -> tuple[float, float]:
    """(ICV mm³, mask area on the topmost slice mm²) of the skull locator."""
    location = locate_intracranial(volume)
    assert location.mask is not None and location.mask_affine is not None
    axes = location.mask_affine[:3, :3]
    axis = int(np.argmax(np.abs(axes[2])))
    top = np.take(location.mask, -1 if axes[2, axis] > 0 else 0, axis=axis)
    others = [axes[:, i] for i in range(3) if i != axis]
    area = float(top.sum() * np.linalg.norm(np.cross(others[0], others[1])))
    return float(location.intracranial_volume_mm3 or 0.0), area


def main() -> None:
    print(f"threshold {ICV_TOP_EDGE_MM2:g} mm²; adult ICV range "
          f"{NORMAL_ICV_RANGE_MM3[0] / 1000:.0f}–{NORMAL_ICV_RANGE_MM3[1] / 1000:.0f} cm³\n")
    print("| CT | top removed (mm) | ICV (cm³) | vs whole | top-slice mask (mm²) | flagged "
          "| icv_range would fire |")
    print("|---|---|---|---|---|---|---|")
    for name, volume in real_cts().items():
        whole = None
        for millimetres in (0.0, 20.0, 40.0, 60.0):
            icv, area = top_slice_area_mm2(without_top(volume, millimetres))
            whole = whole or icv
            outside = not NORMAL_ICV_RANGE_MM3[0] <= icv <= NORMAL_ICV_RANGE_MM3[1]
            print(f"| {name} | {millimetres:.0f} | {icv / 1000:.0f} | "
                  f"{100 * (icv / whole - 1):+.1f} % | {area:.0f} | "
                  f"{'yes' if area > ICV_TOP_EDGE_MM2 else 'no'} | "
                  f"{'yes' if outside else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
