"""MRI → CT registration: known-answer recovery, skipping aligned pairs, label resampling.

The known answer: the real fsaverage T1 and a CT-like image of the same head
(:func:`subct.synth.pseudo_ct.pseudo_ct_from_t1`, from the T1 and its aseg), with the T1
moved by a known rigid transform (7°/−5°/6°, 6/−8/5 mm) by rewriting its affine
(no resampling, so the truth is exact). Data are reduced to 2 mm to keep the test
fast; the 1 mm timing is measured by ``benchmarks/bench_registration.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from subct.errors import SubctConfigError, SubctInputError
from subct.image.sitk_bridge import rigid_ras_to_itk
from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.qc.figures import label_contour_figure
from subct.synth.pseudo_ct import pseudo_ct_from_t1
from subct.transfer.registration import (
    RegistrationConfig,
    mean_displacement_error_mm,
    register,
)


def _block_mean(volume: Volume, factor: int) -> Volume:
    """Average ``factor``³ blocks (anti-aliased downsampling), affine adjusted."""
    array = np.asarray(volume.array, dtype=np.float32)
    shape = tuple(s // factor for s in array.shape)
    trimmed = array[: shape[0] * factor, : shape[1] * factor, : shape[2] * factor]
    reduced = trimmed.reshape(shape[0], factor, shape[1], factor, shape[2], factor).mean(
        axis=(1, 3, 5))
    affine = volume.affine.copy()
    affine[:3, :3] *= factor
    affine[:3, 3] = (volume.affine @ np.r_[(factor - 1) / 2.0, (factor - 1) / 2.0,
                                           (factor - 1) / 2.0, 1.0])[:3]
    return Volume(reduced, affine)


def _subsample_labels(volume: Volume, factor: int) -> Volume:
    offset = factor // 2
    array = np.asarray(volume.array)[offset::factor, offset::factor, offset::factor]
    affine = volume.affine.copy()
    affine[:3, :3] *= factor
    affine[:3, 3] = (volume.affine @ np.r_[offset, offset, offset, 1.0])[:3]
    return Volume(np.ascontiguousarray(array).astype(np.int16), affine)


def known_rigid_ras(centre_ras: np.ndarray) -> np.ndarray:
    """The test's true misalignment: rotation about ``centre_ras`` then a shift (RAS, mm)."""
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_euler("xyz", [7.0, -5.0, 6.0], degrees=True).as_matrix()
    to_centre, from_centre = np.eye(4), np.eye(4)
    to_centre[:3, 3] = centre_ras
    from_centre[:3, 3] = -centre_ras
    rigid = to_centre @ matrix @ from_centre
    rigid[:3, 3] += [6.0, -8.0, 5.0]
    return rigid


@pytest.fixture(scope="module")
def head_pair(shared_data: Path) -> dict[str, Volume]:
    """fsaverage T1, its aseg and a pseudo-CT, all at 2 mm (128³)."""
    folder = shared_data / "mri" / "fsaverage"
    t1 = _block_mean(load_volume(folder / "T1.mgz"), 2)
    aseg = _subsample_labels(load_volume(folder / "aseg.mgz"), 2)
    aseg = Volume(aseg.array, t1.affine.copy())
    ct = pseudo_ct_from_t1(t1, aseg, seed=3)
    return {"t1": t1, "aseg": aseg, "ct": ct}


@pytest.mark.shared_data
def test_known_rigid_misalignment_is_recovered_below_1mm(head_pair: dict[str, Volume]) -> None:
    ct, t1 = head_pair["ct"], head_pair["t1"]
    centre = (ct.affine @ np.r_[np.array(ct.shape) / 2.0, 1.0])[:3]
    truth_ras = known_rigid_ras(centre)
    moving = Volume(t1.array, truth_ras @ t1.affine)
    head = Volume((ct.array > -500).astype(np.uint8), ct.affine)

    error_before = mean_displacement_error_mm(sitk.Euler3DTransform(),
                                              rigid_ras_to_itk(truth_ras), head)
    assert error_before > 10.0  # the misalignment is real: >1 cm on average

    result = register(ct, moving, "rigid")
    error = mean_displacement_error_mm(result.transform, rigid_ras_to_itk(truth_ras), head)
    assert error < 1.0, f"mean error {error:.2f} mm over the head"
    assert result.metric_after > result.metric_before + 0.3
    assert not result.skipped and result.kind == "rigid"

    # The rigid result, resampled, puts the moved labels back on the CT's anatomy.
    moved_labels = result.resample_labels(Volume(head_pair["aseg"].array, moving.affine))
    truth_labels = head_pair["aseg"].array
    for label in (4, 10, 16):  # ventricle, thalamus, brainstem
        a, b = moved_labels.array == label, truth_labels == label
        dice = 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())
        assert dice > 0.8, f"label {label}: Dice {dice:.2f}"


