"""Docs that run (issue 26): every Python block of the README and ``docs/*.md`` runs as
written, in a folder holding small stand-in files with the names the blocks use (a CT, a
checkpoint, prediction and reference folders, label maps, a DICOM folder), unless the line
before it marks it ``<!-- synopsis -->``; every shell block parses (``bash -n``) and holds
no placeholder that would break or mislead the shell when pasted (``[options]``,
``<file>``)."""

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

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
SYNOPSIS = "<!-- synopsis -->"


def _fenced(language: str) -> list[tuple[str, str, bool]]:
    """(document, code, marked synopsis) of every ``language`` block of the docs."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(rf"(^[^\n]*\n)?```{language}\n(.*?)```", text, re.S | re.M):
            before = (match.group(1) or "").strip()
            found.append((path.name, match.group(2), before == SYNOPSIS))
    return found


def _blocks() -> list[str]:
    return [code for _, code, synopsis in _fenced("python") if not synopsis]


def _workspace(folder: Path, shared_data: Path) -> None:
    case = analytic_head_phantom(spacing_mm=4.0)
    save_volume(case.ct, folder / "scan.nii.gz")
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "out_channels": 18, "channels": [4, 8, 16]}
    save_checkpoint(folder / "checkpoint.safetensors", build_network("unet3d", **kwargs),
                    CheckpointMetadata(network_name="unet3d", network_kwargs=kwargs,
                                       spacing_mm=(4.0, 4.0, 4.0), patch_size=(32, 32, 32),
                                       hu_window=(-100.0, 200.0)))
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
    shutil.copytree(ROOT / "configs", folder / "configs")  # the training example's config


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_block_runs(index: int, tmp_path: Path, shared_data: Path) -> None:
    _workspace(tmp_path, shared_data)
    code = _blocks()[index].replace("[160, 160, 160]", "[48, 48, 48]")  # small data
    code = code.replace("num_workers=2", "num_workers=0")
    code = code.replace('"schedule.epochs=5"', '"schedule.epochs=1"')  # one tiny epoch
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, f"docs block {index}", "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("index", range(len(_fenced("bash"))))
def test_shell_block_is_safe_to_paste(index: int) -> None:
    import subprocess

    document, code, _ = _fenced("bash")[index]
    parsed = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True)
    assert parsed.returncode == 0, f"{document}: {parsed.stderr}"
    for line in code.splitlines():
        command = re.sub(r"(^|\s)#.*$", "", line)  # comments are harmless
        command = re.sub(r"(['\"]).*?\1", "", command)  # so is quoted text
        assert not re.search(r"\[[-a-z]|<[a-zA-Z]", command), f"{document}: {line}"
