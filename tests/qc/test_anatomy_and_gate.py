"""subct.qc.gate (refuse what is not a head CT) and subct.qc.anatomy (coverage,
intensities, asymmetry) on small arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from subct.errors import SubctInputError
from subct.image.volume import Volume
from subct.inference.predict import _pass_agreement
from subct.io.hounsfield import OUTSIDE_FOV_HU
from subct.qc.anatomy import (
    ASYMMETRY_LIMIT_PERCENT,
    AnatomyReport,
    check_asymmetry,
    check_coverage,
    check_intensities,
)
from subct.qc.gate import check_orientation, check_size, with_assumed_orientation

NAMES = ["Left-Lateral-Ventricle", "Left-Thalamus", "Left-Putamen", "Brain-Stem"]


def _crop() -> tuple[np.ndarray, np.ndarray]:
    indices = np.zeros((40, 40, 40), dtype=np.int64)
    hu = np.full((40, 40, 40), 30.0, dtype=np.float32)
    indices[5:15, 5:15, 5:15] = 1      # ventricle
    hu[5:15, 5:15, 5:15] = 8.0         # at CSF density
    indices[20:30, 20:30, 20:30] = 2   # thalamus
    indices[20:30, 5:15, 20:30] = 3    # putamen
    indices[30:38, 30:38, 2:10] = 4    # brainstem, low in the box
    return indices, hu


def test_full_field_of_view_needs_no_coverage_flag() -> None:
    indices, hu = _crop()
    report = AnatomyReport()
    check_coverage(indices, hu, NAMES, report)
    assert not report.flags and report.reaches_basal_ganglia


def test_structures_outside_or_cut_by_the_scan_are_reported() -> None:
    indices, hu = _crop()
    hu[:, :, :12] = OUTSIDE_FOV_HU           # the scan starts above z = 12
    indices[:, :, :12] = 0                   # (the network sees nothing there)
    report = AnatomyReport()
    check_coverage(indices, hu, NAMES, report)
    assert report.not_in_view == ["Brain-Stem"]
    assert report.cut_by_view == ["Left-Lateral-Ventricle"]
    assert {f.code for f in report.flags} == {"not_in_field_of_view", "cut_by_field_of_view"}
    assert report.reaches_basal_ganglia      # thalamus and putamen are whole


def test_a_scan_that_misses_the_basal_ganglia() -> None:
    indices, hu = _crop()
    hu[:, :, 16:] = OUTSIDE_FOV_HU
    indices[:, :, 16:] = 0
    report = AnatomyReport()
    check_coverage(indices, hu, NAMES, report)
    assert not report.reaches_basal_ganglia


def test_ventricle_on_tissue_and_blood_in_deep_grey() -> None:
    indices, hu = _crop()
    report = AnatomyReport()
    check_intensities(indices, hu, NAMES, report)
    assert not report.flags
    hu[5:15, 5:15, 5:15] = 35.0                   # the "ventricle" lies on grey matter
    hu[20:30, 20:30, 20:24] = 70.0                # a haematoma in the thalamus (40 %)
    report = AnatomyReport()
    check_intensities(indices, hu, NAMES, report)
    messages = {f.code: f.message for f in report.flags}
    assert set(messages) == {"ventricle_on_tissue", "dense_in_structure"}
    assert "Left-Thalamus" in messages["dense_in_structure"]
    assert "Left-Putamen" not in messages["dense_in_structure"]
    # each flag names the structure it puts in doubt, and only that one
    concerned = {f.code: f.structures for f in report.flags}
    assert concerned == {"ventricle_on_tissue": ("Left-Lateral-Ventricle",),
                         "dense_in_structure": ("Left-Thalamus",)}
    dense = next(f for f in report.flags if f.code == "dense_in_structure")
    assert dense.concerns("Left-Thalamus") and not dense.concerns("Left-Putamen")


def test_asymmetry_limits() -> None:
    report = AnatomyReport()
    limit = ASYMMETRY_LIMIT_PERCENT["Hippocampus"]
    check_asymmetry({"Left-Hippocampus": 3400.0, "Right-Hippocampus": 3300.0,
                     "Left-Thalamus": 7000.0, "Right-Thalamus": None}, report)
    assert not report.flags and report.facts["asymmetry_percent"]["Hippocampus"] < limit
    check_asymmetry({"Left-Hippocampus": 2400.0, "Right-Hippocampus": 3400.0}, report)
    assert [f.code for f in report.flags] == ["asymmetry"]
    assert "right larger" in report.flags[0].message
    assert report.flags[0].structures == ("Left-Hippocampus", "Right-Hippocampus")


def test_tta_agreement_is_dice_of_the_two_passes() -> None:
    first = np.zeros((3, 10, 10, 10), dtype=np.float32)
    first[0] = 1.0
    first[1, :5], first[0, :5] = 2.0, 0.0     # class 1 in the first half
    second = first.copy()
    second[1, 4], second[2, 4] = 0.0, 3.0     # one slab moves from class 1 to class 2
    scores = _pass_agreement(first, second)
    assert scores[1] == pytest.approx(2 * 400 / (500 + 400))
    assert scores[2] == 0.0
    # the mirrored pass comes as a list of channel views: the same scores, 2 threads too
    assert _pass_agreement(first, list(second), threads=2) == scores


def test_channel_argmax_equals_numpy_argmax_with_ties() -> None:
    from subct.inference.window import channel_argmax

    values = np.random.default_rng(3).integers(0, 3, (5, 6, 4, 3)).astype(np.float32)
    part = slice(1, 5)  # ties everywhere (3 values over 5 channels): the first wins
    expected = values[:, part].argmax(axis=0)
    np.testing.assert_array_equal(channel_argmax(values, part), expected)
    np.testing.assert_array_equal(channel_argmax([c[:, ::-1] for c in values], part),
                                  values[:, part, ::-1].argmax(axis=0))


def test_gate_size_and_orientation() -> None:
    tiny = Volume(np.zeros((5, 5, 5), np.float32), np.eye(4), None)
    with pytest.raises(SubctInputError, match="too small"):
        check_size(tiny, force=False)
    check_size(tiny, force=True)  # forced: no error
    unknown = Volume(np.zeros((20, 30, 40), np.int16), np.diag([-2.0, 2.0, 3.0, 1.0]), None,
                     metadata={"orientation_unknown": True})
    with pytest.raises(SubctInputError, match="--assume-orientation"):
        check_orientation(unknown, None, force=False)
    assert check_orientation(unknown, None, force=True) is unknown
    stated = check_orientation(unknown, "LPS", force=False)
    assert stated.orientation == "LPS"
    np.testing.assert_allclose(stated.spacing, (2.0, 2.0, 3.0))
    assert stated.metadata["orientation_assumed"] == "LPS"
    assert "orientation_unknown" not in stated.metadata
    centre = stated.affine @ np.append((np.asarray(stated.shape) - 1) / 2.0, 1.0)
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)
    assert with_assumed_orientation(unknown, "ras").orientation == "RAS"


def test_a_lost_structure_whose_mirror_is_whole_is_not_blamed_on_the_field_of_view() -> None:
    names = ["Left-Pallidum", "Right-Pallidum"]
    indices = np.zeros((40, 40, 40), dtype=np.int64)
    hu = np.full((40, 40, 40), 30.0, dtype=np.float32)
    hu[:, :, :5] = OUTSIDE_FOV_HU                 # the scan is cut far below
    indices[25:30, 20:25, 20:25] = 2              # right pallidum whole, left one lost
    report = AnatomyReport()
    check_coverage(indices, hu, names, report)
    assert report.not_in_view == [] and report.cut_by_view == []


def test_blood_next_to_a_structure_is_a_warning_and_specks_are_not() -> None:
    from subct.qc.anatomy import check_hyperdense_regions

    shape = (60, 60, 60)
    grid = np.indices(shape)
    hu = np.random.default_rng(0).normal(38.0, 4.0, shape).astype(np.float32)  # grey matter
    inside = np.zeros(shape, dtype=bool)
    inside[4:56, 4:56, 4:56] = True
    indices = np.zeros(shape, dtype=np.int64)
    indices[20:30, 20:30, 20:30] = 5          # a "putamen"
    names = [f"S{i}" for i in range(1, 18)]
    names[4] = "Left-Putamen"
    # a calcification (with its partial-volume rim) and a small speck: not blood
    calcium = sum((g - c) ** 2 for g, c in zip(grid, (40, 40, 40), strict=True)) <= 9
    hu[calcium] = 300.0
    hu[45:47, 15:17, 15:17] = 70.0
    report = AnatomyReport()
    check_hyperdense_regions(indices, hu, inside, names, (1.0, 1.0, 1.0), report)
    assert not report.flags and report.facts["hyperdense_regions_mm3"] == []
    # a 1.7 cm³ haematoma 3 mm lateral to the structure
    blood = sum((g - c) ** 2 for g, c in zip(grid, (25, 25, 40), strict=True)) <= 7.5 ** 2
    hu[blood] = 70.0
    report = AnatomyReport()
    check_hyperdense_regions(indices, hu, inside, names, (1.0, 1.0, 1.0), report)
    flags = [f for f in report.flags if f.code == "hyperdense_lesion"]
    assert len(flags) == 1 and flags[0].severity == "warning"
    assert "Left-Putamen" in flags[0].message and flags[0].structures == ("Left-Putamen",)
    assert report.facts["hyperdense_regions_mm3"][0] > 1000.0
    # far from every structure: an info note only
    indices[:] = 0
    report = AnatomyReport()
    check_hyperdense_regions(indices, hu, inside, names, (1.0, 1.0, 1.0), report)
    assert [f.severity for f in report.flags] == ["info"]


def test_a_ventricle_label_spread_over_hypodense_tissue_is_flagged() -> None:
    from subct.qc.anatomy import ventricle_interior_hu, ventricle_tissue_shares

    rng = np.random.default_rng(1)
    hu = rng.normal(28.0, 3.0, (48, 48, 48)).astype(np.float32)   # white matter
    hu[10:22, 10:38, 10:22] = rng.normal(8.0, 3.0, (12, 28, 12))  # the ventricle's CSF
    indices = np.zeros(hu.shape, dtype=np.int64)
    # a label one voxel wider than the CSF all round (partial volume): not flagged
    indices[9:23, 9:39, 9:23] = 1
    level, shares = ventricle_tissue_shares({"v": ventricle_interior_hu(indices == 1, hu)})
    assert level is not None and abs(level - 8.0) < 3.0 and shares["v"] < 0.1
    report = AnatomyReport()
    check_intensities(indices, hu, NAMES, report)
    assert not report.flags
    # periventricular white-matter disease at 18 HU taken into the label, three times
    # the ventricle's size: flagged, though the label's median stays below the 25 HU limit
    hu[22:46, 10:38, 10:22] = rng.normal(18.0, 3.0, (24, 28, 12))
    hu[10:22, 10:38, 22:34] = rng.normal(18.0, 3.0, (12, 28, 12))
    indices[9:47, 9:39, 9:35] = 1
    report = AnatomyReport()
    check_intensities(indices, hu, NAMES, report)
    flags = [f for f in report.flags if f.code == "ventricle_on_tissue"]
    assert len(flags) == 1 and "interior" in flags[0].message
    assert flags[0].structures == ("Left-Lateral-Ventricle",)
    assert float(np.median(hu[indices == 1])) < 25.0
    # 5 mm slices need a larger share (partial volume): a label a third tissue passes
    figures = report.facts["ventricle_median_hu_and_dense_fraction"]
    share = figures["Left-Lateral-Ventricle_interior_denser_than_csf"]
    assert share > 0.5
    indices[:] = 0
    indices[9:29, 9:39, 9:23] = 1               # less of the tissue in the label
    report = AnatomyReport()
    check_intensities(indices, hu, NAMES, report)
    figures = report.facts["ventricle_median_hu_and_dense_fraction"]
    assert 0.2 < figures["Left-Lateral-Ventricle_interior_denser_than_csf"] < 0.45
    assert [f.code for f in report.flags] == ["ventricle_on_tissue"]
    report = AnatomyReport()
    check_intensities(indices, hu, NAMES, report, slice_mm=5.0)
    assert not report.flags


def test_noise_is_not_anatomy_and_a_head_is() -> None:
    from subct.qc.checks import MIN_NEIGHBOUR_CORRELATION, neighbour_correlation
    from tests.support.phantom import analytic_head_phantom

    head = analytic_head_phantom(spacing_mm=4.0).ct
    noise = Volume(np.random.default_rng(1).uniform(-1024, 3000, (64, 64, 48))
                   .astype(np.float32), np.eye(4))
    assert neighbour_correlation(head) > 0.9
    assert abs(neighbour_correlation(noise)) < MIN_NEIGHBOUR_CORRELATION / 5
