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
    NORM_AGE_RANGE_YEARS,
    NormativeSource,
    centilebrain_norms,
    percentile_of,
)

#: QC flags whose structures get no percentile: their volume is not a whole structure's
#: (cut by the scan's edge: a lower bound; missing: the segmentation failed), so a
#: percentile would be a plausible wrong number.
WITHHOLDING_FLAGS: dict[str, str] = {
    "cut_by_field_of_view": "cut by the edge of the scan: the volume is a lower bound",
    "not_in_field_of_view": "not in the scanned field of view",
    "structure_missing": "not found by the segmentation",
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
NOT_COVERED = "no normative model for this structure in the source (CentileBrain covers " \
              "thalamus, caudate, putamen, pallidum, hippocampus, amygdala, accumbens)"


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


def normative_assessment(volumes_mm3: Mapping[str, float | None],
                         demographics: Demographics,
                         withheld: Mapping[str, str] | None = None,
                         source: NormativeSource | None = None) -> dict[str, Any]:
    """The ``normative`` record of a case (JSON-ready).

    Args:
        volumes_mm3: structure volumes (mm³, canonical FreeSurfer names); None for a
            structure that was not measured.
        demographics: the case's age and sex.
        withheld: structures whose volume a QC flag disqualifies, with the reason
            (:func:`withheld_structures`).
        source: the normative models (default: CentileBrain's).

    Returns:
        ``{"source", "citation", "adjusted_for", "demographics", "available", "reason",
        "structures": {name: {...}}}``; each structure has ``expected_mm3``, ``z``,
        ``percentile`` and ``band_mm3`` (2.5th, 97.5th percentile), or ``reason``.
    """
    source = source or centilebrain_norms()
    reason = _unavailable_reason(demographics)
    structures: dict[str, dict[str, Any]] = {}
    if reason is None:
        age = float(demographics.age_years)  # type: ignore[arg-type]
        for name, volume in volumes_mm3.items():
            model = source.model(demographics.sex, name)  # type: ignore[arg-type]
            if model is None:
                structures[name] = {"reason": NOT_COVERED}
            elif name in (withheld or {}):
                structures[name] = {"reason": (withheld or {})[name]}
            elif volume is None:
                structures[name] = {"reason": "volume not measured"}
            else:
                z = model.z_score(float(volume), age)
                low, high = model.band_mm3(age)
                structures[name] = {"expected_mm3": round(model.expected_mm3(age), 1),
                                    "z": round(z, 2), "percentile": round(percentile_of(z), 1),
                                    "band_mm3": [round(low, 1), round(high, 1)]}
    return {"source": source.name, "citation": source.citation,
            "adjusted_for": ["age", "sex"], "band_percentiles": list(BAND_PERCENTILES),
            "demographics": demographics.to_json_dict(),
            "available": reason is None, "reason": reason, "structures": structures}
