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
    ) -> None:
        """Average the weights of checkpoints of the same network (stochastic weight averaging)."""
        from subct.model.checkpoint import average_checkpoints

        path = average_checkpoints(list(checkpoints), output)
        typer.echo(f"averaged {len(checkpoints)} checkpoints into {path}")
