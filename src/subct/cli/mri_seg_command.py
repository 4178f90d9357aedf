"""``subct mri-seg MRI -o OUT --tool NAME [--from FILE]``: one MRI segmenter.

Thin layer over :func:`subct.transfer.registry.segment_file`: writes a label map with the 17
canonical FreeSurfer IDs on the MRI's own grid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

TOOLS_HELP = (
    "Segmenter: meshnet-subcortical, meshnet-18, meshnet-104, atlas-ho (built in); "
    "freesurfer, samseg, fastsurfer, synthseg, quicknat (external; or give --from)."
)


def register(app: typer.Typer) -> None:
    """Add the ``mri-seg`` command to ``app``."""

    @app.command("mri-seg")
    def mri_seg_command(
        mri: Path = typer.Argument(..., help="T1 MRI (NIfTI, MGZ, NRRD...)."),
        output: Path = typer.Option(..., "-o", "--output", help="Output label map file."),
        tool: str = typer.Option(..., "--tool", help=TOOLS_HELP),
        from_file: Path | None = typer.Option(
            None, "--from", help="Precomputed output of an external tool (its own label IDs, "
            "any grid in the MRI's world space)."),
        model_dir: Path | None = typer.Option(
            None, "--model-dir", help="MeshNet model folder (model.json + model.pth)."),
        midline: str = typer.Option(
            "mirror", "--midline", help="MeshNet L/R split: mirror | centroid | x0."),
        transform: str = typer.Option(
            "affine", "--transform", help="atlas-ho registration: rigid | affine | deformable."),
        command: str | None = typer.Option(
            None, "--command", help="quicknat: command template with {input} and {output}."),
        threads: int | None = typer.Option(
            None, "--threads", min=1, help="Threads for external tools (default 1) and MeshNet "
                                    "(default: the cores this process may use)."),
        device: str = typer.Option("auto", "--device",
                                   help="MeshNet: auto, cpu, cuda, cuda:N or mps."),
        precision: str | None = typer.Option(
            None, "--precision", help="MeshNet: auto (fp32 on CPU, where bf16 was slower "
                                      "even with AMX; AMP on CUDA), fp32 or bf16; default "
                                      "$SUBCT_PRECISION or auto."),
        backend: str | None = typer.Option(
            None, "--backend", help="MeshNet engine: torch, openvino, onnxruntime or auto; "
                                    "default $SUBCT_BACKEND, else OpenVINO when 10 GB of "
                                    "memory are free (faster), else torch (leaner)."),
    ) -> None:
        """Segment a T1 MRI into the 17 subcortical structures with one segmenter."""
        from subct.transfer.external import EXTERNAL_TOOLS
        from subct.transfer.registry import BUILTIN_SEGMENTERS, segment_file

        key = tool.strip().lower()
        options: dict[str, Any] = {}
        if key in EXTERNAL_TOOLS:
            options = {"from_file": from_file, "threads": threads or 1}
        elif key == "quicknat":
            options = {"from_file": from_file, "command": command}
        elif key.startswith("meshnet"):
            from subct.inference.model import resolve_device
            from subct.model.runtime import (
                BACKEND_ENV,
                requested_backend,
                requested_precision,
            )
            from subct.transfer.meshnet import MeshNetRunConfig

            run = MeshNetRunConfig(device=resolve_device(device), threads=threads,
                                   precision=requested_precision(precision),
                                   backend=None if backend is None and not os.environ.get(
                                       BACKEND_ENV) else requested_backend(backend))
            options = {"model_dir": model_dir, "midline": midline, "run": run}
        elif key in BUILTIN_SEGMENTERS:
            options = {"transform": transform}
        if from_file is not None and "from_file" not in options:
            from subct.errors import SubctConfigError

            raise SubctConfigError(f"--from is for external tools; {tool} runs built in")
        written = segment_file(mri, output, tool, **options)
        typer.echo(f"wrote {written}")
