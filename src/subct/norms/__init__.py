"""Normative volumes: each structure's volume as a percentile and z-score among healthy
people of the same age and sex (CentileBrain's published models), with the age and sex
read from a CSV, the command line or the DICOM header.

The names below are imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from subct.lazy import lazy_exports

if TYPE_CHECKING:
    from subct.norms.assess import normative_assessment
    from subct.norms.demographics import (
        Demographics,
        DemographicsOptions,
        read_demographics_csv,
    )
    from subct.norms.models import centilebrain_norms, percentile_of

_EXPORTS: dict[str, str] = {
    "normative_assessment": "subct.norms.assess",
    "Demographics": "subct.norms.demographics",
    "DemographicsOptions": "subct.norms.demographics",
    "read_demographics_csv": "subct.norms.demographics",
    "centilebrain_norms": "subct.norms.models",
    "percentile_of": "subct.norms.models",
}

__all__ = [
    "Demographics",
    "DemographicsOptions",
    "centilebrain_norms",
    "normative_assessment",
    "percentile_of",
    "read_demographics_csv",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
