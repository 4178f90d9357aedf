"""Quality-control figures: an image with label contours on three orthogonal slices.

Used after MRI → CT registration (CT with the moved MRI labels) so that a person can
see at a glance whether the labels sit on the right anatomy. Rendering uses
matplotlib's non-interactive Agg backend, so it works on headless servers and in
Dask workers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctInputError
from subct.image.volume import Volume
from subct.io.writers import atomic_output

#: Display window for CT (HU): brain soft tissue, bone saturates.
CT_DISPLAY_WINDOW: tuple[float, float] = (-20.0, 100.0)


def _slice_centre(labels: NDArray[np.integer]) -> tuple[int, int, int]:
    """Voxel at the centre of mass of the labelled voxels (grid centre if none)."""
    coordinates = np.argwhere(labels > 0)
    if coordinates.size == 0:
        return (labels.shape[0] // 2, labels.shape[1] // 2, labels.shape[2] // 2)
    centre = coordinates.mean(axis=0).round().astype(int)
    return (int(centre[0]), int(centre[1]), int(centre[2]))


def label_contour_figure(
    image: Volume,
    labels: Volume,
    path: str | Path,
    title: str = "",
    window: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Save a PNG: ``image`` with ``labels`` contours on axial, coronal, sagittal slices.

    Args:
        image: background image (e.g. the CT), any orientation.
        labels: label map on the same grid as ``image``.
        path: output ``.png`` (written atomically).
        title: figure title (e.g. case name and MI before/after).
        window: intensity display range; default :data:`CT_DISPLAY_WINDOW` for images
            with air near −1000 HU, else the 1st–99th percentiles.
        dpi: resolution of the PNG.

    Slices pass through the centre of mass of the labels, shown in radiological
    view-independent RAS orientation (left of the subject on the left of the panel
    for axial/coronal).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colors as mcolors

    path = Path(path)
    if image.shape != labels.shape:
        raise SubctInputError(labels.path, f"labels shape {labels.shape} differs from image "
                              f"{image.shape}; resample them onto the image grid first")
    image_ras = image.reoriented("RAS")
    labels_ras = labels.reoriented("RAS")
    data = np.asarray(image_ras.array, dtype=np.float32)
    label_array = np.asarray(labels_ras.array).astype(np.int32)
    if window is None:
        window = CT_DISPLAY_WINDOW if float(data.min()) < -500 else (
            float(np.percentile(data, 1)), float(np.percentile(data, 99)))
    i, j, k = _slice_centre(label_array)
    spacing = image_ras.spacing
    panels = [
        ("axial", data[:, :, k].T, label_array[:, :, k].T, spacing[1] / spacing[0]),
        ("coronal", data[:, j, :].T, label_array[:, j, :].T, spacing[2] / spacing[0]),
        ("sagittal", data[i, :, :].T, label_array[i, :, :].T, spacing[2] / spacing[1]),
    ]
    present = [int(v) for v in np.unique(label_array) if v != 0]
    colour_map = matplotlib.colormaps["tab20"]
    figure, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for axis, (name, background, overlay, aspect) in zip(axes, panels, strict=True):
        axis.imshow(background, cmap="gray", vmin=window[0], vmax=window[1], origin="lower",
                    aspect=aspect, interpolation="nearest")
        for index, value in enumerate(present):
            mask = (overlay == value).astype(np.float32)
            if mask.any():
                colour = mcolors.to_hex(colour_map(index % 20))
                axis.contour(mask, levels=[0.5], colors=[colour], linewidths=0.8)
        axis.set_title(name)
        axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    try:
        with atomic_output(path, suffix=".png") as temporary:
            figure.savefig(temporary, dpi=dpi)
    finally:
        plt.close(figure)
    return path
