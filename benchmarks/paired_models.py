"""Loading the models a paired benchmark compares (``ship_rule.py``,
``bench_pipeline_validation.py``): each a checkpoint path, or ``shipped`` for the shipped
weights, on the CPU with the given number of threads."""

from __future__ import annotations

from subct.inference.model import SegmentationModel, load_model


def load_models(paths: dict[str, str], threads: int) -> dict[str, SegmentationModel]:
    """Label (``baseline``, ``candidate``, ...) → loaded model, in the order given."""
    return {label: load_model(None if path == "shipped" else path, "cpu", None, None, threads)
            for label, path in paths.items()}
