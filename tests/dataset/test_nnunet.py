"""nnU-Net v2 export: layout and dataset.json schema, and training on the exported data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from subct.cli import main
from subct.dataset.nnunet import (
    NnunetExportConfig,
    check_nnunet_raw,
    dataset_json,
    export_pairs,
)
from subct.errors import SubctConfigError
from subct.io.readers import load_volume
from subct.training.config import training_config_from_dict
from subct.training.loop import train


def test_dataset_json_follows_the_nnunet_v2_schema() -> None:
    meta = dataset_json("merged", 7, "Demo", "test")
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"]["background"] == 0
    assert sorted(meta["labels"].values()) == list(range(10))  # consecutive, 9 + background
    assert meta["numTraining"] == 7 and meta["file_ending"] == ".nii.gz"
    assert meta["freesurfer_ids_by_class"]["1"] == 4  # class 1 = lateral ventricle
    with pytest.raises(SubctConfigError):
        NnunetExportConfig(output_root=Path("."), dataset_id=1000, dataset_name="Demo")
    with pytest.raises(SubctConfigError):
        NnunetExportConfig(output_root=Path("."), dataset_id=5, dataset_name="bad name")


def test_synthetic_export_via_cli_has_nnunet_layout(shared_data: Path, tmp_path: Path) -> None:
    label_map = shared_data / "label_maps" / "synthseg" / "training_seg_01.nii.gz"
    with pytest.raises(SystemExit) as exit_info:
        main(["export-nnunet", str(tmp_path), "--id", "7", "--name", "SynthTiny",
              "--label-maps", str(label_map), "--samples-per-map", "2",
              "--shape", "64", "64", "48"])
    assert exit_info.value.code == 0
    folder = tmp_path / "Dataset007_SynthTiny"
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and len(meta["labels"]) == 18
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        "synth_training_seg_01_000_0000.nii.gz", "synth_training_seg_01_001_0000.nii.gz"]
    image = load_volume(folder / "imagesTr" / "synth_training_seg_01_000_0000.nii.gz")
    label = load_volume(folder / "labelsTr" / "synth_training_seg_01_000.nii.gz")
    assert image.geometry.same_grid(label.geometry) and image.shape == (64, 64, 48)
    assert image.array.min() <= -500 and image.array.max() > 0  # HU, not [0, 1]
    assert 0 < label.array.max() <= 17
    assert check_nnunet_raw(folder) == []
    splits = json.loads((folder / "splits_final.json").read_text())
    assert len(splits[0]["train"]) == 1 and len(splits[0]["val"]) == 1


def test_paired_export_converts_labels_and_trains_mixed(shared_data: Path, tmp_path: Path) -> None:
    # real-format pairs: labels in FreeSurfer IDs, CT made from them (HU per structure)
    from subct.image.volume import Volume
    from subct.io.writers import save_volume

    images, labels = tmp_path / "ct", tmp_path / "labels"
    rng = np.random.default_rng(1)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for index in range(3):
        ids = np.zeros((28, 28, 28), dtype=np.int16)
        ids[6:14, 6 + index:14 + index, 6:16] = 10   # left thalamus
        ids[15:22, 8:16, 8 + index:18 + index] = 49  # right thalamus
        ids[4:8, 18:22, 10:14] = 999                 # not a target: becomes background
        hu = np.where(ids > 0, 40.0, 25.0) + rng.normal(0, 2, ids.shape)
        hu[:2] = -1000.0
        save_volume(Volume(hu.astype(np.float32), affine), images / f"c{index}.nii.gz")
        save_volume(Volume(ids, affine), labels / f"c{index}.nii.gz")
    (labels / "orphan.nii.gz").write_bytes(b"")  # no CT: ignored by matching
    config = NnunetExportConfig(output_root=tmp_path / "raw", dataset_id=12,
                                dataset_name="Pairs", seed=0)
    folder, failures = export_pairs(images, labels, config)
    assert failures == []
    assert check_nnunet_raw(folder) == []
    exported = load_volume(folder / "labelsTr" / "c0.nii.gz").array
    assert set(np.unique(exported)) == {0, 3, 4}  # canonical class indices of 10 and 49

    # nnU-Net-style predictions (class indices) back to FreeSurfer IDs, then subct evaluate
    with pytest.raises(SystemExit) as exit_info:
        main(["nnunet-to-labels", str(folder / "labelsTr"), str(tmp_path / "fs"),
              "--dataset-json", str(folder / "dataset.json")])
    assert exit_info.value.code == 0
    restored = load_volume(tmp_path / "fs" / "c1.nii.gz").array
    assert set(np.unique(restored)) == {0, 10, 49}
    from subct.evaluation.evaluate import EvaluationConfig, evaluate_paths

    scores = evaluate_paths(tmp_path / "fs", labels, EvaluationConfig())
    assert len(scores.cases) == 3
    assert all(c.by_label()[10].dice == 1.0 and c.by_label()[49].dice == 1.0
               for c in scores.cases)

    maps = shared_data / "label_maps" / "synthseg"
    values = {
        "output_dir": str(tmp_path / "run"), "seed": 0, "progress_bar": False,
        "evaluate_after_training": True,
        "data": {"real": {"dataset_dir": str(folder), "patches_per_validation_case": 1},
                 "synthetic": {"label_maps": [str(maps / "training_seg_01.nii.gz")]},
                 "synthetic_fraction": 0.5, "patch_size": [16, 16, 16], "batch_size": 2,
                 "samples_per_epoch": 4},
        "network": {"name": "unet3d", "kwargs": {"channels": [4, 8]}},
        "loss": {"name": "weighted_ce", "class_weights": "cube_root"},
        "schedule": {"epochs": 1},
    }
    splits = json.loads((folder / "splits.json").read_text())
    splits["test"] = splits["val"]
    (folder / "splits.json").write_text(json.dumps(splits))
    result = train(training_config_from_dict(values))
    assert len(result.step_losses) == 2 and np.isfinite(result.step_losses).all()
    assert result.evaluation_csv is not None
    text = result.evaluation_csv.read_text()
    assert "Left-Thalamus,dice," in text and "hd95_mm" in text and "assd_mm" in text
