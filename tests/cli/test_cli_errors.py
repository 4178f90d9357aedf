"""Command-line error behaviour: one line naming the file, exit code 2, traceback on --debug.

These run the real executable (``subct``) and ``python -m subct`` in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SUBCT = shutil.which("subct")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [SUBCT] if SUBCT else [sys.executable, "-m", "subct"]
    environment = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120,
                          check=False, env=environment)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture()
def truncated_nifti(tmp_path: Path) -> Path:
    path = tmp_path / "cut.nii.gz"
    array = np.random.default_rng(0).normal(size=(30, 30, 30)).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    path.write_bytes(path.read_bytes()[:4000])
    return path


def test_missing_file_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.nii.gz"
    result = _run("info", str(missing))
    assert result.returncode == 2
    lines = _error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and str(missing) in lines[0]
    assert "no such file" in lines[0]
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(truncated_nifti: Path) -> None:
    result = _run("--debug", "info", str(truncated_nifti))
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert str(truncated_nifti) in result.stderr


def test_python_m_subct_reports_bad_input_the_same_way(truncated_nifti: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "subct", "info", str(truncated_nifti)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 2
    lines = _error_lines(result.stderr)
    assert len(lines) == 1 and str(truncated_nifti) in lines[0] and "cannot read" in lines[0]
    assert "Traceback" not in result.stderr


def test_batch_goes_on_past_failures(tmp_path: Path, truncated_nifti: Path) -> None:
    good = tmp_path / "good.mgz"
    array = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4) - 1000
    affine = np.array([[-1.0, 0, 0, 3], [0, 0, 1, -4], [0, -1, 0, 5], [0, 0, 0, 1]])
    nib.save(nib.MGHImage(array, affine), str(good))
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), str(flat))

    result = _run("info", str(truncated_nifti), str(good), str(flat))
    assert result.returncode == 2
    assert str(good) in result.stdout
    assert "6 x 5 x 4 voxels" in result.stdout
    assert "LIA" in result.stdout
    assert "-1000 .. -881" in result.stdout
    lines = _error_lines(result.stderr)
    assert len(lines) == 3, result.stderr
    assert str(truncated_nifti) in lines[0]
    assert str(flat) in lines[1] and "same value" in lines[1]
    assert "2 of 3 inputs failed" in lines[2]
    assert "Traceback" not in result.stderr


def test_mri_is_refused_when_ct_is_expected(shared_data: Path) -> None:
    mri = shared_data / "mri" / "fsaverage" / "T1.mgz"
    result = _run("info", "--expect-ct", str(mri))
    assert result.returncode == 2
    lines = _error_lines(result.stderr)
    assert len(lines) == 1 and str(mri) in lines[0] and "does not look like CT" in lines[0]


def test_dicom_info_says_which_series_and_tilt(shared_data: Path) -> None:
    folder = shared_data / "ct" / "dicom_ge_tilted"
    result = _run("info", "--expect-ct", str(folder))
    assert result.returncode == 0, result.stderr
    assert "series 2" in result.stdout
    assert "tilt         corrected" in result.stdout
    assert "uneven slice gaps equalised" in result.stdout
    bad = _run("info", "--series", "99", str(folder))
    assert bad.returncode == 2
    lines = _error_lines(bad.stderr)
    assert len(lines) == 1 and "no series matches '99'" in lines[0] and "series 2" in lines[0]


def test_itk_messages_printed_by_the_library_do_not_leak(tmp_path: Path) -> None:
    """ITK writes "data not read completely" straight to stderr; it must be folded in."""
    import SimpleITK as sitk

    path = tmp_path / "cut.mha"
    image = sitk.GetImageFromArray(np.zeros((20, 20, 20), np.int16))
    sitk.WriteImage(image, str(path))  # uncompressed
    path.write_bytes(path.read_bytes()[:8000])
    result = _run("info", str(path))
    assert result.returncode == 2
    lines = _error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and "not read completely" in lines[0]
