"""End-to-end ``build-dataset`` on a tiny generated paired set on a 2-worker Dask cluster.

Cases are made from the real fsaverage T1 (4 mm, 64³) and a pseudo-CT of the same
head (:mod:`subct.synth.pseudo_ct`): one pair already aligned (same grid, as SynthRAD2023),
one misaligned by a known shift (registration needed), one with a corrupt CT (must be
reported while the others finish). Segmenters: the real built-in Harvard-Oxford atlas
(``atlas-ho``, registered to each MRI) and FreeSurfer/SynthSeg outputs supplied as
precomputed files (the aseg), fused by majority vote.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from subct.dataset.build import build_dataset
from subct.dataset.case import head_centred_grid
from subct.dataset.config import BuildConfig
from subct.dataset.quality import flag_outliers
from subct.dataset.sources import discover_cases
from subct.dataset.splits import make_splits
from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.io.writers import save_volume
from subct.synth.pseudo_ct import pseudo_ct_from_t1


def _four_mm(volume: Volume, labels: bool) -> Volume:
    factor = 4
    if labels:
        array = np.asarray(volume.array)[2::factor, 2::factor, 2::factor].astype(np.int16)
    else:
        data = np.asarray(volume.array, dtype=np.float32)
        array = data.reshape(64, 4, 64, 4, 64, 4).mean(axis=(1, 3, 5))
    affine = volume.affine.copy()
    affine[:3, :3] *= factor
    affine[:3, 3] = (volume.affine @ np.r_[1.5, 1.5, 1.5, 1.0])[:3]
    return Volume(np.ascontiguousarray(array), affine)


@pytest.fixture(scope="module")
def paired_source(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = shared_data / "mri" / "fsaverage"
    t1 = _four_mm(load_volume(folder / "T1.mgz"), labels=False)
    aseg = Volume(_four_mm(load_volume(folder / "aseg.mgz"), labels=True).array, t1.affine)
    ct = pseudo_ct_from_t1(t1, aseg, seed=5)
    source = tmp_path_factory.mktemp("synthrad")
    shifted = t1.affine.copy()
    shifted[:3, 3] += [4.0, -6.0, 3.0]
    cases = {  # SynthRAD2023 Task1 layout: brain/<case>, centre letter in the case ID
        ("brain", "1BA001"): t1.affine,  # pre-registered: same grid
        ("brain", "1BA002"): shifted,    # misaligned: needs registration
        ("brain", "1BB001"): t1.affine,  # CT will be corrupt
    }
    for (site, case), mri_affine in cases.items():
        case_dir = source / site / case
        save_volume(Volume(t1.array, mri_affine), case_dir / "mr.nii.gz")
        save_volume(Volume(aseg.array, mri_affine), case_dir / "seg_freesurfer.nii.gz")
        save_volume(Volume(aseg.array, mri_affine), case_dir / "seg_synthseg.nii.gz")
        save_volume(ct, case_dir / "ct.nii.gz")
    (source / "brain" / "1BB001" / "ct.nii.gz").write_bytes(b"not a nifti file")
    return source


@pytest.mark.shared_data
def test_build_dataset_end_to_end_with_failure_and_resume(
    paired_source: Path, tmp_path: Path,
) -> None:
    output = tmp_path / "Dataset501"
    config = BuildConfig(tools=("freesurfer", "synthseg", "atlas-ho"), fusion="majority",
                         target_spacing_mm=2.0, max_shape=(96, 96, 96))
    report = build_dataset(paired_source, output, config, workers=2, progress=False)

    assert report.done == ["1BA001", "1BA002"]
    assert list(report.failed) == ["1BB001"]
    assert "ct.nii.gz" in report.failed["1BB001"]
    assert (output / "cases" / "1BB001" / "error.txt").is_file()
    assert json.loads((output / "failures.json").read_text()) == report.failed

    dataset = json.loads((output / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "CT"}
    assert dataset["labels"]["background"] == 0
    assert sorted(dataset["labels"].values()) == list(range(18))
    assert dataset["freesurfer_ids_by_class"]["1"] == 4 and dataset["numTraining"] == 2

    aseg = np.asarray(load_volume(paired_source / "brain" / "1BA001" /
                                  "seg_freesurfer.nii.gz").array)
    for case in report.done:
        image = load_volume(output / "imagesTr" / f"{case}_0000.nii.gz")
        labels = load_volume(output / "labelsTr" / f"{case}.nii.gz")
        assert image.shape == labels.shape and max(image.shape) <= 96
        np.testing.assert_allclose(image.spacing, (2.0, 2.0, 2.0))
        values = set(np.unique(labels.array).tolist())
        assert values <= set(range(18)) and len(values) >= 12
        # transferred volumes match the MRI labels: thalamus (class 3 = FreeSurfer 10)
        thalamus_mm3 = float((labels.array == 3).sum()) * 8.0
        assert thalamus_mm3 == pytest.approx(float((aseg == 10).sum()) * 64.0, rel=0.3)

    registration = json.loads((output / "cases" / "1BA002" / "registration.json")
                              .read_text())
    assert registration["kind"] == "affine" and registration["metric_after"] > 0.5
    aligned = json.loads((output / "cases" / "1BA001" / "registration.json").read_text())
    assert aligned["skipped"] is True

    with (output / "qc.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [row["case"] for row in rows] == report.done
    assert all(float(row["mean_agreement"]) > 0.5 for row in rows)
    assert float(rows[0]["Left-Thalamus_mm3"]) > 0
    splits = json.loads((output / "splits.json").read_text())
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == report.done

    # Re-run, this time on an existing cluster (--scheduler): finished cases are skipped,
    # the broken one is tried (and reported) again.
    from dask.distributed import LocalCluster

    marker = output / "cases" / "1BA001" / "done.json"
    stamp = marker.stat().st_mtime_ns
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        again = build_dataset(paired_source, output, config,
                              scheduler=cluster.scheduler_address, progress=False)
    assert again.done == [] and again.skipped == report.done
    assert list(again.failed) == ["1BB001"]
    assert marker.stat().st_mtime_ns == stamp


def test_folder_sources_name_cases_and_sites(tmp_path: Path) -> None:
    for relative in ("siteX/p01", "siteY/p01", "brain/1BC007"):
        (tmp_path / relative).mkdir(parents=True)
        (tmp_path / relative / "mr.nii.gz").write_bytes(b"")
        (tmp_path / relative / "ct.nii.gz").write_bytes(b"")
    (tmp_path / "siteX" / "p01" / "seg_synthseg.mgz").write_bytes(b"")
    cases = {case.case_id: case for case in discover_cases(tmp_path)}
    assert sorted(cases) == ["1BC007", "siteX_p01", "siteY_p01"]
    assert cases["1BC007"].site == "C" and cases["siteY_p01"].site == "siteY"
    assert cases["siteX_p01"].precomputed == {
        "synthseg": tmp_path / "siteX" / "p01" / "seg_synthseg.mgz"}


def test_manifest_source_and_missing_columns(tmp_path: Path) -> None:
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("case,mri,ct,site,seg_synthseg\n"
                        "p1,a/mr.nii.gz,a/ct.nii.gz,X,a/synthseg.nii.gz\n"
                        "p2,/data/b_mr.nii.gz,/data/b_ct.nii.gz,,\n")
    cases = discover_cases(manifest)
    assert [c.case_id for c in cases] == ["p1", "p2"]
    assert cases[0].mri == tmp_path / "a" / "mr.nii.gz" and cases[0].site == "X"
    assert cases[0].precomputed == {"synthseg": tmp_path / "a" / "synthseg.nii.gz"}
    assert cases[1].site is None and cases[1].ct == Path("/data/b_ct.nii.gz")

    from subct.errors import SubctInputError

    bad = tmp_path / "bad.csv"
    bad.write_text("case,mri\np1,x.nii.gz\n")
    with pytest.raises(SubctInputError, match="ct"):
        discover_cases(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SubctInputError, match="no cases"):
        discover_cases(empty)


def test_splits_are_seeded_fractional_and_site_aware() -> None:
    sites = {f"c{i:02d}": ("A" if i < 20 else "B" if i < 30 else "C") for i in range(40)}
    first = make_splits(sites, (0.7, 0.15, 0.15), seed=1)
    assert first == make_splits(sites, (0.7, 0.15, 0.15), seed=1)
    assert first != make_splits(sites, (0.7, 0.15, 0.15), seed=2)
    assert (len(first["train"]), len(first["val"]), len(first["test"])) == (28, 6, 6)
    for split in ("train", "val", "test"):  # stratified: every site in every split
        assert {sites[c] for c in first[split]} == {"A", "B", "C"}
    held = make_splits(sites, (0.5, 0.25, 0.25), seed=0, site_mode="hold_out")
    for split in ("train", "val", "test"):  # hold-out: each site in exactly one split
        assert len({sites[c] for c in held[split]}) == 1
    assert sorted(sum(held.values(), [])) == sorted(sites)


def test_outlier_flags_and_head_centred_crop() -> None:
    rows = [{"case": f"c{i}", "mean_agreement": 0.9,
             "volumes_mm3": {"Left-Thalamus": 8000.0 + 50 * i}, "mi_after": 1.0}
            for i in range(6)]
    rows[2]["volumes_mm3"]["Left-Thalamus"] = 20000.0
    rows[4]["mean_agreement"] = 0.3
    rows[5]["mean_pairwise_dice"] = 0.2
    flagged = flag_outliers(rows, z_threshold=3.0, min_agreement=0.6, min_pairwise_dice=0.5)
    assert any(f.startswith("volume:Left-Thalamus") for f in flagged[2]["flags"])
    assert flagged[4]["flags"] == ["agreement:0.30"]
    assert flagged[5]["flags"] == ["pairwise_dice:0.20"]
    assert flagged[0]["flags"] == []

    ct = np.full((300, 40, 40), -1000.0, dtype=np.float32)
    ct[200:280, 10:30, 10:30] = 40.0  # head near one end of a long field of view
    grid = head_centred_grid(Volume(ct, np.eye(4)), 1.0, (100, 256, 256))
    assert grid.shape == (100, 40, 40)
    first_x = grid.affine[0, 3]
    assert first_x <= 200 and first_x + 99 >= 279  # the head is inside the crop


def test_build_dataset_command_rejects_bad_options_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from subct.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["build-dataset", str(tmp_path), "-o", str(tmp_path / "out"), "--tools",
              "atlas-ho", "--fusion", "average"])
    assert exit_info.value.code == 2
    assert "fusion" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["build-dataset", str(tmp_path / "missing"), "-o", str(tmp_path / "out"),
              "--tools", "atlas-ho"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "missing" in error and len(error.strip().splitlines()) == 1


def test_a_missing_tool_is_refused_before_any_work(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from subct.transfer.segmenter import SegmenterUnavailableError

    case = tmp_path / "source" / "brain" / "1BA001"
    case.mkdir(parents=True)
    for name in ("mr.nii.gz", "ct.nii.gz"):
        (case / name).write_bytes(b"never read")
    output = tmp_path / "Dataset502"
    config = BuildConfig(tools=("samseg",), fusion="majority")
    monkeypatch.setenv("PATH", str(tmp_path))  # no tool installed, whatever this machine has
    with pytest.raises(SegmenterUnavailableError, match="samseg"):
        build_dataset(tmp_path / "source", output, config, workers=1, progress=False)
    assert not output.exists()  # refused before creating anything
