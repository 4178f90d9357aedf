"""The sliding-window size at inference: the checkpoint's ``inference_window``, else its
training patch size (a network trained on 128³ patches may run on 96³ windows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from subct.errors import SubctInputError
from subct.inference.config import InferenceConfig
from subct.inference.model import model_from_network
from subct.inference.predict import predict_probabilities
from subct.model.metadata import CheckpointMetadata
from subct.model.networks import build_network
from subct.training.config import load_training_config
from subct.training.records import make_metadata

REPOSITORY = Path(__file__).resolve().parents[2]
TINY = {"in_channels": 1, "out_channels": 18, "channels": [4, 8], "dropout": 0.0}


def _metadata(window: tuple[int, int, int] | None) -> CheckpointMetadata:
    return CheckpointMetadata(network_name="unet3d", network_kwargs=TINY,
                              spacing_mm=(1.0, 1.0, 1.0), patch_size=(32, 32, 32),
                              inference_window=window, hu_window=(-100.0, 200.0))


class _CountingEngine:
    """Wraps a real engine and records the spatial shape of every batch it runs."""

    def __init__(self, engine: object) -> None:
        self.engine = engine
        self.shapes: list[tuple[int, ...]] = []

    def logits(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(tuple(batch.shape[2:]))
        return self.engine.logits(batch)  # type: ignore[attr-defined]


@pytest.mark.parametrize("window, expected_shape, expected_calls",
                         [(None, (32, 32, 32), 1), ((16, 16, 16), (16, 16, 16), 27)])
def test_windows_follow_inference_window_else_patch(
        window: tuple[int, int, int] | None, expected_shape: tuple[int, int, int],
        expected_calls: int) -> None:
    network = build_network("unet3d", **TINY)
    model = model_from_network(network, _metadata(window), precision="fp32", threads=1)
    assert model.patch_size == (32, 32, 32)
    assert model.window_size == expected_shape
    assert model.metadata.plan.inference_window == expected_shape
    assert model.metadata.plan.window_size == window
    engine = _CountingEngine(model.engine)
    image = np.random.default_rng(0).random((32, 32, 32), dtype=np.float32)
    config = InferenceConfig(tta=False, sliding_window_overlap=0.5)
    probabilities = predict_probabilities(model, image, config, engine=engine)  # type: ignore[arg-type]
    assert probabilities.shape == (18, 32, 32, 32)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-4)
    # 16³ windows at half overlap over 32 voxels: starts 0, 8, 16 on each axis
    assert len(engine.shapes) == expected_calls
    assert set(engine.shapes) == {expected_shape}


def test_inference_window_is_checked_and_recorded_from_the_config() -> None:
    with pytest.raises(ValidationError, match="inference_window"):
        _metadata((4, 96, 96))
    with pytest.raises(SubctInputError, match=r"inference_window \(4, 96, 96\) too small"):
        load_training_config(REPOSITORY / "configs" / "tiny_synthetic.yaml",
                             ["data.inference_window=[4,96,96]"])
    config = load_training_config(REPOSITORY / "configs" / "tiny_synthetic.yaml",
                                  ["data.inference_window=[96,96,96]"])
    metadata = make_metadata(config, epoch=1, best=None, dice={})
    assert metadata.patch_size == tuple(config.data.patch_size)
    assert metadata.inference_window == (96, 96, 96)
    restored = CheckpointMetadata.model_validate_json(metadata.model_dump_json())
    assert restored.inference_window == (96, 96, 96)