@pytest.mark.shared_data
def test_affine_stage_also_recovers_the_rigid_misalignment(
    head_pair: dict[str, Volume],
) -> None:
    ct, t1 = head_pair["ct"], head_pair["t1"]
    centre = (ct.affine @ np.r_[np.array(ct.shape) / 2.0, 1.0])[:3]
    truth_ras = known_rigid_ras(centre)
    moving = Volume(t1.array, truth_ras @ t1.affine)
    head = Volume((ct.array > -500).astype(np.uint8), ct.affine)
    result = register(ct, moving, "affine")
    assert [stage["stage"] for stage in result.stages] == ["rigid", "affine"]
    assert mean_displacement_error_mm(result.transform, rigid_ras_to_itk(truth_ras), head) < 1.0


@pytest.mark.shared_data
def test_deformable_registration_runs_after_affine_and_improves_mi(
    head_pair: dict[str, Volume], tmp_path: Path,
) -> None:
    ct, t1 = head_pair["ct"], head_pair["t1"]
    centre = (ct.affine @ np.r_[np.array(ct.shape) / 2.0, 1.0])[:3]
    moving = Volume(t1.array, known_rigid_ras(centre) @ t1.affine)
    config = RegistrationConfig(working_spacing_mm=4.0, bspline_iterations=10,
                                bspline_shrink_factors=(2,), bspline_smoothing_sigmas_mm=(2.0,))
    result = register(ct, moving, "deformable", config)
    assert [stage["stage"] for stage in result.stages] == ["rigid", "affine", "bspline"]
    assert result.metric_after > result.metric_before + 0.3
    bspline = result.stages[-1]
    # The B-spline stage is kept only if it raised MI over the affine result.
    assert result.kind == ("deformable" if bspline["accepted"] else "affine")
    assert max(bspline["mi_affine"], bspline["mi_bspline"]) == pytest.approx(
        bspline["mi_bspline"] if bspline["accepted"] else bspline["mi_affine"])
    moved = result.resample_labels(Volume(head_pair["aseg"].array, moving.affine))
    a, b = moved.array == 10, head_pair["aseg"].array == 10
    assert 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()) > 0.8
    saved = result.save(tmp_path / "deformable.h5")
    loaded = sitk.ReadTransform(str(saved))
    point = tuple(float(v) for v in -centre * np.array([1, 1, -1]))
    np.testing.assert_allclose(loaded.TransformPoint(point),
                               result.transform.TransformPoint(point), atol=1e-4)


def _small_volume(seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    array = np.zeros((24, 24, 24), dtype=np.float32)
    array[4:20, 5:19, 6:18] = 100.0
    array += rng.normal(0.0, 5.0, array.shape).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-24.0, -24.0, -24.0]
    return Volume(array, affine)


def test_same_grid_and_assume_aligned_skip_registration() -> None:
    fixed = _small_volume(0)
    moving = _small_volume(1)
    same = register(fixed, moving, "affine")
    assert same.skipped and same.kind == "identity"
    assert same.metric_after == same.metric_before

    shifted_affine = moving.affine.copy()
    shifted_affine[0, 3] += 3.0
    shifted = Volume(moving.array, shifted_affine)
    assert not shifted.geometry.same_grid(fixed.geometry)
    aligned = register(fixed, shifted, "rigid", assume_aligned=True)
    assert aligned.skipped
    point = np.array([[10.0, -5.0, 3.0]])
    np.testing.assert_allclose(aligned.map_points_ras(point), point)


