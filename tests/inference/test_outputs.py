"""subct.inference.outputs: the batch tables carry each structure's own QC flags."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict

from subct.inference.tables import statistics_csv_text, volumes_csv_text
from subct.qc.checks import QcFlag


def _record() -> dict[str, object]:
    flags = [QcFlag("hyperdense_lesion", "blood next to Left-Putamen",
                    structures=("Left-Putamen",)),
             QcFlag("icv_range", "intracranial volume 800 cm3"),           # whole case
             QcFlag("no_tta", "run with --fast", "info", ("Left-Thalamus",))]
    row = {"volume_mm3": 5000.0, "mean_hu": 38.0, "sd_hu": 4.0, "tta_agreement_dice": 0.9}
    return {"case": "head", "scheme": "canonical",
            "volumes_mm3": {"Left-Putamen": 5000.0, "Left-Thalamus": 7000.0},
            "qc": {"flagged": True, "flags": [asdict(flag) for flag in flags]},
            "statistics": {"Left-Putamen": row, "Left-Thalamus": row}}


def test_statistics_csv_names_each_structures_own_warnings() -> None:
    rows = list(csv.DictReader(io.StringIO(statistics_csv_text([_record()]))))
    by_structure = {row["structure"]: row for row in rows}
    # the haemorrhage flag concerns the putamen only; info notes never count
    assert by_structure["Left-Putamen"]["structure_flags"] == "hyperdense_lesion"
    assert by_structure["Left-Thalamus"]["structure_flags"] == ""
    # the case's warnings stay on every row
    assert by_structure["Left-Thalamus"]["qc_flags"] == "hyperdense_lesion icv_range"


def test_volumes_csv_keeps_the_case_warnings() -> None:
    rows = list(csv.DictReader(io.StringIO(volumes_csv_text([_record()]))))
    assert rows[0]["qc_flags"] == "hyperdense_lesion icv_range"
    assert rows[0]["qc_flagged"] == "1"
