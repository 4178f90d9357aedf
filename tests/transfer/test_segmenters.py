"""Segmenter registry: names, missing tools, precomputed outputs, tool subprocesses,
mid-sagittal plane, and the atlas segmenter on the real fsaverage T1."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from subct.errors import SubctConfigError, SubctError
from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.io.writers import save_volume
from subct.labels.convert import convert_to_canonical
from subct.labels.schemes import CANONICAL_LABELS
from subct.transfer.midline import (
    MidsagittalPlane,
    midsagittal_plane,
    split_left_right_at_plane,
)
from subct.transfer.registry import (
    BUILTIN_SEGMENTERS,
    EXTERNAL_SEGMENTERS,
    available_segmenters,
    get_segmenter,
)
from subct.transfer.segmenter import SegmenterUnavailableError


def _mri(shape: tuple[int, int, int] = (20, 24, 22)) -> Volume:
    """A small RAS 1 mm 'MRI' centred on the origin."""
    affine = np.eye(4)
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2
    rng = np.random.default_rng(1)
    return Volume(rng.random(shape).astype(np.float32) * 100, affine)


def _tool_output_on_lia_grid(mri: Volume) -> tuple[Volume, np.ndarray]:
    """A FreeSurfer-ID label map on an LIA grid covering ``mri``, and its RAS truth."""
    truth = np.zeros(mri.shape, dtype=np.int16)
    truth[2:8, 3:10, 4:12] = 17  # left hippocampus
    truth[12:18, 3:10, 4:12] = 53  # right hippocampus
    truth[8:12, 12:20, 5:15] = 16  # brainstem
    with_extras = truth.copy()
    with_extras[0:2] = 2  # cerebral white matter: not a target, must disappear
    with_extras[:, 22:] = 1035  # a cortical parcel: must disappear
    tool_map = Volume(with_extras, mri.affine.copy()).reoriented("LIA")
    return tool_map, truth


def test_registry_lists_builtins_and_external_tools() -> None:
    names = available_segmenters()
    for name in (*BUILTIN_SEGMENTERS, *EXTERNAL_SEGMENTERS):
        assert name in names and names[name]
    assert set(EXTERNAL_SEGMENTERS) == {"freesurfer", "samseg", "fastsurfer", "synthseg",
                                        "quicknat"}
    assert get_segmenter("MeshNet-18").name == "meshnet-18"
    assert get_segmenter("atlas-ho").name == "atlas-ho"


def test_unknown_segmenter_or_option_is_a_config_error() -> None:
    with pytest.raises(SubctConfigError, match="unknown segmenter"):
        get_segmenter("freesurf")
    with pytest.raises(SubctConfigError, match="bad option"):
        get_segmenter("synthseg", colour="blue")


@pytest.mark.parametrize(
    ("name", "executable"),
    [("freesurfer", "recon-all"), ("samseg", "run_samseg"),
     ("fastsurfer", "run_fastsurfer.sh"), ("synthseg", "mri_synthseg")],
)
def test_missing_executable_names_it_and_explains_from(
    name: str, executable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing installed
    with pytest.raises(SegmenterUnavailableError) as raised:
        get_segmenter(name).segment(_mri())
    message = str(raised.value)
    assert f"'{executable}' not found" in message and "--from" in message
    assert "not installed" in available_segmenters()[name]


def test_quicknat_without_command_explains_from() -> None:
    with pytest.raises(SegmenterUnavailableError, match="--from"):
        get_segmenter("quicknat").segment(_mri())


@pytest.mark.parametrize("name", ["synthseg", "fastsurfer", "samseg", "freesurfer"])
def test_precomputed_output_is_converted_and_put_on_the_mri_grid(
    name: str, tmp_path: Path
) -> None:
    mri = _mri()
    tool_map, truth = _tool_output_on_lia_grid(mri)
    path = save_volume(tool_map, tmp_path / "seg.mgz")
    labels = get_segmenter(name, from_file=str(path)).segment(mri)
    assert labels.geometry.same_grid(mri.geometry)
    assert labels.array.dtype == np.int16
    assert np.array_equal(labels.array, truth)


def test_precomputed_quicknat_class_indices(tmp_path: Path) -> None:
    mri = _mri()
    classes = np.zeros(mri.shape, dtype=np.uint8)
    classes[2:5] = 7  # QuickNAT class 7 = FreeSurfer 10 (left thalamus)
    classes[10:12] = 25  # class 25 = 49 (right thalamus)
    classes[15:] = 1  # class 1 = 2 (white matter, dropped)
    path = save_volume(Volume(classes, mri.affine), tmp_path / "quicknat.nii.gz")
    labels = get_segmenter("quicknat", from_file=path).segment(mri).array
    assert set(np.unique(labels[2:5])) == {10}
    assert set(np.unique(labels[10:12])) == {49}
    assert not labels[15:].any()


def _install_fake_tool(folder: Path, name: str, body: str) -> None:
    """An executable shell script on PATH that stands in for a tool we cannot install."""
    script = folder / name
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_external_tool_runs_its_documented_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mri = _mri()
    tool_map, truth = _tool_output_on_lia_grid(mri)
    result = save_volume(tool_map, tmp_path / "result.nii.gz")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.txt"
    # mri_synthseg --i IN --o OUT --threads N: record argv, check the input, write OUT.
    _install_fake_tool(
        bin_dir, "mri_synthseg",
        f'echo "$@" > {log}\n[ -f "$2" ] || exit 3\ncp {result} "$4"',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    labels = get_segmenter("synthseg", threads=2).segment(mri)
    assert np.array_equal(labels.array, truth)
    argv = log.read_text().split()
    assert argv[0] == "--i" and argv[2] == "--o" and argv[4:] == ["--threads", "2"]


def test_failing_tool_reports_exit_code_and_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_tool(tmp_path, "run_samseg", 'echo "ERROR: out of memory" >&2\nexit 7')
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SubctError, match="exit code 7.*out of memory"):
        get_segmenter("samseg").segment(_mri())


def test_quicknat_command_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mri = _mri()
    classes = np.zeros(mri.shape, dtype=np.uint8)
    classes[3:6] = 13  # class 13 = FreeSurfer 16, brainstem
    result = save_volume(Volume(classes, mri.affine), tmp_path / "qn.nii.gz")
    _install_fake_tool(tmp_path, "quicknat_wrapper", f'cp {result} "$2"')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    segmenter = get_segmenter("quicknat", command="quicknat_wrapper {input} {output}")
    labels = segmenter.segment(mri).array
    assert set(np.unique(labels[3:6])) == {16} and not labels[6:].any()


def test_split_at_a_tilted_plane() -> None:
    merged = np.full((10, 10, 1), 12, dtype=np.int16)  # putamen everywhere
    merged[0, 0, 0] = 16
    merged[9, 9, 0] = 0
    affine = np.eye(4)
    normal = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)  # plane x + y = 9.5 (no voxel on it)
    plane = MidsagittalPlane((4.75, 4.75, 0.0), (float(normal[0]), float(normal[1]), 0.0),
                             "test")
    split = split_left_right_at_plane(merged, affine, plane)[..., 0]
    i, j = np.indices((10, 10))
    right = (i + j) >= 10
    assert np.all(split[right & (merged[..., 0] == 12)] == 51)
    assert np.all(split[~right & (merged[..., 0] == 12)] == 12)
    assert split[0, 0] == 16 and split[9, 9] == 0


def _symmetric_phantom(yaw_degrees: float, shift_mm: float) -> tuple[Volume, np.ndarray]:
    """A head-like phantom symmetric about a plane rotated by ``yaw`` and shifted in x."""
    shape = (64, 64, 48)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -np.asarray(shape) + 1.0  # centred on the origin
    world = np.stack(np.indices(shape), axis=-1) @ affine[:3, :3].T + affine[:3, 3]
    angle = np.radians(yaw_degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                         [0, 0, 1.0]])
    local = (world - [shift_mm, 0, 0]) @ rotation  # phantom frame: symmetric in local x
    x, y, z = np.abs(local[..., 0]), local[..., 1], local[..., 2]

    def blob(radius2: np.ndarray) -> np.ndarray:  # smooth-edged ellipsoid (no aliasing)
        return 1.0 / (1.0 + np.exp(np.clip(-6.0 * (1.0 - radius2), -50, 50)))

    image = 40.0 * blob((x / 45) ** 2 + (y / 55) ** 2 + (z / 40) ** 2)
    image += 60.0 * blob(((x - 15) / 8) ** 2 + ((y + 10) / 14) ** 2 + (z / 10) ** 2)
    image += 30.0 * blob(((x - 25) / 6) ** 2 + ((y - 25) / 6) ** 2 + ((z - 10) / 12) ** 2)
    image += 50.0 * blob((x / 5) ** 2 + ((y - 10) / 25) ** 2 + ((z + 15) / 8) ** 2)
    normal = rotation @ np.array([1.0, 0, 0])
    return Volume(image.astype(np.float32), affine), normal


def test_mirror_registration_finds_a_tilted_shifted_midline() -> None:
    phantom, true_normal = _symmetric_phantom(yaw_degrees=8.0, shift_mm=6.0)
    plane = midsagittal_plane(phantom, "mirror")
    assert plane.method == "mirror"
    angle = np.degrees(np.arccos(abs(np.dot(plane.normal, true_normal))))
    assert angle < 0.5  # degrees (measured 0.03)
    # the true plane passes through (6, 0, 0)
    distance = abs(np.dot(np.asarray(plane.point_mm) - [6.0, 0, 0], true_normal))
    assert distance < 0.5  # mm (measured 0.01)
    assert midsagittal_plane(phantom, "x0").point_mm == (0.0, 0.0, 0.0)


@pytest.mark.shared_data
def test_atlas_segmenter_on_fsaverage(shared_data: Path) -> None:
    t1 = load_volume(shared_data / "mri" / "fsaverage" / "T1.mgz")
    aseg = load_volume(shared_data / "mri" / "fsaverage" / "aseg.mgz")
    reference = convert_to_canonical(aseg.array.astype(np.int32), "aseg")
    labels = get_segmenter("atlas-ho").segment(t1).array
    dice = []
    for label in CANONICAL_LABELS:
        a, b = labels == label, reference == label
        dice.append(2 * (a & b).sum() / (a.sum() + b.sum()))
    # Measured 0.69 (affine, 50 % probability); an atlas that is off by a flip or a
    # centimetre gives < 0.3. Registration-based atlases are known to trail CNNs.
    assert np.mean(dice) >= 0.60, dict(zip(CANONICAL_LABELS, np.round(dice, 2), strict=True))


def test_mri_seg_command_with_precomputed_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from subct.cli import main

    mri = _mri()
    mri_path = save_volume(mri, tmp_path / "t1.nii.gz")
    tool_map, truth = _tool_output_on_lia_grid(mri)
    precomputed = save_volume(tool_map, tmp_path / "synthseg_out.nii.gz")
    out = tmp_path / "labels.nii.gz"
    with pytest.raises(SystemExit) as exited:
        main(["mri-seg", str(mri_path), "-o", str(out), "--tool", "synthseg",
              "--from", str(precomputed)])
    assert exited.value.code == 0
    written = load_volume(out)
    assert written.geometry.same_grid(mri.geometry)
    assert np.array_equal(written.array, truth)
    # Missing tool, no --from: one line naming the executable, exit code 2.
    monkeypatch.setenv("PATH", str(tmp_path))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["mri-seg", str(mri_path), "-o", str(out), "--tool", "fastsurfer"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "run_fastsurfer.sh" in err and "--from" in err and "Traceback" not in err
    # Never overwrite the input.
    with pytest.raises(SystemExit) as exited:
        main(["mri-seg", str(mri_path), "-o", str(mri_path), "--tool", "synthseg",
              "--from", str(precomputed)])
    assert exited.value.code == 2
