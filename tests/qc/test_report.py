"""subct.qc.report: the batch page marks each doubtful volume with the warnings naming it."""

from __future__ import annotations

from dataclasses import asdict

from subct.qc.checks import QcFlag
from subct.qc.report import render_segmentation_index, structure_warnings


def _record() -> dict[str, object]:
    flags = [QcFlag("ventricle_on_tissue", "Left-Lateral-Ventricle: 40% of its interior",
                    structures=("Left-Lateral-Ventricle",)),
             QcFlag("no_tta", "run with --fast", "info", ("Left-Thalamus",))]
    row = {"volume_mm3": 9000.0, "mean_hu": 12.0, "sd_hu": 5.0, "tta_agreement_dice": 0.9}
    return {"case": "head", "scheme": "canonical",
            "volumes_mm3": {"Left-Lateral-Ventricle": 30000.0, "Left-Thalamus": 7000.0},
            "qc": {"flagged": True, "flags": [asdict(flag) for flag in flags],
                   "normal_volume_ranges_mm3": {}},
            "statistics": {"Left-Lateral-Ventricle": row, "Left-Thalamus": row}}


def test_structure_warnings_are_the_warnings_naming_it() -> None:
    flags = _record()["qc"]["flags"]  # type: ignore[index]
    assert structure_warnings(flags, "Left-Lateral-Ventricle") == ["ventricle_on_tissue"]
    assert structure_warnings(flags, "Left-Thalamus") == []      # info notes never count


def test_the_page_marks_the_doubtful_volume_only() -> None:
    page = render_segmentation_index([_record()])
    assert "<td class='flag' title='ventricle_on_tissue'>30000</td>" in page
    assert "<td>7000</td>" in page
    assert "<th>QC warnings naming it</th>" in page
    assert "<td class='l'>ventricle_on_tissue</td>" in page
