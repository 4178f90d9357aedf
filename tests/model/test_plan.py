"""The model plan: one home for spacing and HU window, disagreements named."""

from __future__ import annotations

from pathlib import Path

import pytest

from subct.dataset.nnunet import NnunetExportConfig, export_synthetic
from subct.errors import SubctConfigError
from subct.model.metadata import CheckpointMetadata
from subct.model.plan import DEFAULT_HU_WINDOW, require_same


def test_require_same_names_both_settings_and_values() -> None:
    require_same("a.window", [-100, 200], "b.window", DEFAULT_HU_WINDOW)  # equal: no error
    with pytest.raises(SubctConfigError, match=r"a\.window \[-50\.0, 200\.0\].*b\.window"):
        require_same("a.window", [-50, 200], "b.window", DEFAULT_HU_WINDOW)


def test_checkpoint_metadata_gives_the_plan() -> None:
    metadata = CheckpointMetadata(network_name="unet3d",
                                  network_kwargs={"channels": [8, 16, 32]},
                                  hu_window=(-50.0, 150.0), patch_size=(64, 64, 64),
                                  spacing_mm=(1.0, 1.0, 1.0))
    plan = metadata.plan
    assert plan.hu_window == (-50.0, 150.0) and plan.size_divisor == 4
    assert plan.spacing_mm == (1.0, 1.0, 1.0) and plan.label_scheme == "canonical"


def test_nnunet_export_refuses_a_second_hu_window(tmp_path: Path) -> None:
    config = NnunetExportConfig(output_root=tmp_path, dataset_id=7, dataset_name="x",
                                synth={"ct": {"window": [-20.0, 100.0]}})
    with pytest.raises(SubctConfigError, match="synth.ct.window"):
        export_synthetic(["unused.nii.gz"], 1, config)
    assert not any(tmp_path.iterdir())  # refused before any work


def test_checkpoint_metadata_without_its_plan_is_refused(tmp_path: Path) -> None:
    import json
    import struct

    from subct.errors import SubctInputError
    from subct.model.metadata import METADATA_KEY, read_checkpoint_metadata

    meta = {"network_name": "unet3d", "spacing_mm": [1, 1, 1], "patch_size": [64, 64, 64]}
    header = json.dumps({"__metadata__": {METADATA_KEY: json.dumps(meta)}}).encode()
    path = tmp_path / "no_window.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(SubctInputError, match="hu_window"):
        read_checkpoint_metadata(path)
