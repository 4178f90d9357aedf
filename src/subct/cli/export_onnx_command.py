"""``subct export-onnx``: the ONNX graph of a checkpoint, as the CPU engines run it."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``subct export-onnx`` to the CLI."""

    @app.command("export-onnx")
    def export_onnx_command(
        checkpoint: Path = typer.Argument(..., help="A checkpoint from `subct train`."),
        output: Path | None = typer.Option(
            None, "-o", "--output", help="Graph to write (default: beside the checkpoint, "
                                         "same name, .onnx, where subct looks for it)."),
    ) -> None:
        """Export a checkpoint's network to ONNX (fp32, dynamic sizes), stamped with the
        checkpoint's SHA-256 so that subct never runs it with other weights."""
        from subct.model.graphs import export_checkpoint_graph

        path = export_checkpoint_graph(checkpoint, output)
        typer.echo(f"wrote {path}")
