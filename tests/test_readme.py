"""Every Python block of the README runs as written, in a folder holding small stand-in
files with the names the blocks use (a CT, a checkpoint, prediction and reference
folders, label maps, a DICOM folder)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from subct.image.volume import Volume
from subct.io.writers import save_volume
from subct.model.checkpoint import CheckpointMetadata, save_checkpoint
from subct.model.networks import build_network
from tests.support.phantom import analytic_head_phantom

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _workspace(folder: Path, shared_data: Path) -> None:
    case = analytic_head_phantom(spacing_mm=4.0)
    save_volume(case.ct, folder / "scan.nii.gz")
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "out_channels": 18, "channels": [4, 8, 16]}
    save_checkpoint(folder / "checkpoint.safetensors", build_network("unet3d", **kwargs),
                    CheckpointMetadata(network_name="unet3d", network_kwargs=kwargs,
                                       spacing_mm=(4.0, 4.0, 4.0), patch_size=(32, 32, 32)))
    for sub in ("pred", "refs"):
        save_volume(case.labels, folder / sub / "case01.nii.gz")
    labels = np.zeros((48, 48, 48), dtype=np.int16)
    labels[8:40, 8:40, 8:40] = 2          # white matter
    labels[14:22, 18:30, 18:30] = 17      # hippocampi and thalami as targets
    labels[26:34, 18:30, 18:30] = 53
    labels[2:8, 2:46, 2:46] = 515         # skull
    save_volume(Volume(labels, np.eye(4)), folder / "label_maps" / "map01.nii.gz")
    dicom = shared_data / "ct" / "dicom_ge_tilted"
    shutil.copytree(dicom, folder / "dicom_folder")


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_block_runs(index: int, tmp_path: Path, shared_data: Path) -> None:
    _workspace(tmp_path, shared_data)
    code = _blocks()[index].replace("[160, 160, 160]", "[48, 48, 48]")  # small data
    code = code.replace("num_workers=2", "num_workers=0")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, f"README block {index}", "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(cwd)
