"""subct: segmentation of subcortical brain structures in head CT.

The package is split by pipeline stage (see ``docs/architecture.md``):

- :mod:`subct.io` reads and writes volumes (NIfTI, MGZ, NRRD/MHA, DICOM) keeping geometry.
- :mod:`subct.labels` defines the label schemes and converts other tools' outputs.
- :mod:`subct.metrics` computes overlap, surface-distance and volume metrics.
- :func:`subct.segment` segments a head CT in memory (:mod:`subct.inference`).
"""

from __future__ import annotations

__version__ = "0.1.0"

from subct.errors import SubctError, SubctInputError
from subct.runtime import prepare_thread_environment

prepare_thread_environment()  # before anything loads torch's OpenMP runtime

__all__ = ["SegmentationResult", "SubctError", "SubctInputError", "__version__", "segment"]

_LAZY_EXPORTS = {"segment": "subct.inference", "SegmentationResult": "subct.inference"}


def __getattr__(name: str) -> object:
    """Import heavy parts (torch, MONAI) only when ``subct.segment`` etc. are used."""
    if name in _LAZY_EXPORTS:
        import importlib

        return getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    raise AttributeError(f"module 'subct' has no attribute {name!r}")
