"""``subct register --fixed CT --moving MRI [--labels L] -o OUT``: MRI → CT registration.

Thin layer over :func:`subct.transfer.register_files.register_files`: writes the transform,
the MRI and its labels moved onto the CT grid, a QC figure and the Mattes mutual
information before/after (printed and saved as ``registration.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from subct.transfer.register_files import register_files
from subct.transfer.registration import TRANSFORM_KINDS, RegistrationConfig


def register(app: typer.Typer) -> None:
    """Add the ``register`` command to ``app``."""

    @app.command("register")
    def register_command(
        fixed: Path = typer.Option(
            ..., "--fixed", help="Fixed image (the CT); outputs use its grid."),
        moving: Path = typer.Option(..., "--moving", help="Moving image (the T1 MRI)."),
        output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
        labels: Path | None = typer.Option(
            None, "--labels", help="Label map on the moving image's grid, moved with nearest "
            "neighbour onto the CT."),
        transform: str = typer.Option(
            "affine", "--transform", help="rigid | affine | deformable (B-spline after affine)."),
        assume_aligned: bool = typer.Option(
            False, "--assume-aligned", help="The pair is already registered (e.g. SynthRAD2023): "
            "skip optimisation, only resample."),
        working_spacing: float = typer.Option(
            2.0, "--working-spacing", help="Voxel size (mm) the optimisation runs at."),
        threads: int | None = typer.Option(None, "--threads", help="ITK threads (default all)."),
    ) -> None:
        """Register an MRI to its paired CT (Mattes MI; rigid → affine → optional B-spline)."""
        from subct.errors import SubctConfigError

        if transform not in TRANSFORM_KINDS:
            raise SubctConfigError(f"--transform must be one of {', '.join(TRANSFORM_KINDS)}, "
                                   f"got {transform!r}")
        config = RegistrationConfig(working_spacing_mm=working_spacing, threads=threads)
        outputs = register_files(fixed, moving, output, labels_path=labels,
                                 transform=transform,  # type: ignore[arg-type]
                                 assume_aligned=assume_aligned, config=config)
        result = outputs.result
        typer.echo(json.dumps({
            "kind": result.kind, "skipped": result.skipped,
            "mattes_mi_before": round(result.metric_before, 4),
            "mattes_mi_after": round(result.metric_after, 4),
            "elapsed_s": round(result.elapsed_s, 2), "output": str(output),
        }))
