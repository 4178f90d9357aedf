"""Reading/writing volumes: exact geometry round trips, error handling, HU+1024 CT."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from subct.errors import SubctInputError
from subct.image.volume import Volume, is_orthogonal_affine
from subct.io.files import case_name, iter_volume_files
from subct.io.hounsfield import ensure_hounsfield, looks_like_offset_ct
from subct.io.readers import load_volume
from subct.io.summary import summarise_volume
from subct.io.writers import save_volume


def _axis_affine(axcodes: str, spacing: tuple[float, float, float]) -> np.ndarray:
    """Affine whose voxel axes point along ``axcodes`` with the given voxel sizes (mm)."""
    ornt = nib.orientations.axcodes2ornt(tuple(axcodes))
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for voxel_axis, (world_axis, flip) in enumerate(ornt):
        affine[int(world_axis), voxel_axis] = flip * spacing[voxel_axis]
    affine[:3, 3] = [-31.5, 12.25, -7.75]
    return affine


def _oblique_affine() -> np.ndarray:
    """Rotated (17°, −23°, 41°), anisotropic (0.7 × 1.1 × 2.9 mm) affine."""
    affine = np.eye(4)
    rotation = Rotation.from_euler("xyz", [17.0, -23.0, 41.0], degrees=True).as_matrix()
    affine[:3, :3] = rotation @ np.diag([0.7, 1.1, 2.9])
    affine[:3, 3] = [45.2, -80.125, 13.5]
    return affine


AFFINES = {
    "LIA": _axis_affine("LIA", (1.0, 1.0, 1.0)),
    "LPS": _axis_affine("LPS", (0.5, 0.75, 2.0)),
    "RAS": _axis_affine("RAS", (1.2, 0.9, 3.0)),
    "oblique": _oblique_affine(),
}
SUFFIXES = (".nii.gz", ".nii", ".mgz", ".nrrd", ".mha")


def _test_volume(affine: np.ndarray) -> Volume:
    rng = np.random.default_rng(7)
    array = rng.integers(-1024, 2000, size=(13, 11, 7)).astype(np.int16)
    return Volume(array=array, affine=affine)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("orientation", list(AFFINES))
def test_round_trip_keeps_array_affine_and_world_positions(
    tmp_path: Path, orientation: str, suffix: str
) -> None:
    volume = _test_volume(AFFINES[orientation])
    path = save_volume(volume, tmp_path / f"image{suffix}")
    loaded = load_volume(path)

    assert loaded.shape == volume.shape
    np.testing.assert_array_equal(loaded.array, volume.array)
    np.testing.assert_allclose(loaded.affine, volume.affine, atol=1e-4)
    if orientation != "oblique":
        assert loaded.orientation == orientation
    # A world point (the centre of voxel (5, 3, 4)) maps back to the same value.
    world = volume.affine @ np.array([5, 3, 4, 1.0])
    voxel = np.rint(np.linalg.inv(loaded.affine) @ world)[:3].astype(int)
    assert tuple(voxel) == (5, 3, 4)
    assert loaded.array[tuple(voxel)] == volume.array[5, 3, 4]


@pytest.mark.parametrize("orientation", list(AFFINES))
def test_reoriented_is_exact_and_invertible(orientation: str) -> None:
    volume = _test_volume(AFFINES[orientation])
    for target in ("RAS", "LIA", "LPS", "PIR"):
        moved = volume.reoriented(target)
        if orientation != "oblique":
            assert moved.orientation == target
        # Every voxel keeps its world position: compare value at a few world points.
        for index in [(0, 0, 0), (12, 10, 6), (5, 3, 4)]:
            world = volume.affine @ np.array([*index, 1.0])
            new_index = np.rint(np.linalg.inv(moved.affine) @ world)[:3].astype(int)
            assert moved.array[tuple(new_index)] == volume.array[index]
        back = moved.reoriented(volume.orientation)
        np.testing.assert_array_equal(back.array, volume.array)
        np.testing.assert_allclose(back.affine, volume.affine, atol=1e-9)


@pytest.mark.parametrize("orientation", list(AFFINES))
def test_reoriented_view_matches_reoriented_without_copying(orientation: str) -> None:
    volume = _test_volume(AFFINES[orientation])
    for target in ("RAS", "LPS"):
        view, copy = volume.reoriented_view(target), volume.reoriented(target)
        np.testing.assert_array_equal(view.array, copy.array)
        np.testing.assert_allclose(view.affine, copy.affine)
        assert np.shares_memory(view.array, volume.array)
        assert copy.array.flags.c_contiguous


def test_save_is_atomic_and_refuses_to_overwrite_input(tmp_path: Path) -> None:
    volume = _test_volume(AFFINES["RAS"])
    path = save_volume(volume, tmp_path / "input.nii.gz")
    loaded = load_volume(path)
    with pytest.raises(SubctInputError, match="overwrite"):
        save_volume(loaded, path)
    save_volume(loaded.with_array(loaded.array + 1), tmp_path / "output.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.nii.gz", "output.nii.gz"]
    assert list(iter_volume_files(tmp_path)) == [tmp_path / "input.nii.gz",
                                                 tmp_path / "output.nii.gz"]
    assert case_name(tmp_path / "case01.nii.gz") == "case01"


def test_sheared_affine_is_refused_by_itk_formats_but_kept_by_nifti(tmp_path: Path) -> None:
    affine = np.eye(4)
    affine[0, 2] = 0.5  # x depends on slice index: a gantry-tilt-like shear
    volume = _test_volume(affine)
    assert not is_orthogonal_affine(affine)
    with pytest.raises(SubctInputError, match="sheared"):
        save_volume(volume, tmp_path / "sheared.mha")
    loaded = load_volume(save_volume(volume, tmp_path / "sheared.nii.gz"))
    np.testing.assert_allclose(loaded.affine, affine, atol=1e-6)


def test_boolean_labels_are_saved_as_uint8(tmp_path: Path) -> None:
    volume = _test_volume(AFFINES["LIA"])
    mask = volume.with_array(volume.array > 0)
    loaded = load_volume(save_volume(mask, tmp_path / "mask.nii.gz"))
    assert loaded.array.dtype == np.uint8
    np.testing.assert_array_equal(loaded.array, volume.array > 0)


# ----------------------------------------------------------------------------- errors


def _write_nifti(path: Path, array: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return path


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nothing_here.nii.gz"
    with pytest.raises(SubctInputError, match="no such file") as caught:
        load_volume(missing)
    assert str(missing) in str(caught.value)


def test_truncated_nifti_gz_is_reported(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = _write_nifti(tmp_path / "cut.nii.gz", rng.normal(size=(30, 30, 30)).astype(np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SubctInputError, match="cannot read") as caught:
        load_volume(path)
    assert str(path) in str(caught.value)


def test_truncated_uncompressed_nifti_is_reported(tmp_path: Path) -> None:
    path = _write_nifti(tmp_path / "cut.nii", np.ones((30, 30, 30), dtype=np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SubctInputError, match="cannot read"):
        load_volume(path)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_truncated_itk_files_are_reported(tmp_path: Path, suffix: str) -> None:
    volume = _test_volume(AFFINES["LPS"])
    path = save_volume(volume, tmp_path / f"cut{suffix}", dtype=np.float32)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(SubctInputError, match="cannot read") as caught:
        load_volume(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_garbage_bytes_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "garbage.nii"
    path.write_bytes(np.random.default_rng(2).bytes(5000))
    with pytest.raises(SubctInputError, match="cannot read") as caught:
        load_volume(path)
    assert str(path) in str(caught.value)
    gz = tmp_path / "garbage.nii.gz"
    gz.write_bytes(gzip.compress(b"not a nifti at all" * 30))
    with pytest.raises(SubctInputError, match="cannot read"):
        load_volume(gz)


def test_unknown_suffix_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(SubctInputError, match="unknown image format"):
        load_volume(path)


@pytest.mark.parametrize("shape", [(20, 20), (20, 20, 1)])
def test_2d_image_is_reported(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = _write_nifti(tmp_path / "slice.nii.gz", np.arange(np.prod(shape), dtype=np.int16)
                        .reshape(shape))
    with pytest.raises(SubctInputError, match="2D"):
        load_volume(path)


def test_4d_image_is_reported(tmp_path: Path) -> None:
    path = _write_nifti(tmp_path / "series.nii.gz",
                        np.arange(8 * 8 * 8 * 3, dtype=np.int16).reshape(8, 8, 8, 3))
    with pytest.raises(SubctInputError, match="4D"):
        load_volume(path)
    # A 4D image with a single volume is a 3D image.
    single = _write_nifti(tmp_path / "single.nii.gz",
                          np.arange(8 * 8 * 8, dtype=np.int16).reshape(8, 8, 8, 1))
    assert load_volume(single).shape == (8, 8, 8)


def test_nan_values_are_reported(tmp_path: Path) -> None:
    array = np.zeros((10, 10, 10), dtype=np.float32)
    array[3, 4, 5] = np.nan
    path = _write_nifti(tmp_path / "nan.nii.gz", array)
    with pytest.raises(SubctInputError, match="NaN"):
        load_volume(path)


def test_constant_image_is_reported(tmp_path: Path) -> None:
    path = _write_nifti(tmp_path / "flat.nii.gz", np.full((10, 10, 10), 7, dtype=np.int16))
    with pytest.raises(SubctInputError, match="same value"):
        load_volume(path)


def test_mri_range_is_rejected_when_ct_expected(shared_data: Path) -> None:
    path = shared_data / "mri" / "t1_crop" / "t1_crop.nii.gz"
    assert load_volume(path).shape == (256, 256, 256)
    with pytest.raises(SubctInputError, match="does not look like CT") as caught:
        load_volume(path, expect_ct=True)
    assert str(path) in str(caught.value)


def test_ct_without_tissue_is_rejected(tmp_path: Path) -> None:
    array = np.full((10, 10, 10), -1000, dtype=np.int16)
    array[5, 5, 5] = -900
    path = _write_nifti(tmp_path / "air.nii.gz", array)
    with pytest.raises(SubctInputError, match="above 0 HU"):
        load_volume(path, expect_ct=True)


# ------------------------------------------------------------------ real data, HU+1024


def test_headsq_nrrd_loads_and_is_rescaled_to_hounsfield(shared_data: Path) -> None:
    path = shared_data / "ct" / "headsq_quarter" / "quarter.nhdr"
    raw = load_volume(path)
    assert raw.shape == (64, 64, 93)
    np.testing.assert_allclose(raw.spacing, (3.2, 3.2, 1.5), atol=1e-6)
    assert raw.array.min() >= 0  # stored as HU + 1024
    assert looks_like_offset_ct(raw.array)
    assert "nrrd_header_note" in raw.metadata

    ct = load_volume(path, expect_ct=True)
    assert ct.metadata["hu_offset_subtracted"] == 1024
    assert ct.array.dtype == np.int16
    np.testing.assert_array_equal(ct.array.astype(np.int32), raw.array.astype(np.int32) - 1024)
    assert ct.array.min() == -1024  # air
    soft = ct.array[(ct.array > -200) & (ct.array < 200)]
    assert -60 < np.median(soft) < 80  # soft tissue around water
    assert (ct.array > 300).mean() > 0.01  # bone
    # Applying it again changes nothing: values are HU now.
    assert ensure_hounsfield(ct) is ct
    summary = summarise_volume(ct)
    assert summary.shape == (64, 64, 93) and summary.minimum == -1024
    # QC warns that the orientation is a guess (the header records none)
    from subct.image.intracranial import locate_intracranial
    from subct.qc.checks import assess_input

    check = assess_input(ct, locate_intracranial(ct))
    assert "orientation_unknown" in [flag.code for flag in check.flags]


def test_mri_is_not_mistaken_for_offset_ct(shared_data: Path) -> None:
    for path in (shared_data / "mri" / "t1_crop" / "t1_crop.nii.gz",
                 shared_data / "mri" / "fsaverage" / "T1.mgz"):
        volume = load_volume(path)
        assert not looks_like_offset_ct(volume.array)
        assert ensure_hounsfield(volume) is volume


def test_label_map_mgz_keeps_lia_geometry(shared_data: Path) -> None:
    path = shared_data / "mri" / "fsaverage" / "aseg.mgz"
    volume = load_volume(path)
    assert volume.orientation == "LIA" and volume.shape == (256, 256, 256)
    assert {10, 49, 17, 53}.issubset(set(np.unique(volume.array).tolist()))


def test_nifti_without_or_with_conflicting_orientation_is_flagged(tmp_path: Path) -> None:
    array = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    bare = nib.Nifti1Image(array, np.diag([2.0, 2.0, 2.0, 1.0]))
    bare.set_qform(None, code=0)
    bare.set_sform(None, code=0)
    nib.save(bare, str(tmp_path / "bare.nii.gz"))
    assert "orientation unknown" in load_volume(tmp_path / "bare.nii.gz").metadata[
        "orientation_note"]

    conflicting = nib.Nifti1Image(array, AFFINES["LIA"])
    conflicting.set_sform(AFFINES["LIA"], code=2)
    conflicting.set_qform(AFFINES["RAS"], code=1)
    nib.save(conflicting, str(tmp_path / "conflict.nii.gz"))
    loaded = load_volume(tmp_path / "conflict.nii.gz")
    assert "differ" in loaded.metadata["orientation_note"]
    np.testing.assert_allclose(loaded.affine, AFFINES["LIA"], atol=1e-5)

    clean = load_volume(save_volume(Volume(array, AFFINES["LPS"]), tmp_path / "ok.nii.gz"))
    assert "orientation_note" not in clean.metadata
