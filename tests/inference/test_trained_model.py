"""End-to-end check with a network that has actually learnt something.

``tests/data/tiny_phantom_unet.safetensors`` is a small UNet pre-trained on the analytic
phantom (recipe: ``tests/support/tiny_phantom_unet.py``; merged left/right scheme, 4 mm).
It segments a moved (translated, LIA-reordered) copy of the phantom through every
engine: labels must land on the phantom's structures in the input's own grid, which
fails if the crop is misplaced, the graph export is wrong or labels map back wrongly."""

from __future__ import annotations

import numpy as np
import pytest

from subct.image.volume import Volume
from subct.inference.config import InferenceConfig
from subct.inference.model import load_model
from subct.inference.pipeline import segment_volume
from subct.labels.schemes import to_scheme
from tests.support.phantom import analytic_head_phantom
from tests.support.tiny_phantom_unet import FIXTURE


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1))


@pytest.fixture(scope="module")
def moved_phantom() -> tuple[Volume, np.ndarray]:
    """The phantom 17 mm to the right and 9 mm down, stored LIA, and its merged labels."""
    phantom = analytic_head_phantom(spacing_mm=2.0)
    shift = np.eye(4)
    shift[:3, 3] = [17.0, 0.0, -9.0]
    moved_ct = Volume(phantom.ct.array, shift @ phantom.ct.affine).reoriented("LIA")
    moved_labels = Volume(phantom.labels.array, shift @ phantom.labels.affine).reoriented("LIA")
    return moved_ct, to_scheme(moved_labels.array, "merged")


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "torch"])
def test_trained_tiny_network_segments_moved_phantom(
        backend: str, moved_phantom: tuple[Volume, np.ndarray]) -> None:
    moved_ct, truth = moved_phantom
    model = load_model(FIXTURE, "cpu", precision="fp32", backend=backend)
    assert model.backend == backend
    result = segment_volume(moved_ct, model, InferenceConfig(tta=True, scheme="merged"))
    np.testing.assert_array_equal(result.labels.affine, moved_ct.affine)
    assert result.runtime["backend"] == backend and result.runtime["precision"] == "fp32"
    for label in (4, 10):  # ventricles and thalami (merged scheme)
        assert _dice(result.labels.array == label, truth == label) > 0.6, label


def test_engines_agree_on_the_labels(moved_phantom: tuple[Volume, np.ndarray]) -> None:
    """The exported graph under OpenVINO / ONNX Runtime labels like PyTorch fp32."""
    moved_ct, _ = moved_phantom
    config = InferenceConfig(tta=True, scheme="merged")
    labels = {backend: segment_volume(moved_ct, load_model(FIXTURE, "cpu", "fp32", backend),
                                      config).labels.array
              for backend in ("openvino", "onnxruntime", "torch")}
    labelled = max(int((labels["torch"] > 0).sum()), 1)
    for backend in ("openvino", "onnxruntime"):
        assert (labels[backend] != labels["torch"]).sum() / labelled < 1e-3, backend
