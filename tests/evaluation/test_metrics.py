"""Metrics checked against analytic answers and independent implementations.

Independent references: SimpleITK ``LabelOverlapMeasuresImageFilter`` (Dice, Jaccard,
volume similarity) and ``HausdorffDistanceImageFilter`` (set-based HD), MONAI's
``compute_hausdorff_distance`` / ``compute_average_surface_distance`` (surface-based,
same 6-neighbour surface and percentile convention as ours, so they must agree to
float32 precision), and the analytic lens volume of two intersecting spheres.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

from subct.evaluation.metrics import (
    CaseMetrics,
    binary_metrics,
    label_map_metrics,
    summarise,
    surface_distances,
    surface_mask,
)

SPACING = (0.7, 1.0, 1.5)  # mm, deliberately anisotropic
SHAPE = (72, 50, 34)  # 50.4 × 50 × 51 mm


def ball(center_mm: np.ndarray, radius_mm: float, shape=SHAPE, spacing=SPACING) -> np.ndarray:
    """Voxels whose centre lies within ``radius_mm`` of ``center_mm`` (world = index × spacing)."""
    axes = [np.arange(n) * s - c for n, s, c in zip(shape, spacing, center_mm, strict=True)]
    grid = np.meshgrid(*axes, indexing="ij", sparse=True)
    return sum(g**2 for g in grid) <= radius_mm**2


def lens_volume(r: float, big_r: float, d: float) -> float:
    """Volume (mm³) of the intersection of two spheres of radii r, R at centre distance d."""
    return (
        math.pi * (big_r + r - d) ** 2
        * (d * d + 2 * d * r - 3 * r * r + 2 * d * big_r + 6 * r * big_r - 3 * big_r**2)
        / (12 * d)
    )


@pytest.fixture(scope="module")
def two_spheres() -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Reference sphere r1 = 10 mm, prediction sphere r2 = 12 mm, centres 3 mm apart (oblique)."""
    r1, r2, d = 10.0, 12.0, 3.0
    center = np.array([25.0, 25.0, 25.0])
    direction = np.array([1.0, 1.0, 1.0]) / math.sqrt(3.0)
    ref = ball(center, r1)
    pred = ball(center + d * direction, r2)
    return pred, ref, {"r1": r1, "r2": r2, "d": d}


