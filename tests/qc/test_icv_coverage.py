"""``icv_cut_by_field_of_view``: a scan that cuts the vertex has a lower-bound ICV, flagged
and kept out of the normative percentiles."""

from __future__ import annotations

import numpy as np

from subct.image.volume import Volume
from subct.inference.config import InferenceConfig
from subct.inference.model import load_model
from subct.inference.pipeline import segment_volume
from tests.support.phantom import analytic_head_phantom
from tests.support.tiny_phantom_unet import FIXTURE


def _without_top(volume: Volume, slices: int) -> Volume:
    """The phantom (RAS voxel order) without its top ``slices`` axial slices."""
    assert volume.affine[2, 2] > 0
    return Volume(np.asarray(volume.array)[:, :, :-slices], volume.affine.copy())


def test_edge_areas_follow_the_grid_direction() -> None:
    from subct.image.masks import mask_edge_areas_mm2

    mask = np.zeros((4, 4, 5), dtype=bool)
    mask[:, :, -1] = True  # the last slice full
    mask[:2, :, 0] = True  # half of the first
    up = np.diag([2.0, 2.0, 3.0, 1.0])
    assert mask_edge_areas_mm2(mask, up) == (64.0, 32.0)  # (top, bottom), 4 mm² pixels
    down = np.diag([2.0, 2.0, -3.0, 1.0])  # the first slice is the top one
    assert mask_edge_areas_mm2(mask, down) == (32.0, 64.0)


def test_a_cut_vertex_flags_the_icv_and_withholds_its_percentile() -> None:
    model = load_model(FIXTURE, "cpu", precision="fp32")
    config = InferenceConfig(scheme="merged")
    ct = analytic_head_phantom(spacing_mm=2.0).ct
    whole = segment_volume(ct, model, config)
    cut = segment_volume(_without_top(ct, 20), model, config)  # 40 mm off the top
    assert "icv_cut_by_field_of_view" not in [flag.code for flag in whole.qc.flags]
    assert whole.qc.input.facts["intracranial_top_slice_mm2"] == 0
    flag = next(f for f in cut.qc.flags if f.code == "icv_cut_by_field_of_view")
    assert flag.structures == ("intracranial_volume",) and "lower bound" in flag.message
    assert cut.qc.input.facts["intracranial_top_slice_mm2"] > 500
    assert cut.intracranial_volume_mm3 < whole.intracranial_volume_mm3  # type: ignore[operator]
    assert "percentile" in whole.normative(60, "F")["intracranial_volume"]
    assert cut.normative(60, "F")["intracranial_volume"] == {
        "reason": "the scan cuts the vertex: the ICV is a lower bound"}
