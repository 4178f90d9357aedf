"""Batch runner: input expansion, outputs on the input grid, resume/overwrite, failures
reported at the end, atomic files, and a real in-process Dask cluster."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from subct.inference.batch import expand_inputs, run_batch
from subct.inference.config import InferenceConfig
from subct.inference.model import load_model
from subct.inference.outputs import BatchConfig
from subct.io.readers import load_volume
from subct.io.writers import save_volume
from subct.model.checkpoint import CheckpointMetadata, save_checkpoint
from subct.model.networks import build_network
from tests.support.phantom import analytic_head_phantom


def make_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "out_channels": 18, "channels": [4, 8, 16], "dropout": 0.2}
    metadata = CheckpointMetadata(network_name="unet3d", network_kwargs=kwargs,
                                  spacing_mm=(2.0, 2.0, 2.0), patch_size=(64, 96, 96),
                                  hu_window=(-100.0, 200.0))
    return save_checkpoint(path, build_network("unet3d", **kwargs), metadata)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    phantom = analytic_head_phantom(spacing_mm=2.0)
    folder = root / "folder"
    save_volume(phantom.ct, folder / "case_a.nii.gz")
    save_volume(phantom.ct.reoriented("LIA"), folder / "case_b.mgz")
    save_volume(phantom.ct.reoriented("LPS"), root / "other" / "case_c.nrrd")
    listing = root / "list.txt"
    listing.write_text("# cases\nother/case_c.nrrd\n", encoding="utf-8")
    corrupt = root / "broken.nii.gz"
    corrupt.write_bytes(b"not a nifti file")
    return {"folder": folder, "list": listing, "corrupt": corrupt,
            "checkpoint": make_checkpoint(root / "tiny.safetensors")}


def test_expand_inputs(inputs: dict[str, Path]) -> None:
    cases, problems = expand_inputs([inputs["folder"], inputs["list"], "/no/such/file.nii.gz"])
    assert [case.name for case in cases] == ["case_a", "case_b", "case_c"]
    assert len(problems) == 1 and "no such file" in problems[0].error


def test_batch_end_to_end_resume_and_failures(inputs: dict[str, Path], tmp_path: Path) -> None:
    model = load_model(inputs["checkpoint"], "cpu")
    config = BatchConfig(output_dir=tmp_path / "out", inference=InferenceConfig(tta=False),
                         model=inputs["checkpoint"], write_posteriors=True)
    sources = [inputs["folder"], inputs["list"], inputs["corrupt"], tmp_path / "missing.nii"]
    summary = run_batch(sources, config, model=model)
    status = {outcome.case_id: outcome.status for outcome in summary.cases}
    assert status == {"case_a": "done", "case_b": "done", "case_c": "done",
                      "broken": "failed", "missing.nii": "failed"}
    assert any("broken.nii.gz" in failure.error for failure in summary.failures)
    out = tmp_path / "out"
    for name, source in (("case_a", "folder/case_a.nii.gz"), ("case_b", "folder/case_b.mgz"),
                         ("case_c", "other/case_c.nrrd")):
        labels = load_volume(out / f"{name}_labels.nii.gz")
        original = load_volume(inputs["folder"].parent / source)
        assert labels.shape == original.shape
        np.testing.assert_allclose(labels.affine, original.affine, atol=1e-4)
        record = json.loads((out / f"{name}_qc.json").read_text())
        assert record["complete"] and record["scheme"] == "canonical"
        assert (out / f"{name}_overlay.png").is_file()
        assert (out / f"{name}_posteriors.nii.gz").is_file()
    with (out / "volumes.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [row["case"] for row in rows] == ["case_a", "case_b", "case_c"]
    assert "Left-Thalamus_mm3" in rows[0] and float(rows[0]["intracranial_volume_mm3"]) > 1e6
    html = (out / "index.html").read_text()
    assert "case_b_overlay.png" in html and "Failed cases (2)" in html
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".subct.lock"]

    stamp = (out / "case_a_labels.nii.gz").stat().st_mtime_ns
    (out / "case_b_qc.json").unlink()  # as if killed before case_b completed...
    stray = out / ".case_b_labels.nii.gz.x1y2z3.nii.gz"  # ...while writing its labels
    stray.write_bytes(b"partial")
    again = run_batch([inputs["folder"]], config, model=model)
    assert {o.case_id: o.status for o in again.cases} == {"case_a": "skipped",
                                                             "case_b": "done"}
    assert (out / "case_a_labels.nii.gz").stat().st_mtime_ns == stamp
    assert not stray.exists()
    with (out / "volumes.csv").open() as stream:
        # every complete case in the folder, whichever run wrote it (case_c came earlier)
        assert [row["case"] for row in csv.DictReader(stream)] == ["case_a", "case_b", "case_c"]

    redo = run_batch([inputs["folder"]], BatchConfig(
        output_dir=out, inference=InferenceConfig(tta=False), overwrite=True,
        write_posteriors=True), model=model)
    assert all(o.status == "done" for o in redo.cases)


def test_batch_on_dask_cluster(inputs: dict[str, Path], tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        config = BatchConfig(output_dir=tmp_path / "dask", model=inputs["checkpoint"],
                             inference=InferenceConfig(tta=False, scheme="merged"),
                             scheduler=cluster.scheduler_address, write_overlay=False)
        summary = run_batch([inputs["folder"], inputs["corrupt"]], config)
    status = {o.case_id: o.status for o in summary.cases}
    assert status == {"case_a": "done", "case_b": "done", "broken": "failed"}
    labels = load_volume(tmp_path / "dask" / "case_a_labels.nii.gz")
    assert set(np.unique(labels.array)) <= {0, 4, 10, 11, 12, 13, 16, 17, 18, 26}
    record = json.loads((tmp_path / "dask" / "case_a_qc.json").read_text())
    assert record["runtime"]["threads"] == 1  # the worker's budget, not every core
