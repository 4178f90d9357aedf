"""Evaluate a trained checkpoint on the held-out test split (after ``subct train``).

Every test case goes through the steps users run (:func:`subct.inference.pipeline.segment`
with :func:`subct.training.pipeline_validation.pipeline_options`: brain location, crop,
input clean-up, sliding windows with left/right flip TTA, post-processing, labels back on
the input grid; no volume calibration, which a model in training does not have), so the
test figures measure what ``subct segment`` gives. Scores come from
:func:`subct.evaluation.metrics.label_map_metrics` (per-structure Dice, HD95, ASSD,
absolute volume difference ...) on the input's own grid. Results go to
``<checkpoint stem>_test_metrics.csv`` (long CSV of
:func:`subct.evaluation.evaluate.write_long_csv`) next to the checkpoint.

Test sources: real cases listed under ``"test"`` in the splits file (the HU image and label
map read from ``imagesTs``/``labelsTs`` when present there, else ``imagesTr``/``labelsTr``),
and one whole synthetic head CT per map in ``data.synthetic.test_label_maps`` (fixed seeds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from subct.evaluation.evaluate import write_long_csv
from subct.evaluation.metrics import CaseMetrics, label_map_metrics
from subct.image.volume import Volume
from subct.inference.model import SegmentationModel, model_from_network
from subct.inference.pipeline import segment
from subct.io.readers import load_volume
from subct.labels.schemes import indices_to_labels, scheme_names
from subct.model.checkpoint import load_checkpoint
from subct.training import data as training_data
from subct.training.config import TrainingConfig
from subct.training.pipeline_validation import pipeline_options, synthetic_heads


def score_through_pipeline(model: SegmentationModel, ct: Volume,
                           reference: NDArray[np.integer], scheme: str, case: str
                           ) -> CaseMetrics:
    """Segment ``ct`` (HU) as ``subct segment`` does (flip TTA, no calibration) and score
    it against ``reference`` (label values of ``scheme`` on ``ct``'s grid)."""
    result = segment(ct, model=model, config=pipeline_options(scheme, tta=True))
    return label_map_metrics(np.asarray(result.labels.array), np.asarray(reference),
                             ct.spacing, scheme_names(scheme), case=case)


def evaluate_checkpoint_on_test(config: TrainingConfig, checkpoint: Path,
                                test_cases: list[str]) -> Path | None:
    """Score ``checkpoint`` on the configured test split; return the CSV (None: no tests)."""
    loaded = load_checkpoint(checkpoint)
    scheme = loaded.metadata.label_scheme
    model = model_from_network(loaded.network, loaded.metadata, path=checkpoint,
                               precision="fp32")
    results: list[CaseMetrics] = []
    if config.data.real is not None and test_cases:
        dataset_dir = config.resolve_path(config.data.real.dataset_dir)
        has_test_folder = all((dataset_dir / sub).is_dir() for sub in ("imagesTs", "labelsTs"))
        for name in test_cases:
            folders = ("imagesTs", "labelsTs") if has_test_folder else ("imagesTr", "labelsTr")
            image_path, label_path = training_data.case_files(dataset_dir, name, *folders)
            ct = load_volume(image_path, expect_ct=True)
            reference = indices_to_labels(np.asarray(load_volume(label_path).array,
                                                     dtype=np.int64), scheme)
            results.append(score_through_pipeline(model, ct, reference, scheme, name))
    synthetic = config.data.synthetic
    if synthetic is not None and synthetic.test_label_maps:
        paths = config.resolve_label_maps(synthetic.test_label_maps)
        heads = synthetic_heads(config, paths, seed=10_007, shape=synthetic.test_image_shape)
        for path, head in zip(paths, heads, strict=True):
            results.append(score_through_pipeline(model, head.ct, head.reference, scheme,
                                                  "synthetic_" + path.name.split(".")[0]))
    if not results:
        return None
    output = checkpoint.with_name(checkpoint.name.split(".")[0] + "_test_metrics.csv")
    return write_long_csv(results, output)
