"""Missing slices and corrupt files of a real DICOM series (issue 25)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from subct.cli import main
from subct.errors import SubctInputError
from subct.io.readers import load_volume
from subct.qc.gate import check_slice_gaps
from tests.support.tiny_phantom_unet import FIXTURE


def _series_copy(shared_data: Path, tmp_path: Path, drop: range) -> Path:
    """The real GE series without the slices at sorted positions ``drop``."""
    source = shared_data / "ct" / "dicom_ge_tilted"
    target = tmp_path / "series"
    shutil.copytree(source, target)
    files = []
    for path in sorted(p for p in target.rglob("*") if p.is_file() and p.name != "LICENSE"):
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        cosines = np.asarray(dataset.ImageOrientationPatient, dtype=np.float64)
        normal = np.cross(cosines[:3], cosines[3:])
        files.append((float(normal @ np.asarray(dataset.ImagePositionPatient, float)), path))
    files.sort()
    for index in drop:
        files[index][1].unlink()
    return target


def test_the_complete_series_has_no_gap(shared_data: Path) -> None:
    volume = load_volume(shared_data / "ct" / "dicom_ge_tilted")
    assert volume.metadata["dicom_slice_gaps"]["missing_slices"] == 0


def test_one_missing_slice_is_flagged_not_refused(shared_data: Path, tmp_path: Path) -> None:
    volume = load_volume(_series_copy(shared_data, tmp_path, range(5, 6)))
    gaps = volume.metadata["dicom_slice_gaps"]
    assert gaps["missing_slices"] == 1 and gaps["largest_missing_mm"] == pytest.approx(4.0, 0.1)
    check_slice_gaps(volume, force=False)  # one 4 mm slice: within one thickness


def test_five_missing_slices_are_refused_unless_forced(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _series_copy(shared_data, tmp_path, range(4, 9))
    volume = load_volume(folder)
    assert volume.metadata["dicom_slice_gaps"]["missing_slices"] == 5
    with pytest.raises(SubctInputError, match="missing"):
        check_slice_gaps(volume, force=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(folder), "-o", str(tmp_path / "out"), "--model", str(FIXTURE),
              "--fast", "--threads", "1"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "slice(s) are missing" in error
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1


def test_a_truncated_slice_is_named(shared_data: Path, tmp_path: Path) -> None:
    folder = _series_copy(shared_data, tmp_path, range(0))
    victim = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "LICENSE")[10]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 40_000])
    with pytest.raises(SubctInputError) as error:
        load_volume(folder)
    assert victim.name in str(error.value) and "DICOM" in str(error.value)


def test_forced_series_with_a_hole_is_flagged(shared_data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import json

    folder = _series_copy(shared_data, tmp_path, range(4, 9))
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(folder), "-o", str(tmp_path / "out"), "--model", str(FIXTURE),
              "--fast", "--threads", "1", "--force", "--scheme", "merged"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    record = json.loads(next((tmp_path / "out").glob("*_qc.json")).read_text())
    assert "missing_slices" in {flag["code"] for flag in record["qc"]["flags"]}