def _itk(mask: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(np.transpose(mask.astype(np.uint8), (2, 1, 0)).copy())
    image.SetSpacing(SPACING)
    return image


def _monai(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    y_pred = torch.from_numpy(pred)[None, None].float()
    y = torch.from_numpy(ref)[None, None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(y_pred, y, include_background=True, spacing=SPACING)
        hd95 = compute_hausdorff_distance(
            y_pred, y, include_background=True, percentile=95, spacing=SPACING
        )
        assd = compute_average_surface_distance(
            y_pred, y, include_background=True, symmetric=True, spacing=SPACING
        )
    return {"hd": float(hd), "hd95": float(hd95), "assd": float(assd)}


def test_spheres_match_analytic_answers(two_spheres):
    pred, ref, geometry = two_spheres
    r1, r2, d = geometry["r1"], geometry["r2"], geometry["d"]
    result = binary_metrics(pred, ref, SPACING)
    assert result.status == "both_present"
    # Surface HD of a sphere inside-offset from another: d + r2 - r1, within a voxel.
    assert result.hausdorff_mm == pytest.approx(d + r2 - r1, abs=max(SPACING))
    volume_1 = 4.0 / 3.0 * math.pi * r1**3
    volume_2 = 4.0 / 3.0 * math.pi * r2**3
    analytic_dice = 2.0 * lens_volume(r1, r2, d) / (volume_1 + volume_2)
    assert result.dice == pytest.approx(analytic_dice, rel=0.03)
    assert result.volume_ref_mm3 == pytest.approx(volume_1, rel=0.03)
    assert result.volume_pred_mm3 == pytest.approx(volume_2, rel=0.03)
    assert result.relative_volume_diff == pytest.approx((volume_2 - volume_1) / volume_1, rel=0.05)
    # HD95 and ASSD lie between 0 and HD; ASSD below HD95 for these smooth shapes.
    assert 0.0 < result.assd_mm < result.hd95_mm <= result.hausdorff_mm


def test_overlap_matches_simpleitk(two_spheres):
    pred, ref, _ = two_spheres
    result = binary_metrics(pred, ref, SPACING)
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(_itk(pred), _itk(ref))
    assert result.dice == pytest.approx(overlap.GetDiceCoefficient(), abs=1e-12)
    assert result.jaccard == pytest.approx(overlap.GetJaccardCoefficient(), abs=1e-12)
    # SimpleITK volume similarity = 2 (Vp - Vr) / (Vp + Vr).
    similarity = 2 * (result.volume_pred_mm3 - result.volume_ref_mm3) / (
        result.volume_pred_mm3 + result.volume_ref_mm3
    )
    assert similarity == pytest.approx(overlap.GetVolumeSimilarity(), abs=1e-9)
    assert result.abs_volume_diff_voxels == abs(int(pred.sum()) - int(ref.sum()))
    assert result.abs_volume_diff_mm3 == pytest.approx(
        result.abs_volume_diff_voxels * math.prod(SPACING)
    )


def test_hausdorff_matches_simpleitk_for_spheres(two_spheres):
    """SimpleITK's HD is set-to-set (all voxels). For these two balls the farthest points
    lie outside the other ball, where set and surface distances coincide."""
    pred, ref, _ = two_spheres
    result = binary_metrics(pred, ref, SPACING)
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(_itk(pred), _itk(ref))
    assert result.hausdorff_mm == pytest.approx(hausdorff.GetHausdorffDistance(), abs=1e-6)


def test_surface_and_set_hausdorff_differ_for_a_cavity():
    """A ball with an inner cavity vs the full ball: the cavity wall is a surface 8 mm from
    the outer surface (surface HD = 12 - 4), while as *sets* the ball is only 4 mm from
    the hollow ball (the cavity centre to its wall): SimpleITK gives the smaller value."""
    center = np.array([25.0, 25.0, 25.0])
    full = ball(center, 12.0)
    hollow = full & ~ball(center, 4.0)
    result = binary_metrics(hollow, full, SPACING)
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(_itk(hollow), _itk(full))
    assert result.hausdorff_mm == pytest.approx(8.0, abs=max(SPACING))
    assert hausdorff.GetHausdorffDistance() == pytest.approx(4.0, abs=max(SPACING))
    assert result.hausdorff_mm > hausdorff.GetHausdorffDistance() + 2.0


def test_surface_distances_match_monai(two_spheres):
    pred, ref, _ = two_spheres
    result = binary_metrics(pred, ref, SPACING)
    monai = _monai(pred, ref)
    assert result.hausdorff_mm == pytest.approx(monai["hd"], rel=1e-5)
    assert result.hd95_mm == pytest.approx(monai["hd95"], rel=1e-5)
    assert result.assd_mm == pytest.approx(monai["assd"], rel=1e-5)


def test_irregular_shapes_match_monai():
    """Random blobs (non-convex, touching the array border) still agree with MONAI."""
    rng = np.random.default_rng(7)
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.standard_normal((40, 36, 20)), 2.0)
    ref = noise > 0.05
    pred = ndimage.binary_dilation(noise > 0.1, iterations=1) ^ (rng.random(noise.shape) > 0.97)
    result = binary_metrics(pred, ref, SPACING)
    monai = _monai(pred, ref)
    assert result.hausdorff_mm == pytest.approx(monai["hd"], rel=1e-5)
    assert result.hd95_mm == pytest.approx(monai["hd95"], rel=1e-5)
    assert result.assd_mm == pytest.approx(monai["assd"], rel=1e-5)


def test_single_voxels_distance_uses_anisotropic_spacing():
    pred = np.zeros((5, 5, 9), dtype=bool)
    ref = np.zeros_like(pred)
    pred[2, 2, 1] = True
    ref[2, 2, 7] = True
    distances = surface_distances(pred, ref, SPACING)
    assert distances.hausdorff_mm == pytest.approx(6 * 1.5)
    ref[2, 2, 7] = False
    ref[4, 2, 1] = True
    assert surface_distances(pred, ref, SPACING).hausdorff_mm == pytest.approx(2 * 0.7)


def test_surface_counts_array_border_as_outside():
    full = np.ones((4, 5, 6), dtype=bool)
    surface = surface_mask(full)
    assert surface.sum() == full.size - 2 * 3 * 4  # everything but the 2×3×4 interior
    assert not surface[1:-1, 1:-1, 1:-1].any()


def test_identical_masks_are_perfect(two_spheres):
    _, ref, _ = two_spheres
    result = binary_metrics(ref, ref, SPACING)
    assert (result.dice, result.jaccard) == (1.0, 1.0)
    assert (result.hausdorff_mm, result.hd95_mm, result.assd_mm) == (0.0, 0.0, 0.0)
    assert result.abs_volume_diff_mm3 == 0.0 and result.relative_volume_diff == 0.0


def test_empty_structures_follow_documented_convention():
    empty = np.zeros((6, 6, 6), dtype=bool)
    present = empty.copy()
    present[2:4, 2:4, 2:4] = True
    both = binary_metrics(empty, empty, SPACING)
    assert both.status == "both_empty"
    assert all(math.isnan(v) for v in (both.dice, both.jaccard, both.hausdorff_mm,
                                        both.hd95_mm, both.assd_mm, both.relative_volume_diff))
    assert both.abs_volume_diff_mm3 == 0.0
    missed = binary_metrics(empty, present, SPACING)
    assert missed.status == "pred_empty"
    assert missed.dice == 0.0 and missed.jaccard == 0.0
    assert math.isinf(missed.hausdorff_mm) and math.isinf(missed.hd95_mm)
    assert math.isinf(missed.assd_mm)
    assert missed.relative_volume_diff == -1.0
    assert missed.abs_volume_diff_voxels == 8
    extra = binary_metrics(present, empty, SPACING)
    assert extra.status == "ref_empty" and math.isinf(extra.relative_volume_diff)


def test_label_map_metrics_equal_per_structure_binary_metrics(two_spheres):
    pred_ball, ref_ball, _ = two_spheres
    pred = np.zeros(SHAPE, dtype=np.int16)
    ref = np.zeros(SHAPE, dtype=np.int16)
    pred[pred_ball] = 10
    ref[ref_ball] = 10
    small = ball(np.array([8.0, 8.0, 8.0]), 4.0)
    pred[small] = 49
    ref[ball(np.array([9.0, 8.0, 8.0]), 4.0)] = 49
    ref[ball(np.array([40.0, 40.0, 40.0]), 3.0)] = 16  # missed by the prediction
    pred[0, 0, 0] = 2  # a label outside the scored structures: ignored
    structures = {10: "Left-Thalamus", 49: "Right-Thalamus", 16: "Brain-Stem", 4: "Ventricle"}
    case = label_map_metrics(pred, ref, SPACING, structures, case="c1")
    by_label = case.by_label()
    for label in (10, 49, 16):
        expected = binary_metrics(pred == label, ref == label, SPACING, label=label,
                                  name=structures[label])
        assert by_label[label] == expected
    assert by_label[16].status == "pred_empty"
    assert by_label[4].status == "both_empty"
    dice = [by_label[label].dice for label in (10, 49, 16)]
    volumes = [by_label[label].volume_ref_mm3 for label in (10, 49, 16)]
    assert case.mean_dice == pytest.approx(np.mean(dice))
    assert case.volume_weighted_dice == pytest.approx(
        np.dot(dice, volumes) / np.sum(volumes)
    )
    assert isinstance(case, CaseMetrics)


def test_label_map_metrics_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="shapes differ"):
        label_map_metrics(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)), SPACING, {1: "a"})


def test_summarise_skips_nan_and_counts_inf():
    mean, sd, n_finite, n_inf = summarise([1.0, 3.0, math.nan, math.inf])
    assert (mean, n_finite, n_inf) == (2.0, 2, 1)
    assert sd == pytest.approx(math.sqrt(2.0))
    assert math.isnan(summarise([math.nan])[0])
