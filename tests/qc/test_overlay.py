"""Overlay PNG: colours from the FreeSurfer LUT, correct side in each convention."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from subct.image.volume import Volume
from subct.labels.colours import FREESURFER_COLOURS
from subct.qc.overlay import OverlayConfig, render_overlay, save_overlay
from tests.support.phantom import analytic_head_phantom


def _left_only_labels(ct: Volume) -> Volume:
    """Labels: left thalamus (FreeSurfer 10) only, at world x < 0 (patient's left)."""
    phantom = analytic_head_phantom(spacing_mm=2.0)
    labels = np.where(phantom.labels.array == 10, 10, 0).astype(np.int16)
    return phantom.labels.with_array(labels)


def _colour_columns(png: bytes, colour: tuple[int, int, int]) -> np.ndarray:
    """Columns of label-coloured pixels in the axial panel, relative to the head centre
    (negative: screen left of the head's centre)."""
    image = matplotlib.image.imread(io.BytesIO(png))[..., :3]
    width = image.shape[1]
    axial = image[int(image.shape[0] * 0.15):int(image.shape[0] * 0.85), : width // 3]
    target = np.asarray(colour) / 255.0
    # blended with grey at alpha 0.45: the hue dominates; match green-dominant pixels
    green = (axial[..., 1] > axial[..., 0] + 0.08) & (axial[..., 1] > axial[..., 2] + 0.08)
    assert target[1] > target[0]
    bright = axial.mean(axis=2) > 0.9  # the white skull ring (1000 HU)
    head_centre = np.argwhere(bright)[:, 1].mean()
    return np.argwhere(green)[:, 1] - head_centre


@pytest.mark.parametrize("axcodes", ["RAS", "LIA"])
def test_left_structure_is_on_screen_right_in_radiological(axcodes: str) -> None:
    phantom = analytic_head_phantom(spacing_mm=2.0)
    ct = phantom.ct
    labels = _left_only_labels(ct)
    if axcodes != "RAS":
        ct, labels = ct.reoriented(axcodes), labels.reoriented(axcodes)
    radiological = _colour_columns(render_overlay(ct, labels), FREESURFER_COLOURS[10])
    neurological = _colour_columns(
        render_overlay(ct, labels, OverlayConfig(convention="neurological")),
        FREESURFER_COLOURS[10])
    assert radiological.size > 20 and neurological.size > 20
    assert radiological.mean() > 5  # patient's left on the screen's right
    assert neurological.mean() < -5


def test_overlay_needs_same_grid_and_is_written_atomically(tmp_path: Path) -> None:
    phantom = analytic_head_phantom(spacing_mm=2.0)
    with pytest.raises(ValueError, match="same grid"):
        render_overlay(phantom.ct, phantom.labels.reoriented("LIA"))
    path = save_overlay(phantom.ct, phantom.labels, tmp_path / "case_overlay.png",
                        OverlayConfig(title="case"))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["case_overlay.png"]
