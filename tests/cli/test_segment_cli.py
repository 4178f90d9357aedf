"""``subct segment`` command line: exit codes, one-line errors, outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from subct.cli import main
from subct.io.writers import save_volume
from subct.model.checkpoint import CheckpointMetadata, save_checkpoint
from subct.model.networks import build_network
from subct.model.registry import default_model_path
from tests.support.phantom import analytic_head_phantom


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return int(exit_info.value.code or 0)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "out_channels": 18, "channels": [4, 8, 16]}
    metadata = CheckpointMetadata(network_name="unet3d", network_kwargs=kwargs,
                                  spacing_mm=(2.0, 2.0, 2.0), patch_size=(64, 96, 96),
                                  hu_window=(-100.0, 200.0))
    checkpoint = save_checkpoint(root / "m.safetensors", build_network("unet3d", **kwargs),
                                 metadata)
    ct = save_volume(analytic_head_phantom(spacing_mm=2.0).ct, root / "head.nii.gz")
    return {"checkpoint": checkpoint, "ct": ct}


def test_no_installed_model_is_a_one_line_error(files: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import subct.model.registry

    monkeypatch.setattr(subct.model.registry, "MODELS_DIR", tmp_path / "no_models_here")
    assert not default_model_path().is_file()
    code = _run(["segment", str(files["ct"]), "-o", str(tmp_path)])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert len(error.splitlines()) == 1
    assert "no segmentation model is installed" in error and "--model" in error


def test_bad_options_exit_2(files: dict[str, Path], tmp_path: Path) -> None:
    base = ["segment", str(files["ct"]), "-o", str(tmp_path), "--model", str(files["checkpoint"])]
    assert _run([*base, "--scheme", "bogus"]) == 2
    assert _run([*base, "--qc", "1"]) == 2
    assert _run(["segment", str(files["ct"]), "-o", str(tmp_path), "--model",
                 str(tmp_path / "none.safetensors")]) == 2


def test_segment_writes_outputs_and_reports_failures(files: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = _run(["segment", str(files["ct"]), str(tmp_path / "missing.nii.gz"), "-o", str(out),
                 "--model", str(files["checkpoint"]), "--fast", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 2  # the one failure is the input's (missing file), not a bug
    assert "missing.nii.gz" in captured.err and "1 of 2" in captured.err
    for name in ("head_labels.nii.gz", "head_qc.json", "head_overlay.png", "volumes.csv",
                 "index.html"):
        assert (out / name).is_file(), name
    assert _run(["segment", str(files["ct"]), "-o", str(out), "--model",
                 str(files["checkpoint"]), "--fast"]) == 0
    assert "skipped head" in capsys.readouterr().out


def test_segment_no_overlay_and_volumes_copy(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    copy = tmp_path / "elsewhere" / "vols.csv"
    assert _run(["segment", str(files["ct"]), "-o", str(out), "--model",
                 str(files["checkpoint"]), "--fast", "--threads", "1", "--no-overlay",
                 "--vol", str(copy)]) == 0
    assert not (out / "head_overlay.png").exists()
    assert copy.read_text() == (out / "volumes.csv").read_text()
    for name in ("labels_freesurfer_lut.txt", "labels_itksnap.txt", "labels_slicer.ctbl",
                 "statistics.csv"):
        assert (out / name).is_file(), name
    import json

    record = json.loads((out / "head_qc.json").read_text())
    assert record["timings_s"]["read"] > 0.0
    assert set(record["statistics"]["Left-Thalamus"]) == {"volume_mm3", "mean_hu", "sd_hu",
                                                          "tta_agreement_dice"}


def test_segment_masks_and_roi_subset(files: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from subct.io.readers import load_volume

    out = tmp_path / "out"
    base = ["segment", str(files["ct"]), "-o", str(out), "--model", str(files["checkpoint"]),
            "--fast", "--threads", "1"]
    assert _run(base + ["--masks"]) == 0
    full = np.asarray(load_volume(out / "head_labels.nii.gz").array)
    masks = sorted(p.name for p in (out / "head_masks").iterdir())
    assert len(masks) == 17 and "Left-Thalamus.nii.gz" in masks
    thalamus = np.asarray(load_volume(out / "head_masks" / "Left-Thalamus.nii.gz").array)
    assert np.array_equal(thalamus.astype(bool), full == 10)
    assert _run(base + ["--masks", "--roi-subset", "Left-Thalamus,Brain-Stem"]) == 0
    assert "done" in capsys.readouterr().out  # a different subset recomputes the case
    subset = np.asarray(load_volume(out / "head_labels.nii.gz").array)
    assert sorted(p.name for p in (out / "head_masks").iterdir()) == [
        "Brain-Stem.nii.gz", "Left-Thalamus.nii.gz"]
    assert set(np.unique(subset)) <= {0, 10, 16}
    assert np.array_equal(subset == 10, full == 10)
    assert _run(base + ["--roi-subset", "Left-Thalamus,Nucleus"]) == 2
    assert "Nucleus" in capsys.readouterr().err


def test_posteriors_on_the_input_grid(files: dict[str, Path], tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    from subct.io.readers import load_volume

    out = tmp_path / "out"
    assert _run(["segment", str(files["ct"]), "-o", str(out), "--model",
                 str(files["checkpoint"]), "--fast", "--threads", "1", "--posteriors",
                 "--posteriors-grid", "input"]) == 0
    labels = load_volume(out / "head_labels.nii.gz")
    posteriors = nib.load(str(out / "head_posteriors.nii.gz"))
    assert posteriors.shape == (*labels.shape, 18)
    np.testing.assert_allclose(posteriors.affine, labels.affine, atol=1e-4)
    values = np.asarray(posteriors.dataobj)
    total = values.astype(np.int32).sum(axis=-1)
    assert np.abs(total - 255).max() <= 18  # each voxel's probabilities sum to 1 (±rounding)
    assert _run(["segment", str(files["ct"]), "-o", str(tmp_path / "o2"), "--model",
                 str(files["checkpoint"]), "--posteriors-grid", "native"]) == 2


def test_input_clean_up_can_be_switched_off(files: dict[str, Path], tmp_path: Path) -> None:
    import json

    default, plain = tmp_path / "default", tmp_path / "plain"
    common = ["--model", str(files["checkpoint"]), "--fast", "--threads", "1", "--no-overlay"]
    assert _run(["segment", str(files["ct"]), "-o", str(default), *common]) == 0
    assert _run(["segment", str(files["ct"]), "-o", str(plain), *common, "--no-inpaint",
                 "--no-denoise"]) == 0
    on = json.loads((default / "head_qc.json").read_text())
    off = json.loads((plain / "head_qc.json").read_text())
    assert on["resume_key"]["inpaint_dense_foci"] and on["resume_key"]["denoise"]
    assert not off["resume_key"]["inpaint_dense_foci"] and not off["resume_key"]["denoise"]
    facts = off["qc"]["input"]
    assert facts["dense_foci_inpainted_mm3"] == 0 and facts["network_input_smoothing_mm"] == 0
    assert on["resume_key"]["pipeline_revision"] >= 2


def test_progress_lines_with_eta_and_quiet(files: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b"):
        (inputs / f"{name}.nii.gz").write_bytes(files["ct"].read_bytes())
    common = ["--model", str(files["checkpoint"]), "--fast", "--threads", "1"]
    assert _run(["segment", str(inputs), "-o", str(tmp_path / "out"), *common]) == 0
    out = capsys.readouterr().out
    assert "[0/2 done] a: started" in out  # not a terminal: one plain line per case
    assert "[1/2 done, about 0:" in out and "b: started" in out  # with the batch ETA
    assert _run(["segment", str(inputs), "-o", str(tmp_path / "quiet"), *common, "--quiet"]) == 0
    quiet = capsys.readouterr().out
    assert "started" not in quiet and "done    " not in quiet and "outputs in" in quiet


def test_qc_takes_a_csv_path_as_synthseg(files: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    qc_csv = tmp_path / "qc" / "scores.csv"
    assert _run(["segment", str(files["ct"]), "-o", str(tmp_path / "out"), "--model",
                 str(files["checkpoint"]), "--threads", "1", "--qc", str(qc_csv)]) == 0
    rows = qc_csv.read_text().splitlines()
    header = rows[0].split(",")
    assert header[:3] == ["case", "qc_flagged", "qc_flags"] and "Left-Thalamus" in header
    assert len(rows) == 2 and rows[1].startswith("head,")
    capsys.readouterr()
    assert _run(["segment", str(files["ct"]), "-o", str(tmp_path / "old"), "--model",
                 str(files["checkpoint"]), "--fast", "--threads", "1", "--qc", "0"]) == 0
    assert "deprecated" in capsys.readouterr().err  # the old spelling still works, said so


def test_normative_percentiles_from_a_csv_refreshed_on_rerun_without_redoing(
        files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import json

    out = tmp_path / "out"
    people = tmp_path / "people.csv"
    people.write_text("case,age,sex\nhead,71,F\nnobody,40,M\n")
    base = ["segment", str(files["ct"]), "-o", str(out), "--model", str(files["checkpoint"]),
            "--fast", "--threads", "1"]
    assert _run([*base, "--demographics", str(people)]) == 0
    said = capsys.readouterr().out
    assert "case(s) not in this batch" in said and "nobody" in said
    record = json.loads((out / "head_qc.json").read_text())
    normative = record["normative"]
    assert normative["available"] and normative["demographics"]["age_years"] == 71.0
    assert normative["demographics"]["age_source"] == str(people)
    row = next(csv.DictReader((out / "volumes.csv").open()))
    assert row["age_years"] == "71" and row["sex"] == "female"
    thalamus = normative["structures"]["Left-Thalamus"]
    assert float(row["Left-Thalamus_percentile"]) == pytest.approx(thalamus["percentile"])
    icv = normative["intracranial_volume"]  # the ICV against the norms too
    assert float(row["intracranial_volume_percentile"]) == pytest.approx(icv["percentile"])
    assert icv["source"] == "braincharts"
    assert "<svg" in (out / "index.html").read_text()
    # new age and sex: the case is not segmented again, its percentiles are refreshed
    assert _run([*base, "--age", "40", "--sex", "M"]) == 0
    assert "skipped head" in capsys.readouterr().out
    refreshed = json.loads((out / "head_qc.json").read_text())["normative"]
    assert refreshed["demographics"] == {"age_years": 40.0, "sex": "male",
                                         "age_source": "--age", "sex_source": "--sex"}
    assert refreshed["structures"]["Left-Thalamus"]["expected_mm3"] != \
        thalamus["expected_mm3"]
    # without age and sex: no percentiles, and the console says why
    assert _run([*base, "--overwrite"]) == 0
    assert "no normative percentiles for 1 case(s) (head): age and sex unknown" in \
        capsys.readouterr().out
    row = next(csv.DictReader((out / "volumes.csv").open()))
    assert row["Left-Thalamus_percentile"] == "" and row["age_years"] == ""


def test_demographics_options_are_checked_before_any_case(
        files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    base = ["segment", str(files["ct"]), "-o", str(out), "--model", str(files["checkpoint"])]
    bad = tmp_path / "bad.csv"
    bad.write_text("case,age,sex\nhead,70,Q\n")
    for extra, words in ((["--demographics", str(bad)], "bad.csv:2: sex 'Q'"),
                         (["--age", "-3"], "--age: age -3 years"),
                         (["--sex", "yes"], "--sex: sex 'yes'"),
                         (["--age", "70", str(files["ct"])], "describe one person")):
        assert _run([*base, *extra]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and words in error, error
    assert not (out / "head_qc.json").exists()


@pytest.mark.shared_data
def test_dicom_series_gets_a_seg_and_a_volume_sr(files: dict[str, Path], tmp_path: Path,
                                                 shared_data: Path) -> None:
    pytest.importorskip("highdicom")
    import json

    import pydicom

    out = tmp_path / "out"
    assert _run(["segment", str(shared_data / "ct" / "dicom_ge_tilted"), "-o", str(out),
                 "--model", str(files["checkpoint"]), "--fast", "--threads", "2",
                 "--dicom-seg", "--no-overlay", "--quiet"]) == 0
    record = json.loads((out / "dicom_ge_tilted_qc.json").read_text())
    assert record["outputs"]["dicom_seg"] == "dicom_ge_tilted_seg.dcm"
    assert record["outputs"]["dicom_sr"] == "dicom_ge_tilted_sr.dcm"
    seg = pydicom.dcmread(out / "dicom_ge_tilted_seg.dcm")
    sr = pydicom.dcmread(out / "dicom_ge_tilted_sr.dcm")
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == seg.SeriesInstanceUID


@pytest.mark.shared_data
def test_age_and_sex_come_from_the_dicom_header_unless_given(
        files: dict[str, Path], tmp_path: Path, shared_data: Path) -> None:
    import json
    import shutil

    import pydicom

    folder = tmp_path / "patient"
    shutil.copytree(shared_data / "ct" / "dicom_ge_tilted", folder)
    for path in folder.glob("*.dcm"):
        dataset = pydicom.dcmread(path)
        dataset.PatientAge, dataset.PatientSex = "067Y", "F"
        dataset.save_as(path)
    out = tmp_path / "out"
    base = ["segment", str(folder), "-o", str(out), "--model", str(files["checkpoint"]),
            "--fast", "--threads", "2", "--no-overlay", "--quiet"]
    assert _run(base) == 0
    people = json.loads((out / "patient_qc.json").read_text())["normative"]["demographics"]
    assert people == {"age_years": 67.0, "sex": "female", "age_source": "DICOM header",
                      "sex_source": "DICOM header"}
    assert _run([*base, "--age", "70"]) == 0  # skipped, refreshed: --age wins, sex stays
    people = json.loads((out / "patient_qc.json").read_text())["normative"]["demographics"]
    assert people == {"age_years": 70.0, "sex": "female", "age_source": "--age",
                      "sex_source": "DICOM header"}
