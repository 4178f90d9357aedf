"""The patient's age and sex from a DICOM series' header, for the normative percentiles.

Only these two facts leave the header (as ``Volume.metadata``'s
``dicom_patient_age_years`` and ``dicom_patient_sex``, then ``qc.json``): the birth date
is used to compute the age when PatientAge (0010,1010) is empty, and is not kept.
Anonymised series usually carry neither; then the case's age and sex must come from
``--age``/``--sex`` or ``--demographics``.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

#: Days per unit of a DICOM Age String (AS): days, weeks, months, years.
_DAYS_PER_AGE_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12.0, "Y": 365.25}


def parse_dicom_age(text: str) -> float | None:
    """DICOM Age String (0010,1010), e.g. ``065Y``, ``018M``, ``012W``, ``003D``, in
    years; None for an empty or malformed value."""
    match = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY])\s*", text or "", flags=re.IGNORECASE)
    if not match:
        return None
    return int(match.group(1)) * _DAYS_PER_AGE_UNIT[match.group(2).upper()] / 365.25


def parse_dicom_date(text: str) -> date | None:
    """DICOM Date (``YYYYMMDD``), None when empty or malformed."""
    match = re.fullmatch(r"\s*(\d{4})(\d{2})(\d{2})\s*", text or "")
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def patient_age_and_sex(dataset: Any) -> dict[str, Any]:
    """``dicom_patient_age_years`` (PatientAge, else the birth date and the study,
    series or acquisition date; None when neither) and ``dicom_patient_sex`` (the raw
    PatientSex, ``M``/``F``/``O``, or None) of a pydicom dataset."""
    age = parse_dicom_age(str(getattr(dataset, "PatientAge", "") or ""))
    if age is None:
        birth = parse_dicom_date(str(getattr(dataset, "PatientBirthDate", "") or ""))
        scan = next((day for day in (parse_dicom_date(str(getattr(dataset, key, "") or ""))
                                     for key in ("StudyDate", "SeriesDate", "AcquisitionDate"))
                     if day is not None), None)
        if birth is not None and scan is not None and scan >= birth:
            age = (scan - birth).days / 365.25
    sex = str(getattr(dataset, "PatientSex", "") or "").strip() or None
    return {"dicom_patient_age_years": None if age is None else round(age, 2),
            "dicom_patient_sex": sex}


def series_patient(folder: Path, series_uid: str | None) -> dict[str, Any]:
    """:func:`patient_age_and_sex` of the first file of series ``series_uid`` (any DICOM
    file when None) in ``folder``; both None when no file of it can be read."""
    import pydicom  # lazy: only DICOM inputs need it
    from pydicom.errors import InvalidDicomError

    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if series_uid and getattr(dataset, "SeriesInstanceUID", None) != series_uid:
            continue
        return patient_age_and_sex(dataset)
    return {"dicom_patient_age_years": None, "dicom_patient_sex": None}
