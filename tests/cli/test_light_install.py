"""The inference install (issue 26): segment, evaluate and info run with PyTorch, MONAI,
Dask, matplotlib, ONNX and safetensors absent (imports of them fail, as in a venv of
``pip install subct``), on the shipped model's OpenVINO graph; a command that needs them
says which extra to install, in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from subct.io.writers import save_volume
from tests.support.phantom import analytic_head_phantom

#: Run the CLI with the training-only packages made unimportable.
RUNNER = """
import sys, importlib.abc
BLOCKED = {"torch", "monai", "dask", "distributed", "matplotlib", "onnx", "safetensors",
           "einops"}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
from subct.cli import main
main(sys.argv[1:])
"""


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUNNER, *argv], capture_output=True,
                          text=True, timeout=300)


def test_inference_commands_need_no_training_stack(tmp_path: Path) -> None:
    head = save_volume(analytic_head_phantom(spacing_mm=4.0).ct, tmp_path / "head.nii.gz")
    out = tmp_path / "out"
    done = _cli("segment", str(head), "-o", str(out), "--fast", "--scheme", "merged", "-q",
                "--age", "70", "--sex", "F")
    assert done.returncode == 0, done.stderr
    assert (out / "head_labels.nii.gz").is_file() and (out / "index.html").is_file()
    import json

    normative = json.loads((out / "head_qc.json").read_text())["normative"]
    assert normative["available"]  # the norms need no training stack either
    assert "--scheme canonical" in normative["structures"]["Thalamus"]["reason"]
    assert normative["structures"]["Brain-Stem"]["source"] == "braincharts"
    labels = str(out / "head_labels.nii.gz")
    assert _cli("evaluate", labels, labels, "--scheme", "merged").returncode == 0
    assert _cli("info", str(head)).returncode == 0
    config = Path(__file__).resolve().parents[2] / "configs" / "tiny_synthetic.yaml"
    training = _cli("train", str(config))
    assert training.returncode == 2 and 'pip install "subct[train]"' in training.stderr
    assert training.stderr.count("\n") <= 1 and "Traceback" not in training.stderr
