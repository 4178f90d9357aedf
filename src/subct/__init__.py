"""subct: segmentation of subcortical brain structures in head CT.

The package is split by pipeline stage (see ``docs/architecture.md``):

- :mod:`subct.io` reads and writes volumes (NIfTI, MGZ, NRRD/MHA, DICOM) keeping geometry.
- :mod:`subct.labels` defines the label schemes and converts other tools' outputs.
- :mod:`subct.metrics` computes overlap, surface-distance and volume metrics.
"""

from __future__ import annotations

__version__ = "0.1.0"

from subct.errors import SubctError, SubctInputError

__all__ = ["SubctError", "SubctInputError", "__version__"]
