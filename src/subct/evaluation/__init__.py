"""Scoring label maps against references: metrics (Dice, HD95, ASSD, volume differences),
folder evaluation, summary tables and the demo.

The names below are imported on first use (PEP 562), so importing the package stays
cheap and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from subct.lazy import lazy_exports

if TYPE_CHECKING:
    from subct.evaluation.evaluate import (
        EvaluationConfig,
        evaluate_folders,
        evaluate_paths,
        write_long_csv,
    )
    from subct.evaluation.metrics import label_map_metrics

_EXPORTS: dict[str, str] = {
    "EvaluationConfig": "subct.evaluation.evaluate",
    "evaluate_folders": "subct.evaluation.evaluate",
    "evaluate_paths": "subct.evaluation.evaluate",
    "label_map_metrics": "subct.evaluation.metrics",
    "write_long_csv": "subct.evaluation.evaluate",
}

__all__ = [
    "EvaluationConfig",
    "evaluate_folders",
    "evaluate_paths",
    "label_map_metrics",
    "write_long_csv",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
