"""Every mistake a user can make on the command line: one line naming the file (or the
option) and the problem, exit code 2, no traceback, the input unchanged and no partial
output left behind (issue 11)."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from subct.cli import main
from subct.image.volume import Volume
from subct.io.writers import folder_lock, save_volume
from subct.model.checkpoint import METADATA_KEY, CheckpointMetadata, save_checkpoint
from subct.model.networks import build_network
from tests.support.phantom import analytic_head_phantom
from tests.support.tiny_phantom_unet import FIXTURE

AFFINE_2MM = np.diag([2.0, 2.0, 2.0, 1.0])


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE_2MM) -> Path:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def _head(tmp: Path) -> Path:
    return save_volume(analytic_head_phantom(spacing_mm=4.0).ct, tmp / "head.nii.gz")


def _no_orientation(tmp: Path) -> Path:
    ct = analytic_head_phantom(spacing_mm=4.0).ct
    image = nib.Nifti1Image(np.asarray(ct.array), ct.affine)
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    nib.save(image, str(tmp / "no_orientation.nii.gz"))
    return tmp / "no_orientation.nii.gz"


def _mri_like(tmp: Path) -> Path:
    ct = np.asarray(analytic_head_phantom(spacing_mm=4.0).ct.array, dtype=np.float32)
    return _nifti(tmp / "t1.nii.gz", np.clip(ct + 1000.0, 0, 400).astype(np.float32))


def _water_cylinder(tmp: Path) -> Path:
    x, y, _ = np.meshgrid(*(np.arange(48) - 23.5 for _ in range(3)), indexing="ij")
    phantom = np.where(x ** 2 + y ** 2 < 20 ** 2, 0.0, -1000.0).astype(np.float32)
    return _nifti(tmp / "water.nii.gz", phantom + np.random.default_rng(0).normal(0, 5, (48,) * 3)
                  .astype(np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))


def _label_map(tmp: Path) -> Path:
    labels = np.zeros((48, 48, 48), dtype=np.int16)
    labels[10:30, 10:30, 10:30] = 17
    labels[20:40, 20:40, 20:40] = 53
    return _nifti(tmp / "labels.nii.gz", labels, np.diag([4.0, 4.0, 4.0, 1.0]))


def _bad_checkpoint(tmp: Path, kind: str) -> Path:
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "out_channels": 18, "channels": [4, 8, 16]}
    network = build_network("unet3d", **kwargs)
    metadata = CheckpointMetadata(network_name="unet3d", network_kwargs=kwargs,
                                  spacing_mm=(4.0, 4.0, 4.0), patch_size=(32, 32, 32),
                                  hu_window=(-100.0, 200.0))
    path = tmp / f"{kind}.safetensors"
    if kind == "nan_weights":
        with torch.no_grad():
            next(network.parameters()).fill_(float("nan"))
        return save_checkpoint(path, network, metadata)
    save_checkpoint(path, network, metadata)
    data = path.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + length])
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    meta["spacing_mm"] = [50.0, 50.0, 50.0]
    header["__metadata__"][METADATA_KEY] = json.dumps(meta)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length:])
    return path


# name → (build the input in tmp → argv tail, words the one error line must contain)
Case = Callable[[Path], list[str]]
CASES: dict[str, tuple[Case, tuple[str, ...]]] = {
    "missing file": (lambda t: [str(t / "nope.nii.gz")], ("nope.nii.gz", "no such file")),
    "empty file": (lambda t: [str(_touch(t / "empty.nii.gz"))], ("empty.nii.gz", "cannot read")),
    "corrupt nifti": (lambda t: [str(_write(t / "bad.nii.gz", b"\x1f\x8bnot gzip"))],
                      ("bad.nii.gz", "cannot read")),
    "not an image": (lambda t: [str(_write(t / "notes.doc", b"hello"))],
                     ("notes.doc", "not a volume")),
    "list of missing files": (lambda t: [str(_write(t / "cases.txt", b"a.nii.gz\n"))],
                              ("a.nii.gz", "no such file")),
    "empty folder": (lambda t: [str(_mkdir(t / "empty_folder"))],
                     ("empty_folder", "no volume files")),
    "T1 MRI": (lambda t: [str(_mri_like(t))], ("t1.nii.gz", "does not look like a head CT")),
    "label map": (lambda t: [str(_label_map(t))], ("labels.nii.gz", "head CT")),
    "water cylinder": (lambda t: [str(_water_cylinder(t))], ("water.nii.gz", "head CT")),
    "5 voxel cube": (lambda t: [str(_nifti(t / "tiny.nii.gz", np.random.default_rng(0)
                                           .normal(0, 500, (5, 5, 5)).astype(np.float32)))],
                     ("tiny.nii.gz", "too small")),
    "uint8 volume": (lambda t: [str(_nifti(t / "u8.nii.gz", np.random.default_rng(0)
                                           .integers(0, 255, (40, 40, 40)).astype(np.uint8)))],
                     ("u8.nii.gz", "head CT")),
    "complex voxels": (lambda t: [str(_nifti(t / "c.nii.gz", (np.ones((20, 20, 20)) * (1 + 2j))
                                             .astype(np.complex64)))], ("c.nii.gz", "complex")),
    "RGB voxels": (lambda t: [str(_rgb(t))], ("rgb.nii.gz", "RGB")),
    "1e30 values": (lambda t: [str(_nifti(t / "huge.nii.gz", np.random.default_rng(0).uniform(
        -1e30, 1e30, (40, 40, 40)).astype(np.float32), np.diag([5.0, 5.0, 5.0, 1.0])))],
                    ("huge.nii.gz", "CT")),
    "NaN voxels": (lambda t: [str(_nifti(t / "nan.nii.gz", np.full((20, 20, 20), np.nan,
                                                                    np.float32)))],
                   ("nan.nii.gz", "NaN")),
    "constant volume": (lambda t: [str(_nifti(t / "flat.nii.gz", np.zeros((20, 20, 20),
                                                                           np.float32)))],
                        ("flat.nii.gz", "same value")),
    "2D image": (lambda t: [str(_nifti(t / "slice.nii.gz", np.zeros((64, 64), np.float32)))],
                 ("slice.nii.gz", "2D")),
    "4D series": (lambda t: [str(_nifti(t / "four.nii.gz", np.zeros((8, 8, 8, 3), np.float32)))],
                  ("four.nii.gz", "4D")),
    "no orientation": (lambda t: [str(_no_orientation(t))],
                       ("no_orientation.nii.gz", "--assume-orientation")),
    "bad --assume-orientation": (lambda t: [str(_head(t)), "--assume-orientation", "XYZ"],
                                 ("--assume-orientation", "axis codes")),
    "bad --scheme": (lambda t: [str(_head(t)), "--scheme", "aseg"], ("aseg", "label scheme")),
    "bad --device": (lambda t: [str(_head(t)), "--device", "tpu"], ("tpu",)),
    "--mc-samples 1": (lambda t: [str(_head(t)), "--mc-samples", "1"], ("--mc-samples",)),
    "missing model": (lambda t: [str(_head(t)), "--model", str(t / "none.safetensors")],
                      ("none.safetensors",)),
    "model not safetensors": (lambda t: [str(_head(t)), "--model",
                                         str(_write(t / "m.safetensors", b"PK\x03\x04zip"))],
                              ("m.safetensors", "not a safetensors")),
    "model with NaN weights": (lambda t: [str(_head(t)), "--model",
                                          str(_bad_checkpoint(t, "nan_weights")), "--backend",
                                          "torch"], ("nan_weights.safetensors", "NaN")),
    "model with 50 mm spacing": (lambda t: [str(_head(t)), "--model",
                                            str(_bad_checkpoint(t, "bad_meta"))],
                                 ("bad_meta.safetensors", "spacing_mm")),
    # issue 25: what the first round of hostile inputs let through
    "uniform noise -1024..3000 HU": (lambda t: [str(_nifti(
        t / "noise.nii.gz", np.random.default_rng(0).uniform(-1024, 3000, (96, 96, 80))
        .astype(np.float32), np.diag([2.0, 2.0, 2.5, 1.0])))], ("noise.nii.gz", "noise")),
    "--vol is the input": (lambda t: [str(_head(t)), "--vol", str(t / "head.nii.gz")],
                           ("head.nii.gz", "--vol", "overwrite the input")),
    "--vol under a file": (lambda t: [str(_head(t)), "--vol",
                                      str(_touch(t / "notes.txt") / "v.csv")],
                           ("v.csv", "notes.txt", "not a folder")),
    "--vol is a folder": (lambda t: [str(_head(t)), "--vol", str(_mkdir(t / "csvdir"))],
                          ("csvdir", "folder")),
    "binary list file": (lambda t: [str(_write(t / "list.txt", b"\x00\x01binary\xff"))],
                         ("list.txt", "not a text list")),
    "zero pixdim": (lambda t: [str(_zero_pixdim(t))], ("zero_pixdim.nii.gz", "voxel size")),
    "--backend bogus": (lambda t: [str(_head(t)), "--backend", "bogus"], ("--backend", "bogus")),
    "--precision fp8": (lambda t: [str(_head(t)), "--precision", "fp8"], ("--precision", "fp8")),
    "path with Rich markup": (lambda t: [str(_head(_mkdirs(t / "a[/x]b"))), "--scheme",
                                         "bogus"], ("bogus",)),
}


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _zero_pixdim(tmp: Path) -> Path:
    ct = analytic_head_phantom(spacing_mm=4.0).ct
    image = nib.Nifti1Image(np.asarray(ct.array), ct.affine)
    image.header["pixdim"][2] = 0.0  # nibabel would quietly make it 1 mm on reading
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    nib.save(image, str(tmp / "zero_pixdim.nii.gz"))
    return tmp / "zero_pixdim.nii.gz"


def _below_basal_ganglia(tmp: Path) -> Path:
    """The phantom's slices below its basal ganglia only (a neck/skull-base scan)."""
    phantom = analytic_head_phantom(spacing_mm=2.0)
    labels = np.asarray(phantom.labels.array)
    lowest = int(np.nonzero(np.isin(labels, [10, 49, 11, 50, 12, 51]).any(axis=(0, 1)))[0].min())
    array = np.ascontiguousarray(np.asarray(phantom.ct.array)[:, :, :lowest - 2])
    return save_volume(Volume(array, phantom.ct.affine.copy()), tmp / "neck.nii.gz")


