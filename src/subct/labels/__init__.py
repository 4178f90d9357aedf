"""Label schemes (canonical 17 FreeSurfer IDs, merged left/right, paper-7), conversion of
other tools' label maps, and the Harvard-Oxford atlas.

The names below are imported on first use (PEP 562), so importing the package stays
cheap and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from subct.lazy import lazy_exports

if TYPE_CHECKING:
    from subct.labels.convert import convert_to_canonical
    from subct.labels.schemes import (
        CANONICAL_LABELS,
        CANONICAL_NAMES,
        SCHEMES,
        STRUCTURES,
        LabelScheme,
        get_scheme,
    )

_EXPORTS: dict[str, str] = {
    "CANONICAL_LABELS": "subct.labels.schemes",
    "CANONICAL_NAMES": "subct.labels.schemes",
    "LabelScheme": "subct.labels.schemes",
    "SCHEMES": "subct.labels.schemes",
    "STRUCTURES": "subct.labels.schemes",
    "convert_to_canonical": "subct.labels.convert",
    "get_scheme": "subct.labels.schemes",
}

__all__ = [
    "CANONICAL_LABELS",
    "CANONICAL_NAMES",
    "LabelScheme",
    "SCHEMES",
    "STRUCTURES",
    "convert_to_canonical",
    "get_scheme",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
