"""A PNG to look at synthetic samples: three orthogonal slices each, targets outlined.

Each row is one sample; its columns are the axial, coronal and sagittal slices
through the centroid of the target structures. Axial and coronal slices show the
subject's right on the right of the picture (neurological convention), superior or
anterior up. Targets appear as coloured contours so that their alignment with the
image edges can be judged at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from subct.io.writers import atomic_output
from subct.labels.schemes import CANONICAL_LABELS


def _centre_of_targets(labels: NDArray[np.integer]) -> tuple[int, int, int]:
    mask = np.isin(labels, CANONICAL_LABELS)
    if not mask.any():
        return tuple(int(n // 2) for n in labels.shape)  # type: ignore[return-value]
    centre = np.argwhere(mask).mean(axis=0)
    return (int(round(centre[0])), int(round(centre[1])), int(round(centre[2])))


def _orthogonal_slices(
    volume: NDArray[np.generic], centre: tuple[int, int, int]
) -> list[NDArray[np.generic]]:
    """Axial, coronal, sagittal slices of a RAS volume, transposed for display (up = S/A)."""
    x, y, z = centre
    return [
        np.flipud(volume[:, :, z].T),  # axial: x right, y up
        np.flipud(volume[:, y, :].T),  # coronal: x right, z up
        np.flipud(volume[x, :, :].T),  # sagittal: y right, z up
    ]


def save_mosaic(
    images: Sequence[NDArray[np.floating]],
    label_maps: Sequence[NDArray[np.integer]],
    path: str | Path,
    titles: Sequence[str] | None = None,
) -> Path:
    """Write a PNG grid: one row per sample (image in grey, target contours in colour).

    Args:
        images: RAS network inputs in [0, 1] (displayed on that fixed scale, so
            windowed CT keeps its grey levels).
        label_maps: matching FreeSurfer-ID volumes; only the 17 targets are outlined.
        path: output PNG, written atomically.
        titles: optional row titles.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    rows = len(images)
    figure, axes = plt.subplots(rows, 3, figsize=(9, 3 * rows), squeeze=False)
    colours = plt.get_cmap("tab20")
    for row, (image, labels) in enumerate(zip(images, label_maps, strict=True)):
        centre = _centre_of_targets(labels)
        for column, (image_slice, label_slice, name) in enumerate(zip(
            _orthogonal_slices(image, centre), _orthogonal_slices(labels, centre),
            ("axial", "coronal", "sagittal"), strict=True,
        )):
            axis = axes[row][column]
            axis.imshow(image_slice, cmap="gray", interpolation="nearest", vmin=0.0, vmax=1.0)
            for index, label in enumerate(CANONICAL_LABELS):
                mask = label_slice == label
                if mask.any():
                    axis.contour(mask.astype(np.float32), levels=[0.5], linewidths=0.6,
                                 colors=[colours(index % 20)])
            axis.set_xticks([])
            axis.set_yticks([])
            title = name if titles is None else f"{titles[row]} {name}"
            axis.set_title(title, fontsize=8)
    figure.tight_layout()
    try:
        with atomic_output(path, suffix=".png") as temporary:
            figure.savefig(temporary, dpi=100)
    finally:
        plt.close(figure)
    return path
