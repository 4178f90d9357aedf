"""Geometry preprocessing shared by training and inference: RAS grid, spacing, skull strip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from subct.image.masks import skull_strip_mask
from subct.image.volume import Volume
from subct.model.preprocessing import (
    GeometryConfig,
    preprocess_ct,
    preprocess_labels,
    to_network_grid,
)


def _head(shape: tuple[int, int, int] = (40, 40, 30)) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic head in HU: air, 3-voxel skull shell (1000 HU), brain (35 HU), scalp."""
    grid = np.indices(shape).astype(np.float32)
    centre = (np.asarray(shape, dtype=np.float32) - 1) / 2
    radius = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[radius < 14] = 40.0          # scalp (soft tissue outside the skull)
    hu[radius < 12] = 1000.0        # skull
    brain = radius < 9
    hu[brain] = 35.0
    return hu, brain


def test_skull_strip_keeps_brain_and_drops_scalp_and_bone() -> None:
    hu, brain = _head()
    mask = skull_strip_mask(hu, (1.0, 1.0, 1.0), erosion_mm=1.0)
    assert (mask & brain).sum() / brain.sum() > 0.95
    assert not (mask & ~brain).any()


def test_network_grid_is_ras_at_training_spacing_and_labels_stay_labels() -> None:
    hu, brain = _head()
    lia = np.array([[-2.0, 0, 0, 40], [0, 0, 2.0, -20], [0, -2.0, 0, 30], [0, 0, 0, 1]])
    ct = Volume(hu, lia)
    grid = to_network_grid(ct, (1.0, 1.0, 1.0), is_label=False)
    assert grid.orientation == "RAS"
    np.testing.assert_allclose(grid.spacing, (1.0, 1.0, 1.0))
    assert grid.shape == (80, 60, 80)  # 40×2 mm, 30×2 mm, 40×2 mm
    labels = np.where(brain, 10, 0).astype(np.int16)
    labels[brain & (np.indices(hu.shape)[0] > 20)] = 49
    indices = preprocess_labels(Volume(labels, lia), GeometryConfig())
    assert set(np.unique(indices)) == {0, 3, 4}  # nearest neighbour: no blended labels
    merged = preprocess_labels(Volume(labels, lia), GeometryConfig(merge_left_right=True),
                               scheme="merged")
    assert set(np.unique(merged)) == {0, 2}  # thalamus is class 2 of the merged scheme
    stripped, image = preprocess_ct(ct, GeometryConfig(skull_strip=True))
    assert image.min() >= 0 and image.max() <= 1
    assert float(stripped.array.max()) < 1000  # the skull is gone


def test_foreground_oversampling_centres_small_structures_and_cache_is_reused(
        tmp_path: Path) -> None:
    from subct.training.config import training_config_from_dict
    from subct.training.data import class_locations, load_case, sample_patch
    from tests.support.datasets import make_tiny_nnunet_dataset

    label = np.zeros((40, 40, 40), dtype=np.uint8)
    label[2:4, 30:32, 5:7] = 7      # 8 voxels: a tiny structure in a corner
    label[10:30, 10:30, 10:30] = 1  # a large one
    image = np.zeros(label.shape, dtype=np.float32)
    locations = class_locations(label)
    assert sorted(locations) == [1, 7] and locations[7].size == 8
    rng = np.random.default_rng(0)
    hits = sum(7 in sample_patch(image, label, (8, 8, 8), rng, 1.0, locations)[1]
               for _ in range(200))
    assert 70 < hits < 130  # ~half the patches: classes drawn uniformly, not by size
    assert sum(7 in sample_patch(image, label, (8, 8, 8), rng, 0.0)[1]
               for _ in range(200)) < 20
    padded_image, padded_label = sample_patch(image[:6, :6, :6], label[:6, :6, :6],
                                              (8, 8, 8), rng, 1.0)
    assert padded_image.shape == padded_label.shape == (8, 8, 8)

    dataset = make_tiny_nnunet_dataset(tmp_path / "Dataset001_Tiny", cases=1)
    config = training_config_from_dict({
        "output_dir": str(tmp_path / "out"),
        "data": {"real": {"dataset_dir": str(dataset)}, "patch_size": [16, 16, 16]}})
    first = load_case(dataset, "case0", config, cache_dir=tmp_path / "cache")
    second = load_case(dataset, "case0", config, cache_dir=tmp_path / "cache")
    assert isinstance(second.image, np.memmap) and isinstance(second.label, np.memmap)
    np.testing.assert_array_equal(np.asarray(first.label), np.asarray(second.label))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
