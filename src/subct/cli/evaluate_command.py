"""``subct evaluate PRED REF``: score predicted label maps against reference maps.

A thin layer over :func:`subct.evaluation.evaluate.evaluate_paths`: PRED and REF are two files
or two folders (matched by case name; ``<case>_labels.nii.gz`` also matches
``<case>.nii.gz``). Writes a long CSV (case, structure, metric, value) with ``-o`` and
prints a summary table (mean ± sd per structure and overall). Cases that fail are
reported at the end and the exit code is then 1; bad arguments exit with 2.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from subct.cli.console import make_console
from subct.errors import SubctInputError
from subct.evaluation.evaluate import (
    EvaluationConfig,
    EvaluationResult,
    evaluate_paths,
    write_long_csv,
)
from subct.evaluation.tables import summary_table
from subct.io.writers import check_output_file


def print_problems(result: EvaluationResult, console: Console) -> None:
    """One line per failed case, missing prediction and unmatched prediction."""
    for failure in result.failures:
        console.print(Text.assemble(("error:", "bold red"), f" {failure.case}: {failure.problem}"))
    for case in result.missing_predictions:
        console.print(Text.assemble(("warning:", "bold yellow"), f" {case}: no prediction"))
    for path in result.unmatched_predictions:
        console.print(Text.assemble(("warning:", "bold yellow"), f" {path}: no reference"))


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""

    @app.command("evaluate")
    def evaluate(
        pred: Path = typer.Argument(..., help="Predicted label map file, or folder of them."),
        ref: Path = typer.Argument(..., help="Reference label map file, or folder of them."),
        output: Path | None = typer.Option(
            None, "-o", "--output", help="Write the long CSV (case, structure, metric, value)."
        ),
        scheme: str = typer.Option(
            "canonical", "--scheme", help="Score in this scheme: canonical | merged | paper7."
        ),
        ref_scheme: str = typer.Option(
            "freesurfer",
            "--ref-scheme",
            help="Reference values: freesurfer (FreeSurfer IDs) | paper7 (1..7 CT dataset).",
        ),
        pred_scheme: str = typer.Option(
            "freesurfer", "--pred-scheme", help="Prediction values: freesurfer | paper7."
        ),
        resample: bool = typer.Option(
            False,
            "--resample",
            help="Resample predictions onto the reference grid (nearest neighbour) when the "
            "grids differ, instead of failing.",
        ),
    ) -> None:
        """Dice, Jaccard, HD, HD95, ASSD and volume differences per structure."""
        config = EvaluationConfig(
            scheme=scheme, pred_labels=pred_scheme, ref_labels=ref_scheme, resample=resample
        )
        if output is not None:
            check_output_file(output, [pred, ref], "-o")  # before any scoring
        result = evaluate_paths(pred, ref, config)
        console = make_console()
        errors = make_console(stderr=True)
        if result.cases:
            console.print(summary_table(result.cases, title=f"subct evaluate ({scheme})"))
        if output is not None:
            write_long_csv(result.cases, output)
            console.print(f"wrote {output}", markup=False)
        if not pred.is_dir() and len(result.failures) == 1 and not result.cases:
            # one pair of files: its problem is the one line (the user's to fix)
            raise SubctInputError(None, result.failures[0].problem)
        print_problems(result, errors)
        if result.failures:
            errors.print(
                Text.assemble(
                    ("error:", "bold red"),
                    f" {len(result.failures)} of "
                    f"{len(result.failures) + len(result.cases)} case(s) failed",
                )
            )
            raise typer.Exit(2)  # every recorded failure is an input problem