def _mkdirs(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _rgb(tmp: Path) -> Path:
    rgb = np.zeros((20, 20, 20), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return _nifti(tmp / "rgb.nii.gz", rgb)


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def _check_one_line(code: int, out: str, err: str, words: tuple[str, ...]) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_segment_input(name: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    build, words = CASES[name]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    tail = build(inputs)
    before = _snapshot(inputs)
    out = tmp_path / "out"
    argv = ["segment", *tail, "-o", str(out), "--fast", "--threads", "1"]
    if "--model" not in tail:
        argv += ["--model", str(FIXTURE)]
    code, stdout, stderr = _run(argv, capsys)
    _check_one_line(code, stdout, stderr, words)
    assert _snapshot(inputs) == before  # inputs never modified
    leftovers = [p.name for p in out.rglob("*") if p.is_file() and p.name != ".subct.lock"] \
        if out.exists() else []
    assert not leftovers  # no partial outputs


@pytest.mark.parametrize(("argv", "words"), [
    (["segment", "x.nii.gz"], ("missing option", "-o")),
    (["segment", "x.nii.gz", "-o", "o", "--threads", "abc"], ("--threads",)),
    (["segment", "x.nii.gz", "-o", "o", "--bogus"], ("--bogus",)),
    (["segmnet", "x.nii.gz"], ("segmnet",)),
    (["synth", "-n", "0", "-o", "o"], ("-n",)),
    (["evaluate"], ("missing",)),
])
def test_usage_errors_are_one_line_and_exit_2(argv: list[str], words: tuple[str, ...],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(argv, capsys)
    _check_one_line(code, out, err, words)


def test_console_text_with_brackets_is_printed_as_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _mkdirs(tmp_path / "scans [bold]x[/bold]")  # "[/" spans two folders
    head = save_volume(analytic_head_phantom(spacing_mm=4.0).ct, folder / "h[bold]ead.nii.gz")
    code, out, err = _run(["segment", str(head), "-o", str(tmp_path / "o[red]ut"), "--model",
                           str(FIXTURE), "--fast", "--threads", "1", "--scheme", "merged"],
                          capsys)
    assert code == 0, err
    assert "h[bold]ead" in out and "o[red]ut" in out  # brackets shown, no MarkupError
    missing = tmp_path / "[options]" / "none.nii.gz"
    code, out, err = _run(["segment", str(missing), "-o", str(tmp_path / "o2")], capsys)
    assert code == 2 and "[options]" in err


def test_output_folder_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = _head(tmp_path)
    base = ["--model", str(FIXTURE), "--fast", "--threads", "1"]
    cases = [
        (["segment", str(head), "-o", str(head)], ("head.nii.gz", "file")),
        (["segment", str(tmp_path), "-o", str(tmp_path / "results")], ("inside",)),
        (["segment", str(head), "-o", str(tmp_path / "out.nii.gz")], ("out.nii.gz", "folder")),
        (["segment", str(head), "-o", str(head / "sub")], ("sub", "output folder")),
    ]
    before = _snapshot(tmp_path)
    for argv, words in cases:
        code, out, err = _run(argv + base, capsys)
        _check_one_line(code, out, err, words)
    assert _snapshot(tmp_path) == before


def test_a_second_run_on_a_busy_folder_is_refused(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    head = _head(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with folder_lock(out, "test run"):
        code, stdout, stderr = _run(["segment", str(head), "-o", str(out), "--model",
                                     str(FIXTURE), "--fast", "--threads", "1"], capsys)
    _check_one_line(code, stdout, stderr, ("out", "another", "pid"))
    assert not list(out.glob("*_labels.nii.gz"))


def test_force_segments_what_the_gate_refuses(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    mri = _mri_like(tmp_path)
    code, out, err = _run(["segment", str(mri), "-o", str(tmp_path / "out"), "--model",
                           str(FIXTURE), "--fast", "--threads", "1", "--force", "--scheme",
                           "merged"], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "out" / "t1_qc.json").read_text())
    assert not record["qc"]["looks_like_head_ct"] and record["qc"]["flagged"]
    assert "QC warning" in out  # the console shows it, not only qc.json


def test_assumed_orientation_is_applied_and_recorded(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = _no_orientation(tmp_path)
    code, _, err = _run(["segment", str(path), "-o", str(tmp_path / "out"), "--model",
                         str(FIXTURE), "--fast", "--threads", "1", "--assume-orientation",
                         "RAS", "--scheme", "merged"], capsys)
    assert code == 0, err
    labels = nib.load(str(tmp_path / "out" / "no_orientation_labels.nii.gz"))
    assert nib.aff2axcodes(labels.affine) == ("R", "A", "S")
    record = json.loads((tmp_path / "out" / "no_orientation_qc.json").read_text())
    assert "orientation_assumed" in {flag["code"] for flag in record["qc"]["flags"]}


def test_rerun_with_another_model_recomputes(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    head = _head(tmp_path)
    out = tmp_path / "out"
    common = ["segment", str(head), "-o", str(out), "--threads", "1", "--scheme", "merged"]
    assert _run(common + ["--fast", "--model", str(FIXTURE)], capsys)[0] == 0
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(FIXTURE.read_bytes())
    code, stdout, _ = _run(common + ["--fast", "--model", str(copy)], capsys)
    assert code == 0 and "skipped" in stdout  # same weights (same SHA-256): skipped
    code, stdout, _ = _run(common + ["--no-tta", "--model", str(FIXTURE)], capsys)
    assert code == 0 and "skipped" in stdout  # --no-tta labels like --fast
    code, stdout, _ = _run(common + ["--model", str(FIXTURE)], capsys)
    assert code == 0 and "redone 1 case" in stdout  # TTA on changes labels: recomputed
    record = json.loads((out / "head_qc.json").read_text())
    assert record["resume_key"]["tta"] is True


def test_evaluate_refuses_a_ct_given_as_a_label_map(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    head = _head(tmp_path)
    labels = _label_map(tmp_path)
    code, out, err = _run(["evaluate", str(head), str(labels)], capsys)
    assert code == 2 and "Traceback" not in out + err
    assert "head.nii.gz" in err and "not a label map" in err


def test_a_replaced_input_is_recomputed_not_skipped(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    first, second = _mkdirs(tmp_path / "f1"), _mkdirs(tmp_path / "f2")
    head = _head(first)
    other = analytic_head_phantom(spacing_mm=4.0).ct
    moved = other.with_array(np.roll(np.asarray(other.array), 3, axis=0))  # another scan
    save_volume(moved, second / "head.nii.gz")
    out = tmp_path / "out"
    common = ["-o", str(out), "--model", str(FIXTURE), "--fast", "--threads", "1",
              "--scheme", "merged"]
    assert _run(["segment", str(head), *common], capsys)[0] == 0
    code, stdout, _ = _run(["segment", str(head), *common], capsys)
    assert code == 0 and "skipped" in stdout  # same input: skipped
    code, stdout, _ = _run(["segment", str(second / "head.nii.gz"), *common], capsys)
    assert code == 0 and "skipped" not in stdout and "redone 1 case" in stdout
    record = json.loads((out / "head_qc.json").read_text())
    assert record["resume_key"]["input"]["size"] == (second / "head.nii.gz").stat().st_size


def test_train_refuses_an_image_given_as_its_config(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["train", str(_head(tmp_path))], capsys)
    _check_one_line(code, out, err, ("head.nii.gz", "not a text file"))


def test_negative_numbers_for_sizes_and_threads_are_usage_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = str(_head(tmp_path))
    code, out, err = _run(["register", "--fixed", head, "--moving", head, "-o",
                           str(tmp_path / "reg"), "--working-spacing", "-1"], capsys)
    _check_one_line(code, out, err, ("working-spacing", "greater than 0"))
    code, out, err = _run(["mri-seg", head, "-o", str(tmp_path / "l.nii.gz"), "--tool",
                           "atlas-ho", "--threads", "-1"], capsys)
    _check_one_line(code, out, err, ("--threads",))
    assert not (tmp_path / "reg").exists() and not (tmp_path / "l.nii.gz").exists()


def test_dicom_seg_without_highdicom_is_refused_before_any_case(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "highdicom", None)  # as if not installed
    head = _head(tmp_path)
    out = tmp_path / "out"
    code, stdout, stderr = _run(["segment", str(head), "-o", str(out), "--model",
                                 str(FIXTURE), "--fast", "--dicom-seg"], capsys)
    _check_one_line(code, stdout, stderr, ("highdicom", "subct[dicom]"))
    assert not list(out.glob("*")) if out.exists() else True  # nothing written


def test_synth_never_overwrites_an_input_named_like_its_outputs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = out / "synth_0000_labels.nii.gz"
    _label_map(tmp_path).rename(victim)
    before = _snapshot(out)
    code, stdout, stderr = _run(["synth", str(victim), "-o", str(out), "-n", "1"], capsys)
    _check_one_line(code, stdout, stderr, ("synth_0000_labels.nii.gz", "overwritten"))
    assert _snapshot(out) == before


def test_a_closed_stdout_pipe_does_not_stop_the_batch(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    inputs = _mkdirs(tmp_path / "in")
    for name in ("a", "b"):
        save_volume(analytic_head_phantom(spacing_mm=4.0).ct, inputs / f"{name}.nii.gz")
    out = tmp_path / "out"
    command = (f"{sys.executable} -m subct segment {inputs} -o {out} --model {FIXTURE} "
               "--fast --threads 1 --scheme merged | head -c 1 > /dev/null")
    finished = subprocess.run(["bash", "-o", "pipefail", "-c", command], env=dict(os.environ),
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    for name in ("volumes.csv", "index.html", "a_labels.nii.gz", "b_labels.nii.gz"):
        assert (out / name).is_file(), name


def test_a_damaged_output_is_redone_on_rerun(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    head = _head(tmp_path)
    out = tmp_path / "out"
    argv = ["segment", str(head), "-o", str(out), "--model", str(FIXTURE), "--fast",
            "--threads", "1", "--scheme", "merged"]
    assert _run(argv, capsys)[0] == 0
    record = json.loads((out / "head_qc.json").read_text())
    assert set(record["output_files"]) == {"labels", "overlay"}
    labels = out / "head_labels.nii.gz"
    good = labels.read_bytes()
    labels.write_bytes(good[: len(good) // 2])  # a full disk cut it short
    code, stdout, _ = _run(argv, capsys)
    assert code == 0 and "skipped" not in stdout
    assert labels.read_bytes() == good  # rewritten whole (same input, same labels)


def test_every_case_writer_has_its_own_name_and_temporary_pattern() -> None:
    from subct.inference.outputs import _TEMPORARY_PATTERNS
    from subct.inference.writers import CASE_WRITERS

    roles = [writer.role for writer in CASE_WRITERS]
    assert len(set(roles)) == len(roles) and "qc" not in roles
    suffixes = [(writer.subfolder, writer.suffix) for writer in CASE_WRITERS]
    assert len(set(suffixes)) == len(suffixes)
    for writer in CASE_WRITERS:
        assert writer.temporary_pattern() in _TEMPORARY_PATTERNS


@pytest.mark.parametrize("speed", [[], ["--fast"], ["--no-tta"]])
def test_a_scan_below_the_basal_ganglia_is_refused_at_any_speed(
        speed: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    neck = _below_basal_ganglia(tmp_path)
    code, out, err = _run(["segment", str(neck), "-o", str(tmp_path / "out"), "--model",
                           str(FIXTURE), "--threads", "1", "--scheme", "merged", *speed], capsys)
    _check_one_line(code, out, err, ("neck.nii.gz", "basal ganglia"))


def test_evaluate_output_is_checked_before_scoring(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    labels = _label_map(tmp_path)
    folder = _mkdirs(tmp_path / "metrics_dir")
    code, out, err = _run(["evaluate", str(labels), str(labels), "-o", str(folder)], capsys)
    _check_one_line(code, out, err, ("metrics_dir", "folder"))
    code, out, err = _run(["evaluate", str(labels), str(labels), "-o", str(labels)], capsys)
    _check_one_line(code, out, err, ("labels.nii.gz", "overwrite the input"))
