"""Test support: tiny nnU-Net raw datasets written to disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from subct.image.volume import Volume
from subct.io.writers import save_volume


def make_tiny_nnunet_dataset(folder: Path, cases: int = 3, side: int = 24) -> Path:
    """A small real-format dataset: CT in HU (air, head, bright/dark boxes) + class indices."""
    rng = np.random.default_rng(0)
    affine = np.eye(4)
    names = [f"case{i}" for i in range(cases)]
    for index, name in enumerate(names):
        hu = np.full((side, side, side), -1000.0, dtype=np.float32)
        hu[2:-2, 2:-2, 2:-2] = 30.0
        label = np.zeros(hu.shape, dtype=np.uint8)
        shift = index % 3
        label[5 + shift:11 + shift, 6:12, 6:14] = 1     # dark box: ventricle-like
        label[13:19, 12 + shift:18 + shift, 8:16] = 3   # bright box: thalamus-like
        hu[label == 1] = 5.0
        hu[label == 3] = 60.0
        hu += rng.normal(0, 3, hu.shape).astype(np.float32)
        save_volume(Volume(hu, affine), folder / "imagesTr" / f"{name}_0000.nii.gz")
        save_volume(Volume(label, affine), folder / "labelsTr" / f"{name}.nii.gz")
    (folder / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "CT"}, "labels": {"background": 0}, "numTraining": cases,
         "file_ending": ".nii.gz"}))
    (folder / "splits.json").write_text(json.dumps(
        {"train": names[:-1], "val": names[-1:], "test": names[-1:]}))
    return folder
