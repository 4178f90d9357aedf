"""Quality control of segmentations: input and volume checks, MC-dropout uncertainty,
overlays, figures and the batch's HTML report.

The names below are imported on first use (PEP 562), so importing the package stays
cheap and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from subct.lazy import lazy_exports

if TYPE_CHECKING:
    from subct.qc.checks import QcFlag, QcReport, build_qc_report
    from subct.qc.overlay import save_overlay

_EXPORTS: dict[str, str] = {
    "QcFlag": "subct.qc.checks",
    "QcReport": "subct.qc.checks",
    "build_qc_report": "subct.qc.checks",
    "save_overlay": "subct.qc.overlay",
}

__all__ = [
    "QcFlag",
    "QcReport",
    "build_qc_report",
    "save_overlay",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
