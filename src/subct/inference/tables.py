"""The batch's tables, built from the cases' QC records (``<case>_qc.json`` contents):
``volumes.csv`` (a row per case), ``statistics.csv`` (a row per case and structure) and
the ``--qc`` CSV (SynthSeg's, a row per case).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from subct.labels.schemes import scheme_structure_names
from subct.norms.models import ICV_KEY
from subct.qc.report import structure_warnings


def _normative_cells(record: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Age, sex, then each structure's percentile and z-score (empty when unknown)."""
    normative = record.get("normative") or {}
    demographics = normative.get("demographics") or {}
    age = demographics.get("age_years")
    cells = ["" if age is None else f"{float(age):g}", demographics.get("sex") or ""]
    structures = {**(normative.get("structures") or {}),
                  ICV_KEY: normative.get(ICV_KEY) or {}}
    for name in [*names, ICV_KEY]:
        entry = structures.get(name) or {}
        cells += ["" if entry.get(key) is None else f"{float(entry[key]):g}"
                  for key in ("percentile", "z")]
    return cells


def volumes_csv_text(records: Sequence[dict[str, Any]]) -> str:
    """``volumes.csv``: case, each structure's volume (mm³), ICV (mm³), QC flag, then the
    age and sex used and each structure's normative percentile and z-score
    (:mod:`subct.norms`; empty without age and sex, or where no norm exists)."""

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    scheme = records[0]["scheme"] if records else "canonical"
    names = scheme_structure_names(scheme)
    writer.writerow(["case", *(f"{name}_mm3" for name in names), "intracranial_volume_mm3",
                     "qc_flagged", "qc_flags", "age_years", "sex",
                     *(f"{name}_{key}" for name in [*names, ICV_KEY]
                       for key in ("percentile", "z"))])
    for record in records:
        volumes = record.get("volumes_mm3", {})
        icv = record.get("intracranial_volume_mm3")
        qc = record.get("qc", {})
        codes = sorted({flag["code"] for flag in qc.get("flags", [])
                        if flag.get("severity") == "warning"})
        writer.writerow([record["case"], *("" if volumes.get(n, 0.0) is None
                                           else f"{float(volumes.get(n, 0.0)):.1f}"
                                           for n in names),
                         "" if icv is None else f"{float(icv):.0f}",
                         int(bool(qc.get("flagged"))), " ".join(codes),
                         *_normative_cells(record, names)])
    return buffer.getvalue()


def qc_csv_text(records: Sequence[dict[str, Any]]) -> str:
    """The ``--qc`` CSV (SynthSeg's ``--qc``: one row per case, a 0–1 score per
    structure, higher is better): QC flag and warning codes, then each structure's
    agreement (Dice) between the plain and mirrored network passes; empty without TTA."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    scheme = records[0]["scheme"] if records else "canonical"
    names = scheme_structure_names(scheme)
    writer.writerow(["case", "qc_flagged", "qc_flags", *names])
    for record in records:
        qc = record.get("qc", {})
        codes = sorted({flag["code"] for flag in qc.get("flags", [])
                        if flag.get("severity") == "warning"})
        statistics = record.get("statistics", {})
        scores = [statistics.get(name, {}).get("tta_agreement_dice") for name in names]
        writer.writerow([record["case"], int(bool(qc.get("flagged"))), " ".join(codes),
                         *("" if score is None else f"{float(score):.3f}" for score in scores)])
    return buffer.getvalue()


#: Columns of ``statistics.csv`` (one row per case and structure).
STATISTICS_COLUMNS = ("case", "structure", "volume_mm3", "mean_hu", "sd_hu",
                      "tta_agreement_dice", "structure_flags", "qc_flags", "percentile",
                      "z_score", "expected_mm3")


def statistics_csv_text(records: Sequence[dict[str, Any]]) -> str:
    """``statistics.csv``: per case and structure its volume (mm³; empty outside the
    field of view), the mean and standard deviation of its HU, the agreement of the
    plain and mirrored network passes (Dice), the QC warnings that name this structure
    (``structure_flags``: drop this one volume), all the case's QC warning codes, and
    its normative percentile, z-score and expected volume (mm³; empty when unknown)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(STATISTICS_COLUMNS)
    for record in records:
        warnings = [flag for flag in record.get("qc", {}).get("flags", [])
                    if flag.get("severity") == "warning"]
        codes = " ".join(sorted({flag["code"] for flag in warnings}))
        norms = (record.get("normative") or {}).get("structures") or {}
        for name, row in (record.get("statistics") or {}).items():
            cells = [row.get(key) for key in STATISTICS_COLUMNS[2:6]]
            own = " ".join(structure_warnings(warnings, name))
            norm = [(norms.get(name) or {}).get(key) for key in ("percentile", "z",
                                                                  "expected_mm3")]
            writer.writerow([record["case"], name, *("" if v is None else v for v in cells),
                             own, codes, *("" if v is None else v for v in norm)])
    return buffer.getvalue()
