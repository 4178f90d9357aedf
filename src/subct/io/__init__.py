"""Reading and writing volumes: NIfTI, MGZ/MGH, NRRD/NHDR, MHA/MHD and DICOM series (via
dcm2niix), atomic writes, file discovery and Hounsfield-unit checks.

The names below are imported on first use (PEP 562), so importing the package stays
cheap and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from subct.lazy import lazy_exports

if TYPE_CHECKING:
    from subct.image.volume import Geometry, Volume
    from subct.io.dicom import load_dicom_series
    from subct.io.files import VOLUME_SUFFIXES, case_name
    from subct.io.readers import load_volume
    from subct.io.writers import atomic_write_text, save_volume

_EXPORTS: dict[str, str] = {
    "Geometry": "subct.image.volume",
    "VOLUME_SUFFIXES": "subct.io.files",
    "Volume": "subct.image.volume",
    "atomic_write_text": "subct.io.writers",
    "case_name": "subct.io.files",
    "load_dicom_series": "subct.io.dicom",
    "load_volume": "subct.io.readers",
    "save_volume": "subct.io.writers",
}

__all__ = [
    "Geometry",
    "VOLUME_SUFFIXES",
    "Volume",
    "atomic_write_text",
    "case_name",
    "load_dicom_series",
    "load_volume",
    "save_volume",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
