"""DICOM loading through dcm2niix: gantry tilt, uneven spacing, HU, series choice."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from scipy import ndimage

from subct.errors import SubctInputError
from subct.image.volume import Volume, is_orthogonal_affine
from subct.io.dicom import list_dicom_series, load_dicom_series
from subct.io.readers import load_volume

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def tilted_folder(shared_data: Path) -> Path:
    return shared_data / "ct" / "dicom_ge_tilted"


@pytest.fixture(scope="module")
def tilted(tilted_folder: Path) -> Volume:
    return load_volume(tilted_folder, expect_ct=True)


def _dicom_pixels_in_world(path: Path, step: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """HU values of every ``step``-th pixel of one DICOM slice and their RAS positions (mm)."""
    dataset = pydicom.dcmread(path)
    hu = dataset.pixel_array.astype(np.float64) * float(dataset.RescaleSlope) + float(
        dataset.RescaleIntercept
    )
    row_direction = np.asarray(dataset.ImageOrientationPatient[:3], dtype=np.float64)
    column_direction = np.asarray(dataset.ImageOrientationPatient[3:], dtype=np.float64)
    origin = np.asarray(dataset.ImagePositionPatient, dtype=np.float64)
    row_spacing, column_spacing = (float(value) for value in dataset.PixelSpacing)
    rows, columns = np.mgrid[0 : hu.shape[0] : step, 0 : hu.shape[1] : step]
    lps = (
        origin
        + columns[..., None] * column_spacing * row_direction
        + rows[..., None] * row_spacing * column_direction
    )
    ras = lps.reshape(-1, 3) * np.array([-1.0, -1.0, 1.0])
    return hu[rows, columns].ravel(), ras


def _sample_world(volume: Volume, ras: np.ndarray) -> np.ndarray:
    inverse = np.linalg.inv(volume.affine)
    voxels = inverse[:3, :3] @ ras.T + inverse[:3, 3:4]
    return ndimage.map_coordinates(volume.array.astype(np.float32), voxels, order=1,
                                   cval=np.nan)


def test_tilted_series_is_corrected_onto_a_regular_orthogonal_grid(tilted: Volume) -> None:
    assert tilted.metadata["tilt_corrected"] is True
    assert tilted.metadata["spacing_equalised"] is True
    assert tilted.metadata["slice_tilt_deg"] == pytest.approx(18.5, abs=0.1)
    assert tilted.metadata["dicom_series_number"] == 2
    assert "series 2" in tilted.description and "tilt" in tilted.description
    # No shear: voxel axes are perpendicular (a raw tilted stack is sheared by 18.5°).
    assert is_orthogonal_affine(tilted.affine)
    assert tilted.metadata["orthogonal_grid"] is True
    # In-plane pixel size kept; slices equally spaced and covering the 152 mm table range
    # (projected on the tilted slice normal: 152 * cos(18.5°) = 144 mm).
    assert tilted.spacing[0] == pytest.approx(0.488, abs=1e-3)
    assert tilted.spacing[2] < 4.0
    extent = tilted.spacing[2] * (tilted.shape[2] - 1)
    assert extent == pytest.approx(152.0 * np.cos(np.radians(18.5)), abs=3.0)


def test_every_dicom_pixel_lands_at_its_true_world_position(
    tilted: Volume, tilted_folder: Path
) -> None:
    """Sample the loaded volume where each original DICOM pixel lies in the scanner.

    If the tilt were ignored or the uneven gaps stretched, the values would not match
    (a 5 mm shift already drops the correlation to about 0.91).
    """
    for path in sorted(tilted_folder.glob("*.dcm"))[::5]:
        original, ras = _dicom_pixels_in_world(path)
        sampled = _sample_world(tilted, ras)
        inside = np.isfinite(sampled)
        assert inside.mean() > 0.95
        correlation = np.corrcoef(sampled[inside], original[inside])[0, 1]
        assert correlation > 0.99, (path.name, correlation)
        assert np.median(np.abs(sampled[inside] - original[inside])) < 5.0
    # Control: the same check with the volume shifted 5 mm fails clearly.
    shifted_affine = tilted.affine.copy()
    shifted_affine[1, 3] += 5.0
    original, ras = _dicom_pixels_in_world(sorted(tilted_folder.glob("*.dcm"))[10])
    sampled = _sample_world(Volume(tilted.array, shifted_affine), ras)
    inside = np.isfinite(sampled)
    assert np.corrcoef(sampled[inside], original[inside])[0, 1] < 0.97


def test_tilted_series_hounsfield_values(tilted: Volume) -> None:
    array = tilted.array
    assert array.dtype == np.int16
    air = array[(array > -1200) & (array < -500)]
    assert np.median(air) == pytest.approx(-1000, abs=30)
    # Brain: the histogram peak of soft tissue inside the skull lies in 20-45 HU.
    counts, edges = np.histogram(array, bins=np.arange(-20, 101, 5))
    peak = edges[np.argmax(counts)] + 2.5
    assert 20 <= peak <= 45
    assert (array > 300).mean() > 0.01  # skull
    assert array.max() > 1000


def _copy_series(
    source: Path,
    target: Path,
    files: list[Path],
    *,
    number: int,
    description: str,
    hu_offset_storage: bool = False,
) -> None:
    """Copy DICOM files as a new series (new UIDs), optionally stored as HU+1024."""
    target.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for path in files:
        dataset = pydicom.dcmread(path)
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.SeriesNumber = number
        dataset.SeriesDescription = description
        if hu_offset_storage:
            stored = dataset.pixel_array.astype(np.int32) + 1024
            dataset.PixelData = stored.astype(np.int16).tobytes()
            dataset.RescaleIntercept = -1024
        dataset.save_as(target / path.name)


@pytest.fixture(scope="module")
def two_series_folder(tilted_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("two_series")
    files = sorted(tilted_folder.glob("*.dcm"))
    _copy_series(tilted_folder, folder / "a", files, number=3, description="HEAD FULL")
    # Eight evenly spaced slices, stored as HU+1024 with RescaleIntercept -1024.
    _copy_series(tilted_folder, folder / "b", files[:8], number=7, description="HEAD SUBSET",
                 hu_offset_storage=True)
    return folder


def test_largest_series_is_picked_and_said(two_series_folder: Path) -> None:
    listed = {item.number: item for item in list_dicom_series(two_series_folder)}
    assert set(listed) == {3, 7}
    assert listed[3].voxel_count > listed[7].voxel_count
    volume = load_dicom_series(two_series_folder)
    assert volume.metadata["dicom_series_number"] == 3
    assert "largest axial CT series of 2" in volume.description
    assert len(volume.metadata["dicom_available_series"]) == 2


def test_series_flag_picks_the_other_and_rescale_is_applied(two_series_folder: Path) -> None:
    by_number = load_volume(two_series_folder, series="7", expect_ct=True)
    assert by_number.metadata["dicom_series_number"] == 7
    assert by_number.metadata["tilt_corrected"] is True
    # Stored values are HU+1024; the intercept -1024 must have been applied: every
    # pixel matches the original HU where it lies in the world.
    original, ras = _dicom_pixels_in_world(sorted(two_series_folder.glob("b/*.dcm"))[3])
    sampled = _sample_world(by_number, ras)
    inside = np.isfinite(sampled)
    assert np.median(np.abs(sampled[inside] - original[inside])) < 5.0
    # dcm2niix pads the tilt-corrected grid with the unscaled fill value (-2524 HU);
    # the loader raises it to the scan's own padding value.
    assert by_number.array.min() == -1500
    air = by_number.array[(by_number.array > -1200) & (by_number.array < -500)]
    assert np.median(air) == pytest.approx(-1000, abs=30)
    by_text = load_dicom_series(two_series_folder, series="subset")
    assert by_text.metadata["dicom_series_description"] == "HEAD SUBSET"
    np.testing.assert_array_equal(by_text.array, by_number.array)


def test_unknown_or_ambiguous_series_lists_the_available_ones(two_series_folder: Path) -> None:
    with pytest.raises(SubctInputError, match="no series matches '12'") as caught:
        load_dicom_series(two_series_folder, series="12")
    message = str(caught.value)
    assert str(two_series_folder) in message
    assert "series 3" in message and "series 7" in message
    with pytest.raises(SubctInputError, match="2 series match 'head'"):
        load_dicom_series(two_series_folder, series="head")


def test_empty_and_non_dicom_folders_are_reported(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SubctInputError, match="empty") as caught:
        load_volume(empty)
    assert str(empty) in str(caught.value)
    not_dicom = tmp_path / "notes"
    not_dicom.mkdir()
    (not_dicom / "readme.txt").write_text("no images here\n")
    (not_dicom / "fake.dcm").write_bytes(b"\x00" * 300)
    with pytest.raises(SubctInputError, match="no readable DICOM"):
        load_volume(not_dicom)
    (not_dicom / "scan.nii.gz").write_bytes(b"")
    with pytest.raises(SubctInputError, match="give a file path"):
        load_volume(not_dicom)


def test_folder_is_not_modified(tilted_folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tilted_folder, copy)
    before = sorted(p.name for p in copy.iterdir())
    load_dicom_series(copy)
    assert sorted(p.name for p in copy.iterdir()) == before
