"""Evaluate a trained checkpoint on the held-out test split (after ``subct train``).

Test cases are segmented on the network grid by the same prediction and post-processing
as ``subct segment`` (:func:`subct.inference.predict.predict_probabilities` with the
default :class:`~subct.inference.config.InferenceConfig`: Gaussian sliding windows with
50 % overlap, left/right flip TTA; then
:func:`subct.inference.steps.crop_class_indices`: below-window voxels to background,
largest component per structure) and scored with
:func:`subct.evaluation.metrics.label_map_metrics` (per-structure Dice, HD95, ASSD,
absolute volume difference ...). Results go to ``<checkpoint stem>_test_metrics.csv`` (long CSV
of :func:`subct.evaluation.evaluate.write_long_csv`) next to the checkpoint.

Test sources: real cases listed under ``"test"`` in the splits file (read from
``imagesTs``/``labelsTs`` when present there, else ``imagesTr``/``labelsTr``), and
synthetic CTs drawn once (fixed seed) from ``data.synthetic.test_label_maps``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from subct.evaluation.evaluate import write_long_csv
from subct.evaluation.metrics import CaseMetrics, label_map_metrics
from subct.inference.config import InferenceConfig
from subct.inference.model import SegmentationModel, model_from_network
from subct.inference.predict import predict_probabilities
from subct.inference.steps import crop_class_indices
from subct.labels.schemes import indices_to_labels, scheme_names
from subct.model.checkpoint import load_checkpoint
from subct.synth.generator import SynthGenerator
from subct.training import data as training_data
from subct.training.config import TrainingConfig


def predict_indices(model: SegmentationModel, image: NDArray[np.float32],
                    config: InferenceConfig | None = None) -> NDArray[np.int64]:
    """Class indices of a whole preprocessed image ([0, 1], network grid), exactly as
    ``subct segment`` predicts its crop."""
    config = config or InferenceConfig()
    image = np.ascontiguousarray(image, dtype=np.float32)
    return crop_class_indices(predict_probabilities(model, image, config), image, config,
                              model.threads)


def _score(prediction: NDArray[np.integer], reference: NDArray[np.integer], scheme: str,
           spacing: tuple[float, float, float], case: str) -> CaseMetrics:
    return label_map_metrics(indices_to_labels(prediction, scheme),
                             indices_to_labels(reference, scheme), spacing,
                             scheme_names(scheme), case=case)


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
            case = training_data.load_case(dataset_dir, name, config, *folders)
            prediction = predict_indices(model, case.image)
            results.append(_score(prediction, case.label, scheme, case.spacing_mm, name))
    synthetic = config.data.synthetic
    if synthetic is not None and synthetic.test_label_maps:
        paths = config.resolve_label_maps(synthetic.test_label_maps)
        synth_config = training_data.synth_config_for(
            config, {"output_shape": list(synthetic.test_image_shape)})
        for index, path in enumerate(paths):
            bank = training_data.build_label_bank(config, [str(path)])
            pair = SynthGenerator(bank, synth_config, seed=10_007 + index).sample()
            image = pair.image[0].numpy().astype(np.float32)
            reference = pair.target.numpy().astype(np.int64)
            prediction = predict_indices(model, image)
            name = "synthetic_" + path.name.split(".")[0]
            results.append(_score(prediction, reference, scheme, (1.0, 1.0, 1.0), name))
    if not results:
        return None
    output = checkpoint.with_name(checkpoint.name.split(".")[0] + "_test_metrics.csv")
    return write_long_csv(results, output)
