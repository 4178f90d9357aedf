"""Embedding subcortical-only maps: the labelled box keeps every voxel where it was."""

from __future__ import annotations

import numpy as np

from subct.synth.background import labelled_box, unlabelled_structures


def test_labelled_box_keeps_world_positions_and_every_label() -> None:
    labels = np.zeros((40, 50, 60), dtype=np.int16)
    labels[10:14, 20:22, 30:35] = 3
    labels[25, 40, 50] = 7
    affine = np.array([[0.0, -1.2, 0, 90], [1.1, 0, 0, -40], [0, 0, 2.0, 7], [0, 0, 0, 1]])
    box, box_affine = labelled_box(labels, affine)
    assert box.shape == (16, 21, 21)
    for value in (3, 7):
        before = np.argwhere(labels == value) @ affine[:3, :3].T + affine[:3, 3]
        after = np.argwhere(box == value) @ box_affine[:3, :3].T + box_affine[:3, 3]
        np.testing.assert_allclose(after, before)
    empty = np.zeros((4, 4, 4), dtype=np.int16)
    assert labelled_box(empty, affine)[0].shape == (4, 4, 4)  # nothing labelled: unchanged


def test_a_seven_class_map_lacks_amygdala_and_accumbens_wherever_it_sits() -> None:
    labels = np.zeros((64, 64, 64), dtype=np.int16)
    for value, y in zip(range(1, 8), range(8, 64, 8), strict=True):
        labels[20:44, y - 3:y + 3, 28:36] = value  # across the midline: left and right
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    assert unlabelled_structures(labels, affine) == (18, 26, 54, 58)
