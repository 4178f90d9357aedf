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


#: Canvas of the overlay (pixels): three panels side by side, a title row above them and
#: a legend row below.
CANVAS_PX = (1200, 460)
PANEL_BOX_PX = (330, 300)
PANEL_TOP_PX = 70
LEGEND_TOP_PX = 430
LETTER_COLOUR = (255, 255, 0)


def _font(size: int) -> Any:
    """Pillow's bundled scalable font (FreeType), or its bitmap font where FreeType is
    missing."""
    from PIL import ImageFont  # lazy: only drawing an overlay needs Pillow

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # pragma: no cover - Pillow built without FreeType
        return ImageFont.load_default()


def _panel_pixels(grey_hu: NDArray[np.float32], label_slice: NDArray[Any],
                  lut: NDArray[np.float32], hu_window: tuple[float, float]) -> NDArray[np.uint8]:
    """RGB of one slice: CT in the grey window, labels alpha-blended in their colours.
    Array axes (horizontal world axis, vertical world axis), as sliced."""
    low, high = hu_window
    grey = np.clip((grey_hu - low) / (high - low), 0.0, 1.0)[..., None]
    colours = lut[np.asarray(label_slice, dtype=np.int64).clip(min=0, max=len(lut) - 1)]
    alpha = colours[..., 3:4]
    rgb = grey * (1.0 - alpha) + colours[..., :3] * alpha
    return np.asarray(np.rint(rgb * 255.0), dtype=np.uint8)


def render_overlay(ct: Volume, labels: Volume, config: OverlayConfig | None = None,
                   hu_offset: float = 0.0) -> bytes:
    """PNG bytes of the three-panel overlay of ``labels`` on ``ct`` (same grid required).

    Drawn with NumPy and Pillow (about 0.05 s; matplotlib took ~0.9 s of a 6 s ``subct
    segment --fast`` run): each slice is blended, scaled to its size in millimetres
    (nearest neighbour) and turned so that the convention's screen sides hold.
    """
    from PIL import Image, ImageDraw  # lazy: only drawing an overlay needs Pillow

    config = config or OverlayConfig()
    if ct.shape != labels.shape or not np.allclose(ct.affine, labels.affine, atol=1e-3):
        raise ValueError("overlay needs the CT and the labels on the same grid")
    ct_ras = ct.reoriented_view("RAS")  # views: only three slices are read
    lab_ras = labels.reoriented_view("RAS")
    spacing = np.asarray(ct_ras.spacing, dtype=np.float64)
    ci, cj, ck = _centre_index(lab_ras.array)
    grey = ct_ras.array  # slices are converted to HU below, not the whole volume
    labs = lab_ras.array
    panels = [  # name, slice (RAS array axes), horizontal axis, vertical axis, letters
        ("axial", grey[:, :, ck], labs[:, :, ck], 0, 1, ("R", "L"), ("A", "P")),
        ("coronal", grey[:, cj, :], labs[:, cj, :], 0, 2, ("R", "L"), ("S", "I")),
        ("sagittal", grey[ci, :, :], labs[ci, :, :], 1, 2, ("A", "P"), ("S", "I")),
    ]
    drawn = np.concatenate([np.asarray(panel[2]).ravel() for panel in panels])
    lut = np.zeros((max(int(drawn.max()), 0) + 1, 4), dtype=np.float32)
    present = [int(v) for v in np.unique(drawn) if v > 0]  # labels visible in the panels
    for value in present:
        lut[value, :3] = np.asarray(label_colour(value, config.scheme)) / 255.0
        lut[value, 3] = config.alpha

    canvas = Image.new("RGB", CANVAS_PX, (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    letter_font, title_font, legend_font = _font(18), _font(14), _font(11)
    column_width = CANVAS_PX[0] // 3
    box_w, box_h = PANEL_BOX_PX
    for column, (name, grey_slice, label_slice, h_axis, v_axis, h_letters, v_letters) in \
            enumerate(panels):
        rgb = _panel_pixels(_hu(grey_slice, hu_offset), label_slice, lut, config.hu_window)
        # x grows to the patient's right, y to anterior: radiological axial/coronal views
        # put the patient's right (large x) on the left; sagittal views put anterior left.
        reverse = (config.convention == "radiological") if h_axis == 0 else True
        left_letter, right_letter = h_letters if reverse else h_letters[::-1]
        if reverse:
            rgb = rgb[::-1]
        image = np.ascontiguousarray(np.transpose(rgb, (1, 0, 2))[::-1])  # superior/anterior up
        width_mm = spacing[h_axis] * grey_slice.shape[0]
        height_mm = spacing[v_axis] * grey_slice.shape[1]
        scale = min(box_w / width_mm, box_h / height_mm)
        size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))
        tile = Image.fromarray(image, "RGB").resize(size, Image.Resampling.NEAREST)
        left = column * column_width + (column_width - size[0]) // 2
        top = PANEL_TOP_PX + (box_h - size[1]) // 2
        canvas.paste(tile, (left, top))
        centre_x = column * column_width + column_width // 2
        centre_y = PANEL_TOP_PX + box_h // 2
        draw.text((centre_x, PANEL_TOP_PX - 28), name, fill=(255, 255, 255), font=title_font,
                  anchor="mm")
        # side letters just outside the image, kept inside this panel's column
        half_w = min(max(size[0] // 2 + 16, 60), column_width // 2 - 12)
        draw.text((centre_x - half_w, centre_y), left_letter, fill=LETTER_COLOUR,
                  font=letter_font, anchor="mm")
        draw.text((centre_x + half_w, centre_y), right_letter, fill=LETTER_COLOUR,
                  font=letter_font, anchor="mm")
        draw.text((centre_x, top - 12), v_letters[0], fill=LETTER_COLOUR, font=letter_font,
                  anchor="mm")
        draw.text((centre_x, top + size[1] + 12), v_letters[1], fill=LETTER_COLOUR,
                  font=letter_font, anchor="mm")
    _draw_legend(draw, present, config.scheme, legend_font)
    title = (config.title + f"  ({config.convention} convention)").strip()
    draw.text((CANVAS_PX[0] // 2, 16), title, fill=(255, 255, 255), font=title_font,
              anchor="mm")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _draw_legend(draw: Any, present: list[int], scheme: str, font: Any) -> None:
    """One colour swatch and name per structure drawn (left and right share a colour
    family), centred in a row under the panels."""
    names = scheme_names(scheme)
    seen: set[str] = set()
    legend: list[tuple[tuple[int, int, int], str]] = []
    for value in present:
        if value not in names:
            continue
        short = names[value].removeprefix("Left-").removeprefix("Right-")
        if short not in seen:
            seen.add(short)
            legend.append((label_colour(value, scheme), short))
    if legend:
        widths = [28 + int(draw.textlength(text, font=font)) + 18 for _, text in legend]
        x = max(4, (CANVAS_PX[0] - sum(widths)) // 2)
        for (colour, text), width in zip(legend, widths, strict=True):
            draw.rectangle((x, LEGEND_TOP_PX - 5, x + 22, LEGEND_TOP_PX + 5),
                           fill=tuple(int(c) for c in colour))
            draw.text((x + 28, LEGEND_TOP_PX), text, fill=(255, 255, 255), font=font,
                      anchor="lm")
            x += width


def save_overlay(ct: Volume, labels: Volume, path: str | Path,
                 config: OverlayConfig | None = None, hu_offset: float = 0.0) -> Path:
    """Render the overlay and write it atomically to ``path`` (PNG)."""
    return atomic_write_bytes(path, render_overlay(ct, labels, config, hu_offset))
