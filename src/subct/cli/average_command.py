"""``subct average-checkpoints``: weight averaging of late checkpoints of one run (SWA)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``subct average-checkpoints`` to the CLI."""

    @app.command("average-checkpoints")
    def average_checkpoints_command(
        checkpoints: list[Path] = typer.Argument(
            ..., help="Two or more checkpoints of one training run (e.g. its last epochs)."),
        output: Path = typer.Option(..., "-o", "--output",
                                    help="Averaged checkpoint to write (.safetensors)."),
        weight: list[float] | None = typer.Option(
            None, "--weight", metavar="W",
            help="One per checkpoint, in order (normalised to sum 1): a weighted mean, "
                 "e.g. --weight 0.5 --weight 0.5 between a model and its fine-tuned "
                 "descendant (WiSE-FT). Default: equal weights."),
    ) -> None:
        """Average the weights of checkpoints of the same network (stochastic weight averaging)."""
        from subct.model.checkpoint import average_checkpoints

        path = average_checkpoints(list(checkpoints), output, weights=weight or None)
        typer.echo(f"averaged {len(checkpoints)} checkpoints into {path}")
