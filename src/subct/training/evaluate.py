"""Evaluate a trained checkpoint on the held-out test split (after ``subct train``).

Test cases are segmented on the network grid by sliding-window inference (MONAI,
patch = training patch, 25 % overlap) and scored with the foundation's metrics
(:func:`subct.metrics.label_map_metrics`: per-structure Dice, HD95, ASSD, absolute
volume difference ...). Results go to ``<checkpoint stem>_test_metrics.csv`` (long CSV
of :func:`subct.evaluation.write_long_csv`) next to the checkpoint.

Test sources: real cases listed under ``"test"`` in the splits file (read from
``imagesTs``/``labelsTs`` when present there, else ``imagesTr``/``labelsTr``), and
synthetic CTs drawn once (fixed seed) from ``data.synthetic.test_label_maps``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from subct.evaluation.metrics import CaseMetrics, label_map_metrics
from subct.labels.schemes import indices_to_labels, scheme_names
from subct.model.checkpoint import load_checkpoint
from subct.training.config import TrainingConfig


@torch.no_grad()
def predict_indices(network: torch.nn.Module, image: NDArray[np.float32],
                    patch_size: tuple[int, int, int], device: torch.device | str = "cpu"
                    ) -> NDArray[np.int64]:
    """Class indices of a whole preprocessed image ([0, 1], network grid), sliding window."""
    from monai.inferers import sliding_window_inference

    network.eval()
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    logits = sliding_window_inference(tensor.to(device), roi_size=patch_size, sw_batch_size=1,
                                      predictor=network, overlap=0.25, mode="gaussian")
    assert isinstance(logits, torch.Tensor)
    return logits.argmax(1)[0].cpu().numpy().astype(np.int64)


def _score(prediction: NDArray[np.integer], reference: NDArray[np.integer], scheme: str,
           spacing: tuple[float, float, float], case: str) -> CaseMetrics:
    return label_map_metrics(indices_to_labels(prediction, scheme),
                             indices_to_labels(reference, scheme), spacing,
                             scheme_names(scheme), case=case)


def evaluate_checkpoint_on_test(config: TrainingConfig, checkpoint: Path,
                                test_cases: list[str]) -> Path | None:
    """Score ``checkpoint`` on the configured test split; return the CSV (None: no tests)."""
    from subct.evaluation.evaluate import write_long_csv
    from subct.training import data as training_data

    loaded = load_checkpoint(checkpoint)
    scheme = loaded.metadata.label_scheme
    patch = tuple(loaded.metadata.patch_size)
    results: list[CaseMetrics] = []
    if config.data.real is not None and test_cases:
        dataset_dir = config.resolve_path(config.data.real.dataset_dir)
        has_test_folder = all((dataset_dir / sub).is_dir() for sub in ("imagesTs", "labelsTs"))
        for name in test_cases:
            folders = ("imagesTs", "labelsTs") if has_test_folder else ("imagesTr", "labelsTr")
            case = training_data.load_case(dataset_dir, name, config, *folders)
            prediction = predict_indices(loaded.network, case.image, patch)  # type: ignore[arg-type]
            results.append(_score(prediction, case.label, scheme, case.spacing_mm, name))
    synthetic = config.data.synthetic
    if synthetic is not None and synthetic.test_label_maps:
        from subct.synth import SynthGenerator

        paths = config.resolve_label_maps(synthetic.test_label_maps)
        synth_config = training_data.synth_config_for(
            config, {"output_shape": list(synthetic.test_image_shape)})
        for index, path in enumerate(paths):
            bank = training_data.build_label_bank(config, [str(path)])
            pair = SynthGenerator(bank, synth_config, seed=10_007 + index).sample()
            image = pair.image[0].numpy().astype(np.float32)
            reference = pair.target.numpy().astype(np.int64)
            prediction = predict_indices(loaded.network, image, patch)  # type: ignore[arg-type]
            name = "synthetic_" + path.name.split(".")[0]
            results.append(_score(prediction, reference, scheme, (1.0, 1.0, 1.0), name))
    if not results:
        return None
    output = checkpoint.with_name(checkpoint.name.split(".")[0] + "_test_metrics.csv")
    return write_long_csv(results, output)
