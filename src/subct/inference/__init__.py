"""Segmenting head CTs with a trained network (``subct segment``, :func:`subct.segment`):
configuration, model loading, crop, prediction, post-processing, the pipeline and batches.

The names below are imported on first use (PEP 562), so importing the package stays
cheap and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from subct.lazy import lazy_exports

if TYPE_CHECKING:
    from subct.inference.batch import run_batch
    from subct.inference.config import InferenceConfig
    from subct.inference.model import SegmentationModel, load_model
    from subct.inference.outputs import BatchConfig
    from subct.inference.pipeline import SegmentationResult, segment, segment_volume

_EXPORTS: dict[str, str] = {
    "BatchConfig": "subct.inference.outputs",
    "InferenceConfig": "subct.inference.config",
    "SegmentationModel": "subct.inference.model",
    "SegmentationResult": "subct.inference.pipeline",
    "load_model": "subct.inference.model",
    "run_batch": "subct.inference.batch",
    "segment": "subct.inference.pipeline",
    "segment_volume": "subct.inference.pipeline",
}

__all__ = [
    "BatchConfig",
    "InferenceConfig",
    "SegmentationModel",
    "SegmentationResult",
    "load_model",
    "run_batch",
    "segment",
    "segment_volume",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
