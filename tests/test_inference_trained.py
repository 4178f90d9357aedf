"""End-to-end check with a network that has actually learnt something.

A tiny UNet is trained (150 steps, 4 mm crop, merged left/right scheme) on the analytic
phantom's crop, then segments a moved (translated, LIA-reordered) copy. Labels must land
on the phantom's structures in the input's own grid: this fails if the crop is
misplaced or mapped back wrongly."""

from __future__ import annotations

import numpy as np
import torch

from subct.checkpoint import CheckpointMetadata
from subct.demo import analytic_head_phantom
from subct.inference import (
    DEFAULT_CROP_OFFSET_MM,
    DEFAULT_CROP_SIZE_MM,
    InferenceConfig,
    crop_grid,
    model_from_network,
    resample_to_crop,
    segment_volume,
)
from subct.io import Volume
from subct.labels import labels_to_indices, to_scheme
from subct.networks import build_network
from subct.preprocessing import ct_window_normalise
from subct.qc import locate_intracranial
from subct.resample import resample_to_geometry


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1))


def test_trained_tiny_network_segments_moved_phantom() -> None:
    torch.manual_seed(0)
    phantom = analytic_head_phantom(spacing_mm=2.0)
    location = locate_intracranial(phantom.ct)
    grid = crop_grid(location.centroid_ras_mm + np.asarray(DEFAULT_CROP_OFFSET_MM),
                     (4.0, 4.0, 4.0), DEFAULT_CROP_SIZE_MM, 4)
    image = ct_window_normalise(resample_to_crop(phantom.ct, grid))
    target_labels = resample_to_geometry(phantom.labels, grid.geometry, "nearest", 0)
    merged = to_scheme(np.asarray(target_labels.array), "merged")
    target = torch.from_numpy(labels_to_indices(merged, "merged"))[None]
    kwargs = {"in_channels": 1, "out_channels": 10, "channels": [8, 16, 32]}
    network = build_network("unet3d", **kwargs)
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    weights = torch.ones(10)
    weights[0] = 0.1
    inputs = torch.from_numpy(image)[None, None]
    for _ in range(150):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(network(inputs), target, weight=weights)
        loss.backward()
        optimiser.step()
    metadata = CheckpointMetadata(network_name="unet3d", network_kwargs=kwargs,
                                  label_scheme="merged", spacing_mm=(4.0, 4.0, 4.0),
                                  patch_size=(32, 48, 48))
    model = model_from_network(network, metadata, "cpu")

    # The same head, 17 mm to the right and 9 mm down, stored LIA.
    shift = np.eye(4)
    shift[:3, 3] = [17.0, 0.0, -9.0]
    moved_ct = Volume(phantom.ct.array, shift @ phantom.ct.affine).reoriented("LIA")
    moved_labels = Volume(phantom.labels.array, shift @ phantom.labels.affine).reoriented("LIA")
    result = segment_volume(moved_ct, model, InferenceConfig(tta=True, scheme="merged"))
    np.testing.assert_array_equal(result.labels.affine, moved_ct.affine)
    predicted, truth = result.labels.array, to_scheme(moved_labels.array, "merged")
    for label in (4, 10):  # ventricles and thalami (merged scheme)
        assert _dice(predicted == label, truth == label) > 0.6, label
