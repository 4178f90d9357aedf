"""A case's volumes against the normative models: z-score, percentile, expected volume and
the 2.5th–97.5th percentile band per structure, or the reason there is none.

The result is the ``normative`` section of ``<case>_qc.json``, the percentile and z columns
of ``volumes.csv`` and the report's band plots; it depends only on the volumes and the
case's age and sex, so a rerun with new ``--age``/``--sex``/``--demographics`` refreshes it
without segmenting again (:func:`subct.inference.outputs.refresh_normative`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from subct.norms.demographics import Demographics
from subct.norms.models import (
    BAND_PERCENTILES,
    ICV_KEY,
    NORM_AGE_RANGE_YEARS,
    NormModel,
    find_model,
    normative_sources,
)

#: QC flags whose structures get no percentile: their volume is not a whole structure's
#: (cut by the scan's edge: a lower bound; missing: the segmentation failed), so a
#: percentile would be a plausible wrong number.
WITHHOLDING_FLAGS: dict[str, str] = {
    "cut_by_field_of_view": "cut by the edge of the scan: the volume is a lower bound",
    "not_in_field_of_view": "not in the scanned field of view",
    "structure_missing": "not found by the segmentation",
    "icv_cut_by_field_of_view": "the scan cuts the vertex: the ICV is a lower bound",
}


def withheld_structures(flags: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Structure → why its percentile is withheld, from a case's QC flags (``qc.json``
    dicts: ``code``, ``structures``)."""
    withheld: dict[str, str] = {}
    for flag in flags:
        reason = WITHHOLDING_FLAGS.get(str(flag.get("code")))
        for name in flag.get("structures") or () if reason else ():
            withheld.setdefault(str(name), reason)  # type: ignore[arg-type]
    return withheld


#: Why a structure has no percentile although age and sex are known.
NOT_COVERED = "no normative model for this structure"
#: ... when it is a left/right-merged structure (``--scheme merged``/``paper7``).
MERGED = "the norms are per hemisphere: segment with --scheme canonical for percentiles"


def _unavailable_reason(demographics: Demographics) -> str | None:
    """Why no percentile can be computed for any structure, or None when they can."""
    missing = [what for what, value in (("age", demographics.age_years),
                                        ("sex", demographics.sex)) if value is None]
    if missing:
        return (f"{' and '.join(missing)} unknown: give --age/--sex or --demographics CSV "
                "(DICOM headers are read when they carry them); the report shows the "
                "unadjusted adult ranges")
    low, high = NORM_AGE_RANGE_YEARS
    age = float(demographics.age_years)  # type: ignore[arg-type]
    if not low <= age <= high:
        return (f"age {age:g} years is outside the normative cohort's {low:g}–{high:g} "
                "years: no percentile")
    return None


def _entry(model: NormModel, source: str, volume: float, age: float) -> dict[str, Any]:
    """One structure's normative figures (rounded for JSON)."""
    low, high = model.band_mm3(age)
    return {"source": source, "expected_mm3": round(model.expected_mm3(age), 1),
            "z": round(model.z_score(volume, age), 2),
            "percentile": round(model.percentile(volume, age), 2),
            "band_mm3": [round(low, 1), round(high, 1)]}


def normative_assessment(volumes_mm3: Mapping[str, float | None],
                         demographics: Demographics,
                         withheld: Mapping[str, str] | None = None,
                         intracranial_volume_mm3: float | None = None) -> dict[str, Any]:
    """The ``normative`` record of a case (JSON-ready).

    Args:
        volumes_mm3: structure volumes (mm³, canonical FreeSurfer names); None for a
            structure that was not measured.
        demographics: the case's age and sex.
        withheld: structures whose volume a QC flag disqualifies, with the reason
            (:func:`withheld_structures`).
        intracranial_volume_mm3: the case's ICV (mm³), placed against the norms too
            (under ``intracranial_volume``); None when not measured.

    Returns:
        ``{"sources", "adjusted_for", "band_percentiles", "demographics", "available",
        "reason", "structures": {name: {...}}, "intracranial_volume": {...}}``; each
        entry has ``source``, ``expected_mm3`` (median), ``z``, ``percentile`` and
        ``band_mm3`` (2.5th, 97.5th percentile), or ``reason``.
    """
    reason = _unavailable_reason(demographics)
    entries: dict[str, dict[str, Any]] = {}
    if reason is None:
        age = float(demographics.age_years)  # type: ignore[arg-type]
        measured = {**volumes_mm3, ICV_KEY: intracranial_volume_mm3}
        for name, volume in measured.items():
            found = find_model(demographics.sex, name)  # type: ignore[arg-type]
            if found is None:
                merged = find_model(demographics.sex, f"Left-{name}")  # type: ignore[arg-type]
                entries[name] = {"reason": NOT_COVERED if merged is None else MERGED}
            elif name in (withheld or {}):
                entries[name] = {"reason": (withheld or {})[name]}
            elif volume is None:
                entries[name] = {"reason": "volume not measured"}
            else:
                entries[name] = _entry(found[0], found[1].name, float(volume), age)
    icv = entries.pop(ICV_KEY, None)
    return {"sources": [{"name": s.name, "citation": s.citation} for s in normative_sources()],
            "adjusted_for": ["age", "sex"], "band_percentiles": list(BAND_PERCENTILES),
            "demographics": demographics.to_json_dict(),
            "available": reason is None, "reason": reason, "structures": entries,
            ICV_KEY: icv}