def test_resample_labels_keeps_ids_and_moves_them_by_the_transform() -> None:
    labels = np.zeros((20, 20, 20), dtype=np.int16)
    labels[5:10, 5:10, 5:10] = 17
    labels[10:15, 5:10, 5:10] = 53
    labels[8:12, 12:16, 8:12] = 16
    volume = Volume(labels, np.eye(4))
    result = register(volume.with_array(labels.astype(np.float32) + 1.0),
                      volume.with_array(labels.astype(np.float32)), "rigid",
                      assume_aligned=True)
    result.transform = rigid_ras_to_itk(np.array([[1, 0, 0, 2.0], [0, 1, 0, 0],
                                                  [0, 0, 1, 0], [0, 0, 0, 1]]))
    moved = result.resample_labels(volume)
    assert set(np.unique(moved.array)) == {0, 16, 17, 53}
    # fixed point x maps to moving x + 2 mm (RAS), so labels appear 2 voxels earlier in i
    np.testing.assert_array_equal(moved.array[3:8, 5:10, 5:10], 17)
    np.testing.assert_array_equal(moved.array[8:13, 5:10, 5:10], 53)
    assert moved.array.dtype == np.int16

    with pytest.raises(SubctInputError):
        result.resample_labels(volume.with_array(labels.astype(np.float32) + 0.5))


def test_transform_file_round_trip_and_qc_figure(tmp_path: Path) -> None:
    fixed = _small_volume(0)
    result = register(fixed, _small_volume(2), "rigid", assume_aligned=True)
    result.transform = rigid_ras_to_itk(known_rigid_ras(np.zeros(3)))
    saved = result.save(tmp_path / "out" / "mri_to_ct.tfm")
    loaded = sitk.ReadTransform(str(saved))
    point = (3.0, -7.0, 11.0)
    np.testing.assert_allclose(loaded.TransformPoint(point),
                               result.transform.TransformPoint(point), atol=1e-6)
    with pytest.raises(SubctInputError):
        result.save(tmp_path / "transform.json")

    labels = fixed.with_array((fixed.array > 50).astype(np.int16) * 10)
    png = label_contour_figure(fixed, labels, tmp_path / "qc.png", title="QC")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(SubctConfigError):
        RegistrationConfig(shrink_factors=(4, 2), smoothing_sigmas_mm=(1.0,))
    with pytest.raises(SubctConfigError):
        register(_small_volume(0), _small_volume(1), "spline")  # type: ignore[arg-type]


def test_register_command_writes_transform_labels_qc_and_mi(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from subct.cli import main
    from subct.io.writers import save_volume

    fixed, moving = _small_volume(0), _small_volume(1)
    moving_affine = moving.affine.copy()
    moving_affine[:3, 3] += [2.0, 0.0, 0.0]
    labels = (moving.array > 50).astype(np.int16) * 17
    save_volume(fixed, tmp_path / "ct.nii.gz")
    save_volume(Volume(moving.array, moving_affine), tmp_path / "mr.nii.gz")
    save_volume(Volume(labels, moving_affine), tmp_path / "labels.nii.gz")
    with pytest.raises(SystemExit) as exit_info:
        main(["register", "--fixed", str(tmp_path / "ct.nii.gz"), "--moving",
              str(tmp_path / "mr.nii.gz"), "--labels", str(tmp_path / "labels.nii.gz"),
              "-o", str(tmp_path / "out"), "--transform", "rigid", "--assume-aligned"])
    assert exit_info.value.code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["skipped"] is True and "mattes_mi_before" in printed
    out = tmp_path / "out"
    for name in ("transform.tfm", "moved_image.nii.gz", "labels.nii.gz", "qc.png",
                 "registration.json"):
        assert (out / name).is_file(), name
    moved = load_volume(out / "labels.nii.gz")
    assert moved.shape == fixed.shape and set(np.unique(moved.array)) == {0, 17}
    # identity in world space: the MRI grid's +2 mm (1 voxel) shift along x is kept
    np.testing.assert_array_equal(moved.array[4:22, 12, 12], [0] + [17] * 16 + [0])

    with pytest.raises(SystemExit) as exit_info:
        main(["register", "--fixed", str(tmp_path / "missing.nii.gz"), "--moving",
              str(tmp_path / "mr.nii.gz"), "-o", str(tmp_path / "bad")])
    assert exit_info.value.code == 2
    assert "missing.nii.gz" in capsys.readouterr().err
