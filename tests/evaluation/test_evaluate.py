"""``subct evaluate`` and its Python API, end to end on small NIfTI files and real maps."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from subct.cli import main
from subct.errors import SubctConfigError, SubctInputError
from subct.evaluation.evaluate import (
    EvaluationConfig,
    evaluate_case,
    evaluate_folders,
    evaluate_paths,
    load_label_map,
    match_cases,
    prediction_case_name,
)
from subct.evaluation.metrics import METRIC_UNITS, label_map_metrics
from subct.image.volume import Volume
from subct.io.writers import save_volume
from subct.labels.schemes import CANONICAL_LABELS, merge_left_right

SPACING = (0.8, 1.0, 2.0)
SHAPE = (30, 26, 14)
# LIA-like oblique-free affine with anisotropic voxels (x runs Left along axis 0).
AFFINE = np.array(
    [[-0.8, 0.0, 0.0, 12.0], [0.0, 0.0, 2.0, -14.0], [0.0, -1.0, 0.0, 13.0], [0, 0, 0, 1.0]]
)


def ball(center_voxel: tuple[float, float, float], radius_mm: float, shape=SHAPE,
         spacing=SPACING) -> np.ndarray:
    axes = [(np.arange(n) - c) * s for n, c, s in zip(shape, center_voxel, spacing, strict=True)]
    grid = np.meshgrid(*axes, indexing="ij", sparse=True)
    return sum(g**2 for g in grid) <= radius_mm**2


def reference_map() -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.int16)
    labels[ball((9, 13, 7), 5.0)] = 10  # left thalamus
    labels[ball((21, 13, 7), 5.0)] = 49  # right thalamus
    labels[ball((15, 5, 7), 3.0)] = 16  # brainstem
    labels[0:3, 0:3, 0:3] = 2  # cerebral white matter: not a target
    return labels


def predicted_map() -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.int16)
    labels[ball((10, 13, 7), 5.0)] = 10  # shifted by one voxel (0.8 mm)
    labels[ball((21, 13, 7), 4.0)] = 49  # too small
    labels[ball((15, 5, 7), 3.0)] = 16
    return labels


def write(path: Path, labels: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    return save_volume(Volume(labels, affine), path)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return int(exit_info.value.code or 0)


def test_evaluate_case_matches_metrics_on_arrays(tmp_path):
    ref = load_label_map(write(tmp_path / "ref.nii.gz", reference_map()))
    pred = load_label_map(write(tmp_path / "pred.nii.gz", predicted_map()))
    result = evaluate_case(pred, ref, EvaluationConfig())
    assert result.case == "ref"
    expected = label_map_metrics(predicted_map(), reference_map(), SPACING,
                                 {label: "" for label in CANONICAL_LABELS})
    for got, want in zip(result.structures, expected.structures, strict=True):
        assert got.dice == want.dice or (math.isnan(got.dice) and math.isnan(want.dice))
    by_label = result.by_label()
    assert by_label[16].dice == 1.0 and by_label[16].hausdorff_mm == 0.0
    # A one-voxel shift along the 0.8 mm axis: surface distances are 1 or 2 voxels
    # (at the flat poles of a discrete ball the surface moves by up to two voxels).
    assert 0.8 - 1e-5 <= by_label[10].hausdorff_mm <= 1.6 + 1e-5
    assert by_label[10].assd_mm < 0.8
    assert by_label[49].relative_volume_diff < 0
    assert by_label[4].status == "both_empty"
    merged = evaluate_case(pred, ref, "merged")
    assert len(merged.structures) == 9
    thalamus = merged.by_label()[10]
    both = merge_left_right(predicted_map()) == 10, merge_left_right(reference_map()) == 10
    assert thalamus.dice == pytest.approx(
        2 * np.count_nonzero(both[0] & both[1]) / (both[0].sum() + both[1].sum()))


def test_cli_file_pair_writes_long_csv_and_summary(tmp_path, capsys):
    ref = write(tmp_path / "case01.nii.gz", reference_map())
    pred = write(tmp_path / "pred" / "case01_labels.nii.gz", predicted_map())
    output = tmp_path / "out" / "metrics.csv"
    assert run_cli(["evaluate", str(pred), str(ref), "-o", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "Overall" in printed and "DSC" in printed and "Right-Thalamus" in printed
    rows = read_csv(output)
    assert list(rows[0]) == ["case", "structure", "metric", "value"]
    assert len(rows) == 17 * len(METRIC_UNITS) + 2
    values = {(r["structure"], r["metric"]): r["value"] for r in rows}
    assert float(values[("Brain-Stem", "dice")]) == 1.0
    assert values[("Left-Amygdala", "dice")] == "nan"
    assert 0 < float(values[("ALL", "volume_weighted_dice")]) < 1
    assert {r["case"] for r in rows} == {"case01"}
    assert [p.name for p in output.parent.iterdir()] == ["metrics.csv"]  # no temp files left


def test_cli_folders_match_by_name_and_report_missing(tmp_path, capsys):
    refs, preds = tmp_path / "refs", tmp_path / "preds"
    for case in ("a", "b", "c"):
        write(refs / f"{case}.nii.gz", reference_map())
    write(preds / "a_labels.nii.gz", predicted_map())
    write(preds / "b.nii.gz", reference_map())
    write(preds / "extra.nii.gz", predicted_map())
    pairs, missing, unmatched = match_cases(preds, refs)
    assert [case for case, _, _ in pairs] == ["a", "b"]
    assert missing == ["c"] and [p.name for p in unmatched] == ["extra.nii.gz"]
    api_result = evaluate_folders(preds, refs, EvaluationConfig())
    assert [case.case for case in api_result.cases] == ["a", "b"]
    assert api_result.missing_predictions == ["c"] and not api_result.complete
    with pytest.raises(SubctInputError, match="expected a folder"):
        evaluate_folders(preds / "b.nii.gz", refs, EvaluationConfig())
    output = tmp_path / "m.csv"
    assert run_cli(["evaluate", str(preds), str(refs), "-o", str(output),
                    "--scheme", "paper7"]) == 0
    errors = capsys.readouterr().err
    assert "c: no prediction" in errors and "extra.nii.gz: no reference" in errors
    rows = read_csv(output)
    assert {r["case"] for r in rows} == {"a", "b"}
    assert {r["structure"] for r in rows} == {"Lateral-Ventricles", "Thalamus", "Caudate",
                                              "Putamen", "Pallidum", "Hippocampus",
                                              "Brain-Stem", "ALL"}
    b_dice = [float(r["value"]) for r in rows if r["case"] == "b" and r["metric"] == "dice"
              and r["value"] != "nan"]
    assert b_dice == [1.0, 1.0]  # thalamus and brainstem, identical maps


def test_prediction_suffixes():
    assert prediction_case_name("/x/sub-01_labels.nii.gz") == "sub-01"
    assert prediction_case_name("sub-01_seg.mgz") == "sub-01"
    assert prediction_case_name("_labels.nii.gz") == "_labels"


def test_differing_grids_fail_unless_resampled(tmp_path, capsys):
    ref = write(tmp_path / "ref" / "c.nii.gz", reference_map())
    # The prediction on a coarser grid (2× voxel size on axis 0) covering the same space.
    coarse_affine = AFFINE.copy()
    coarse_affine[:3, 0] *= 2.0
    coarse_affine[:3, 3] += AFFINE[:3, 0] * 0.5  # voxel centres: keep the same field of view
    coarse = reference_map()[::2]
    pred = write(tmp_path / "pred" / "c.nii.gz", coarse, coarse_affine)
    assert run_cli(["evaluate", str(pred), str(ref)]) == 2  # the user's to fix (issue 25)
    errors = capsys.readouterr().err
    assert len(errors.strip().splitlines()) == 1  # one line
    assert str(pred) in errors and str(ref) in errors and "--resample" in errors
    result = evaluate_paths(pred, ref, EvaluationConfig(resample=True))
    assert not result.failures
    dice = result.cases[0].by_label()
    assert dice[10].dice > 0.85 and dice[49].dice > 0.85


def test_empty_prediction_is_scored_not_rejected(tmp_path):
    ref = write(tmp_path / "r.nii.gz", reference_map())
    pred = write(tmp_path / "p.nii.gz", np.zeros(SHAPE, dtype=np.uint8))
    result = evaluate_paths(pred, ref, EvaluationConfig())
    thalamus = result.cases[0].by_label()[10]
    assert thalamus.status == "pred_empty" and math.isinf(thalamus.hd95_mm)
    assert result.cases[0].mean_dice == 0.0


def test_bad_options_and_inputs_exit_2_with_one_line(tmp_path, capsys):
    ref = write(tmp_path / "r.nii.gz", reference_map())
    assert run_cli(["evaluate", str(ref), str(ref), "--scheme", "nine"]) == 2
    assert "unknown label scheme 'nine'" in capsys.readouterr().err
    assert run_cli(["evaluate", str(ref), str(ref), "--ref-scheme", "paper7"]) == 2
    assert "--scheme paper7" in capsys.readouterr().err
    assert run_cli(["evaluate", str(tmp_path / "nope.nii.gz"), str(ref)]) == 2
    error = capsys.readouterr().err
    assert "nope.nii.gz: no such file" in error and "Traceback" not in error
    assert run_cli(["evaluate", str(tmp_path), str(ref)]) == 2  # folder vs file
    capsys.readouterr()
    float_map = tmp_path / "float.nii.gz"
    nib.save(nib.Nifti1Image(np.full(SHAPE, 0.5, dtype=np.float32) + np.eye(30, 26)[..., None],
                             AFFINE), str(float_map))
    assert run_cli(["evaluate", str(float_map), str(ref)]) == 2
    error = capsys.readouterr().err
    assert "non-integer" in error and len(error.strip().splitlines()) == 1
    with pytest.raises(SubctConfigError):
        EvaluationConfig(pred_labels="quicknat")


@pytest.mark.shared_data
def test_real_paper7_maps(shared_data, tmp_path, capsys):
    folder = shared_data / "label_maps" / "ct_subcortical_paper"
    refs = tmp_path / "refs"
    refs.mkdir()
    preds = tmp_path / "preds"
    for case in ("1BA001", "1BB002"):
        (refs / f"{case}.nii.gz").symlink_to(folder / f"{case}.nii.gz")
    # A perturbed prediction: the real map shifted by 2 voxels along the first axis
    # (2 mm, the maps are 1 mm isotropic), and the other case predicted perfectly.
    image = nib.load(folder / "1BA001.nii.gz")
    shifted = np.roll(np.asarray(image.dataobj), 2, axis=0)
    write(preds / "1BA001_labels.nii.gz", shifted, image.affine)
    (preds / "1BB002.nii.gz").symlink_to(folder / "1BB002.nii.gz")
    output = tmp_path / "real.csv"
    assert run_cli(["evaluate", str(preds), str(refs), "--scheme", "paper7", "--ref-scheme",
                    "paper7", "--pred-scheme", "paper7", "-o", str(output)]) == 0
    assert "Brain-Stem" in capsys.readouterr().out
    rows = read_csv(output)
    values = {(r["case"], r["structure"], r["metric"]): float(r["value"]) for r in rows}
    for structure in ("Lateral-Ventricles", "Thalamus", "Brain-Stem"):
        assert values[("1BB002", structure, "dice")] == 1.0
        assert values[("1BB002", structure, "hausdorff_mm")] == 0.0
        assert 0.3 < values[("1BA001", structure, "dice")] < 1.0
        assert values[("1BA001", structure, "hausdorff_mm")] == pytest.approx(2.0)
        assert values[("1BA001", structure, "abs_volume_diff_voxels")] == 0.0
    # Maps of different subjects live on different CT grids: a clear error, not numbers.
    result = evaluate_paths(folder / "1BA001.nii.gz", folder / "1BB002.nii.gz",
                            EvaluationConfig(scheme="paper7", pred_labels="paper7",
                                             ref_labels="paper7"))
    assert result.failures and "differs from reference" in result.failures[0].problem
