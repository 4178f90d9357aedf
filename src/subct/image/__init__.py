"""Images in memory and the operations on them: the volume and its geometry, the one
SimpleITK bridge, resampling, and masks (largest component, head, intracranial locator).

The names below are imported on first use (PEP 562), so importing the package stays
cheap and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from subct.lazy import lazy_exports

if TYPE_CHECKING:
    from subct.image.intracranial import locate_intracranial
    from subct.image.masks import largest_component
    from subct.image.resample import conformed_geometry, resample_to_geometry, resample_to_spacing
    from subct.image.volume import Geometry, Volume

_EXPORTS: dict[str, str] = {
    "Geometry": "subct.image.volume",
    "Volume": "subct.image.volume",
    "conformed_geometry": "subct.image.resample",
    "largest_component": "subct.image.masks",
    "locate_intracranial": "subct.image.intracranial",
    "resample_to_geometry": "subct.image.resample",
    "resample_to_spacing": "subct.image.resample",
}

__all__ = [
    "Geometry",
    "Volume",
    "conformed_geometry",
    "largest_component",
    "locate_intracranial",
    "resample_to_geometry",
    "resample_to_spacing",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
