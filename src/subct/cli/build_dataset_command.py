"""``subct build-dataset SOURCE -o DATASET --tools a,b,c --fusion majority``.

Thin layer over :func:`subct.dataset.build.build_dataset`: paired MRI/CT cases →
nnU-Net v2 raw dataset with transferred, fused MRI labels, splits and a QC table, run
on dask.distributed. Exit code 2 when any case failed (the others are still written).
"""

from __future__ import annotations

from pathlib import Path

import typer

from subct.cli.console import make_console, plain


def register(app: typer.Typer) -> None:
    """Add the ``build-dataset`` command to ``app``."""

    @app.command("build-dataset")
    def build_dataset_command(
        source: Path = typer.Argument(
            ..., help="SynthRAD2023-style folder (<site>/<case>/mr.nii.gz, ct.nii.gz) or a "
            "CSV manifest (case, mri, ct[, site, mask, seg_<tool>])."),
        output: Path = typer.Option(..., "-o", "--output", help="Dataset folder (nnU-Net raw)."),
        tools: str = typer.Option(
            ..., "--tools", help="Comma-separated segmenters, e.g. meshnet-18,atlas-ho,synthseg "
            "(external tools read seg_<tool> files of each case)."),
        fusion: str = typer.Option("majority", "--fusion",
                                   help="consensus | majority | weighted | staple."),
        weights: str | None = typer.Option(
            None, "--weights", help="Comma-separated per-tool weights for --fusion weighted."),
        workers: int = typer.Option(2, "--workers", help="Local Dask worker processes."),
        scheduler: str | None = typer.Option(
            None, "--scheduler", help="Existing Dask scheduler, e.g. tcp://host:8786."),
        transform: str = typer.Option("affine", "--transform",
                                      help="MRI→CT registration: rigid | affine | deformable."),
        assume_aligned: bool = typer.Option(
            False, "--assume-aligned", help="Pairs are pre-registered (SynthRAD2023)."),
        spacing: float = typer.Option(1.0, "--spacing", help="Output voxel size in mm."),
        max_size: int = typer.Option(256, "--max-size", help="Largest output grid, voxels/axis."),
        seed: int = typer.Option(0, "--seed", help="Split seed."),
        site_split: str = typer.Option("stratify", "--site-split",
                                       help="stratify | hold_out (whole sites per split)."),
        threads: int = typer.Option(1, "--threads-per-case", help="Threads per case."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    ) -> None:
        """Build an nnU-Net CT training set from paired MRI/CT (ensemble label transfer)."""
        from pydantic import ValidationError

        from subct.dataset.build import build_dataset
        from subct.dataset.config import BuildConfig
        from subct.errors import SubctConfigError

        try:
            config = BuildConfig(
                tools=tuple(t.strip() for t in tools.split(",") if t.strip()),
                fusion=fusion,  # type: ignore[arg-type]
                fusion_weights=tuple(float(w) for w in weights.split(",")) if weights else None,
                transform=transform,  # type: ignore[arg-type]
                assume_aligned=assume_aligned, target_spacing_mm=spacing,
                max_shape=(max_size, max_size, max_size), split_seed=seed,
                site_split=site_split,  # type: ignore[arg-type]
                threads_per_case=threads,
            )
        except (ValidationError, ValueError) as error:
            raise SubctConfigError(f"invalid build-dataset option: {error}") from error
        console = make_console(stderr=True)
        report = build_dataset(source, output, config, workers=workers, scheduler=scheduler,
                               progress=not no_progress)
        flagged = [row["case"] for row in report.qc_rows if row.get("flags")]
        console.print(f"{len(report.done)} built, {len(report.skipped)} already done, "
                      f"{len(report.failed)} failed, {len(flagged)} flagged in qc.csv "
                      f"({report.seconds:.1f} s) → {report.output}")
        for case_id, problem in report.failed.items():
            console.print(f"[red]failed[/] {plain(case_id)}: {plain(problem)}")
        if report.failed:
            raise typer.Exit(code=2)
