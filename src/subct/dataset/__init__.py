"""Building CT training datasets from paired MRI/CT scans (``subct build-dataset``) and
nnU-Net dataset files.

The names below are imported on first use (PEP 562), so importing the package stays
cheap and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from subct.lazy import lazy_exports

if TYPE_CHECKING:
    from subct.dataset.build import build_dataset
    from subct.dataset.config import BuildConfig
    from subct.dataset.sources import discover_cases

_EXPORTS: dict[str, str] = {
    "BuildConfig": "subct.dataset.config",
    "build_dataset": "subct.dataset.build",
    "discover_cases": "subct.dataset.sources",
}

__all__ = [
    "BuildConfig",
    "build_dataset",
    "discover_cases",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
