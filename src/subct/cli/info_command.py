"""``subct info IMAGE...``: load each input and report its geometry and intensities.

A quick way to check that subct reads a file the way the user expects: shape
(voxels), spacing (mm), orientation codes, the voxel→world affine (RAS+, mm), the
intensity range and, for DICOM folders, which series was picked and whether gantry
tilt was corrected. Inputs that fail are reported one line each; the others are
still shown, and the exit code is 2 if any failed.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from subct.cli.console import make_console
from subct.errors import SubctError
from subct.io.readers import load_volume
from subct.io.summary import VolumeSummary, summarise_volume


def describe_inputs(
    paths: list[Path], *, series: str | None = None, expect_ct: bool = False
) -> tuple[list[VolumeSummary], list[tuple[Path, SubctError]]]:
    """Load every path; return the summaries of those that loaded and the failures.

    Python API behind ``subct info``: it never stops at a failing input.
    """
    summaries: list[VolumeSummary] = []
    failures: list[tuple[Path, SubctError]] = []
    for path in paths:
        try:
            summaries.append(summarise_volume(load_volume(path, expect_ct=expect_ct,
                                                          series=series)))
        except SubctError as error:
            failures.append((path, error))
    return summaries, failures


def format_summary(summary: VolumeSummary) -> list[str]:
    """Human-readable lines describing one volume (sizes in voxels and mm)."""
    shape = " x ".join(str(size) for size in summary.shape)
    spacing = " x ".join(f"{size:.4g}" for size in summary.spacing_mm)
    lines = [
        summary.path,
        f"  shape        {shape} voxels",
        f"  spacing      {spacing} mm",
        f"  orientation  {summary.orientation}",
        f"  dtype        {summary.dtype}",
        f"  intensity    {summary.minimum:g} .. {summary.maximum:g}",
    ]
    for index, row in enumerate(summary.affine):
        label = "affine (RAS)" if index == 0 else ""
        lines.append(f"  {label:<12} " + " ".join(f"{value:10.4f}" for value in row))
    meta: dict[str, Any] = summary.metadata
    if "dicom_series_number" in meta:
        lines.append(f"  series       {summary.description}")
        lines.append(
            f"  tilt         {'corrected' if meta.get('tilt_corrected') else 'none/not corrected'}"
            f" (slice tilt {meta.get('slice_tilt_deg', float('nan')):.1f} deg)"
        )
        lines.append(
            "  spacing fix  "
            + ("uneven slice gaps equalised" if meta.get("spacing_equalised") else "none needed")
        )
        available = meta.get("dicom_available_series", [])
        if len(available) > 1:
            lines.append("  available    " + "; ".join(available))
        age, sex = meta.get("dicom_patient_age_years"), meta.get("dicom_patient_sex")
        lines.append("  patient      " + (
            "no age or sex in the header (give --age/--sex or --demographics for the "
            "normative percentiles)" if age is None and sex is None
            else f"age {'unknown' if age is None else f'{age:g} y'}, sex {sex or 'unknown'} "
                 "(DICOM header; used for the normative percentiles)"))
    elif summary.description:
        lines.append(f"  note         {summary.description}")
    if "orientation_note" in meta:
        lines.append(f"  warning      {meta['orientation_note']}")
    if "nrrd_header_note" in meta:
        lines.append(f"  nrrd         {meta['nrrd_header_note']}")
    return lines


def register(app: typer.Typer) -> None:
    """Add the ``info`` command to ``app``."""

    @app.command("info")
    def info(
        context: typer.Context,
        images: list[Path] = typer.Argument(  # noqa: B008
            ..., help="Image files (.nii/.nii.gz/.mgz/.nrrd/.nhdr/.mha/.mhd) or DICOM folders."
        ),
        series: str | None = typer.Option(
            None, "--series", help="DICOM series to read: number or part of its description."
        ),
        expect_ct: bool = typer.Option(
            False,
            "--expect-ct",
            help="Check the intensities look like CT in HU (CT stored as HU+1024 is rescaled).",
        ),
    ) -> None:
        """Show shape, spacing, orientation, affine and intensity range of each image."""
        debug = bool(context.find_root().params.get("debug", False))
        console = make_console()
        errors = make_console(stderr=True)
        failed: list[Path] = []
        for path in images:
            summaries, failures = describe_inputs([path], series=series, expect_ct=expect_ct)
            for summary in summaries:
                for line in format_summary(summary):
                    console.print(line, markup=False)
            for failed_path, error in failures:
                failed.append(failed_path)
                if debug:
                    traceback.print_exception(error)
                errors.print(Text.assemble(("error:", "bold red"), f" {error}"))
        if failed and len(images) > 1:
            errors.print(
                Text.assemble(
                    ("error:", "bold red"),
                    f" {len(failed)} of {len(images)} inputs failed: "
                    + ", ".join(str(path) for path in failed),
                )
            )
        if failed:
            raise typer.Exit(2)
