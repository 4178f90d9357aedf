"""``subct fuse MAP... -o OUT --method ...``: fuse label maps of several segmenters.

Thin layer over :func:`subct.transfer.fusion.fuse_files` (consensus, majority, weighted, STAPLE;
optional per-voxel agreement map for QC).
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``fuse`` command to ``app``."""

    @app.command("fuse")
    def fuse_command(
        maps: list[Path] = typer.Argument(..., help="Label maps on one grid (one per segmenter)."),
        output: Path = typer.Option(..., "-o", "--output", help="Fused label map file."),
        method: str = typer.Option(
            "majority", "--method", help="consensus | majority | weighted | staple."),
        weights: str | None = typer.Option(
            None, "--weights", help="weighted: '1,1,2' (one per map) or a JSON file with one "
            "number or {label: weight} object per map."),
        agreement: Path | None = typer.Option(
            None, "--agreement", help="Also write the per-voxel agreement fraction (0..1)."),
    ) -> None:
        """Fuse label maps voxel by voxel; ties go to background (paper section 3.1)."""
        from subct.transfer.fusion import fuse_files, read_weights

        parsed = read_weights(weights) if weights is not None else None
        result = fuse_files(maps, output, method, parsed, agreement)
        typer.echo(f"wrote {output} ({method}; mean agreement in structures "
                   f"{result.mean_agreement_in_structures:.3f})")
