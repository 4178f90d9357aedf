"""Overlay pictures: CT slices with coloured structures, for eyeballing a segmentation.

One PNG per case shows an axial, a coronal and a sagittal slice through the centre of
the segmented structures, CT in a brain window, labels in FreeSurfer's colour-table
colours (left and right share a colour there, so the side letters on each panel are
what tells them apart). Panels are drawn in millimetres (non-cubic voxels keep their
true aspect) and, by default, in the **radiological** convention used for CT: the
patient's right is on the left of the axial and coronal panels. ``neurological`` puts
it on the right. The letters R/L, A/P, S/I at the panel edges are derived from the
image affine, never assumed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from subct.config import StrictConfig
from subct.image.volume import Volume
from subct.io.writers import atomic_write_bytes
from subct.labels.colours import label_colour
from subct.labels.schemes import scheme_names

Convention = Literal["radiological", "neurological"]


class OverlayConfig(StrictConfig):
    """How an overlay is drawn.

    Attributes:
        convention: ``radiological`` (patient right on screen left) or ``neurological``.
        hu_window: CT grey-level window (HU); the default is a brain window.
        alpha: label opacity (0..1).
        scheme: label scheme of the label map (colours and legend).
        dpi: resolution of the PNG.
        title: text above the panels (e.g. the case name).
    """

    convention: Convention = "radiological"
    hu_window: tuple[float, float] = (-10.0, 90.0)
    alpha: float = 0.45
    scheme: str = "canonical"
    dpi: int = 100
    title: str = ""


def _centre_index(labels: NDArray[Any]) -> tuple[int, int, int]:
    """Voxel index of the labels' centre of mass (array centre when there are none).

    Computed from the three axis profiles of the label mask: on a 512 × 512 × 150
    grid this is ~10× faster than ``scipy.ndimage.center_of_mass`` on the full mask.
    """
    mask = labels > 0
    total = int(np.count_nonzero(mask))
    if total == 0:
        return (labels.shape[0] // 2, labels.shape[1] // 2, labels.shape[2] // 2)
    per_i = np.count_nonzero(mask, axis=(1, 2))
    per_j = np.count_nonzero(mask, axis=(0, 2))
    per_k = np.count_nonzero(mask, axis=(0, 1))
    centre = [int(np.round(np.dot(profile, np.arange(profile.size)) / total))
              for profile in (per_i, per_j, per_k)]
    return (centre[0], centre[1], centre[2])


def _hu(slice_values: NDArray[Any], hu_offset: float) -> NDArray[np.float32]:
    return np.asarray(slice_values, dtype=np.float32) - np.float32(hu_offset)


def render_overlay(ct: Volume, labels: Volume, config: OverlayConfig | None = None,
                   hu_offset: float = 0.0) -> bytes:
    """PNG bytes of the three-panel overlay of ``labels`` on ``ct`` (same grid required)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    config = config or OverlayConfig()
    if ct.shape != labels.shape or not np.allclose(ct.affine, labels.affine, atol=1e-3):
        raise ValueError("overlay needs the CT and the labels on the same grid")
    ct_ras = ct.reoriented_view("RAS")  # views: only three slices are read
    lab_ras = labels.reoriented_view("RAS")
    spacing = np.asarray(ct_ras.spacing)
    origin = ct_ras.affine[:3, 3]
    ci, cj, ck = _centre_index(lab_ras.array)
    grey = ct_ras.array  # slices are converted to HU below, not the whole volume
    drawn = np.concatenate([lab_ras.array[:, :, ck].ravel(), lab_ras.array[:, cj, :].ravel(),
                            lab_ras.array[ci, :, :].ravel()])
    lut = np.zeros((int(max(int(drawn.max()), 0)) + 1, 4), dtype=np.float32)
    present = [int(v) for v in np.unique(drawn) if v > 0]  # labels visible in the panels
    for value in present:
        lut[value, :3] = np.asarray(label_colour(value, config.scheme)) / 255.0
        lut[value, 3] = config.alpha

    def extent(axis: int) -> tuple[float, float]:
        low = origin[axis] - spacing[axis] / 2.0
        return (float(low), float(low + spacing[axis] * ct_ras.shape[axis]))

    labs = lab_ras.array
    panels = [
        ("axial", _hu(grey[:, :, ck].T, hu_offset), labs[:, :, ck].T, 0, 1,
         ("R", "L"), ("A", "P")),
        ("coronal", _hu(grey[:, cj, :].T, hu_offset), labs[:, cj, :].T, 0, 2,
         ("R", "L"), ("S", "I")),
        ("sagittal", _hu(grey[ci, :, :].T, hu_offset), labs[ci, :, :].T, 1, 2,
         ("A", "P"), ("S", "I")),
    ]
    figure = Figure(figsize=(12, 4.6), dpi=config.dpi, facecolor="black")
    low, high = config.hu_window
    for column, (name, image, label_slice, h_axis, v_axis, h_letters, v_letters) in enumerate(
            panels):
        axes = figure.add_subplot(1, 3, column + 1)
        h0, h1 = extent(h_axis)
        v0, v1 = extent(v_axis)
        axes.imshow(image, cmap="gray", vmin=low, vmax=high, origin="lower",
                    extent=(h0, h1, v0, v1), interpolation="nearest")
        axes.imshow(lut[np.asarray(label_slice, dtype=np.int64).clip(min=0)], origin="lower",
                    extent=(h0, h1, v0, v1), interpolation="nearest")
        # x grows to the patient's right, y to anterior: radiological axial/coronal views
        # put the patient's right (large x) on the left; sagittal views put anterior left.
        reverse = (config.convention == "radiological") if h_axis == 0 else True
        left_letter, right_letter = h_letters if reverse else h_letters[::-1]
        axes.set_xlim((h1, h0) if reverse else (h0, h1))
        axes.set_ylim(v0, v1)
        axes.set_axis_off()
        top_letter, bottom_letter = v_letters
        style: dict[str, Any] = {"color": "yellow", "fontsize": 14, "fontweight": "bold",
                 "transform": axes.transAxes}
        axes.text(0.02, 0.5, left_letter, ha="left", va="center", **style)
        axes.text(0.98, 0.5, right_letter, ha="right", va="center", **style)
        axes.text(0.5, 0.98, top_letter, ha="center", va="top", **style)
        axes.text(0.5, 0.02, bottom_letter, ha="center", va="bottom", **style)
        axes.set_title(name, color="white", fontsize=10)
    names = scheme_names(config.scheme)
    seen: set[str] = set()
    handles = []
    for value in present:
        colour = label_colour(value, config.scheme)
        if value not in names:
            continue
        short = names[value].removeprefix("Left-").removeprefix("Right-")
        if short in seen:
            continue
        seen.add(short)
        rgb = (colour[0] / 255.0, colour[1] / 255.0, colour[2] / 255.0)
        handles.append(Patch(color=rgb, label=short))
    if handles:
        figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 9),
                      fontsize=8, frameon=False, labelcolor="white")
    title = config.title + f"  ({config.convention} convention)"
    figure.suptitle(title.strip(), color="white", fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="black")
    return buffer.getvalue()


def save_overlay(ct: Volume, labels: Volume, path: str | Path,
                 config: OverlayConfig | None = None, hu_offset: float = 0.0) -> Path:
    """Render the overlay and write it atomically to ``path`` (PNG)."""
    return atomic_write_bytes(path, render_overlay(ct, labels, config, hu_offset))
