"""Recipe of ``tests/data/tiny_phantom_unet.safetensors``, a small pre-trained fixture.

A 3-level UNet (channels 8, 16, 32; merged left/right scheme, 4 mm voxels) trained for
150 Adam steps (lr 0.01, background weight 0.1) on the analytic head phantom's deep-brain
crop. It has learnt the phantom's ventricles and thalami (Dice > 0.6 on a moved copy), so
tests can check that labels land on anatomy without training a network inside a test.
Regenerate (about 4 s on 2 cores) with::

    python tests/support/tiny_phantom_unet.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "tiny_phantom_unet.safetensors"
NETWORK_KWARGS = {"in_channels": 1, "out_channels": 10, "channels": [8, 16, 32]}


def train_tiny_phantom_unet(path: Path = FIXTURE) -> Path:
    """Train the fixture network and save it as a subct checkpoint at ``path``."""
    import torch

    from subct.image.intracranial import locate_intracranial
    from subct.image.resample import resample_to_geometry
    from subct.inference.config import DEFAULT_CROP_OFFSET_MM, DEFAULT_CROP_SIZE_MM
    from subct.inference.crop import crop_grid, resample_to_crop
    from subct.labels.schemes import labels_to_indices, to_scheme
    from subct.model.checkpoint import CheckpointMetadata, save_checkpoint
    from subct.model.networks import build_network
    from subct.model.preprocessing import ct_window_normalise
    from tests.support.phantom import analytic_head_phantom

    torch.manual_seed(0)
    phantom = analytic_head_phantom(spacing_mm=2.0)
    location = locate_intracranial(phantom.ct)
    grid = crop_grid(location.centroid_ras_mm + np.asarray(DEFAULT_CROP_OFFSET_MM),
                     (4.0, 4.0, 4.0), DEFAULT_CROP_SIZE_MM, 4)
    image = ct_window_normalise(resample_to_crop(phantom.ct, grid))
    target_labels = resample_to_geometry(phantom.labels, grid.geometry, "nearest", 0)
    merged = to_scheme(np.asarray(target_labels.array), "merged")
    target = torch.from_numpy(labels_to_indices(merged, "merged"))[None]
    network = build_network("unet3d", **NETWORK_KWARGS)
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    weights = torch.ones(10)
    weights[0] = 0.1
    inputs = torch.from_numpy(image)[None, None]
    for _ in range(150):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(network(inputs), target, weight=weights)
        loss.backward()
        optimiser.step()
    metadata = CheckpointMetadata(network_name="unet3d", network_kwargs=NETWORK_KWARGS,
                                  label_scheme="merged", spacing_mm=(4.0, 4.0, 4.0),
                                  patch_size=(32, 48, 48), hu_window=(-100.0, 200.0))
    return save_checkpoint(path, network.eval(), metadata)


if __name__ == "__main__":
    print(train_tiny_phantom_unet())
