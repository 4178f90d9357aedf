"""``subct train CONFIG.yaml [--resume] [--set key=value ...]``: train a CT segmentation network.

A thin layer over :func:`subct.training.loop.train`. Under ``torchrun`` (``WORLD_SIZE``
> 1) every process joins the DistributedDataParallel group; only rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path

import typer

from subct.cli.console import make_console, plain


def run_training(config_path: Path, resume: bool = False,
                 overrides: list[str] | None = None) -> None:
    """Python API of ``subct train``: load and validate the config, then train."""
    from subct.training.config import load_training_config
    from subct.training.distributed import context_from_environment, shutdown
    from subct.training.loop import train

    config = load_training_config(config_path, overrides or [])
    context = context_from_environment()
    console = make_console(stderr=True)
    try:
        result = train(config, resume=resume, context=context)
    finally:
        shutdown(context)
    if context.is_main:
        last = result.history[-1] if result.history else None
        console.print(f"trained {len(result.history)} epochs -> {plain(result.output_dir)}")
        if last is not None:
            console.print(f"last epoch: val loss {last.val_loss:.4f}, "
                          f"mean Dice {last.mean_dice:.3f}"
                          + (" (stopped early)" if result.stopped_early else ""))
        if result.evaluation_csv is not None:
            console.print(f"test metrics: {plain(result.evaluation_csv)}")


def register(app: typer.Typer) -> None:
    """Add ``subct train`` to the CLI."""

    @app.command("train")
    def train_command(
        config: Path = typer.Argument(..., help="Training configuration (YAML)."),
        resume: bool = typer.Option(False, "--resume",
                                    help="Continue from last_state.pt in the output folder."),
        overrides: list[str] = typer.Option(
            [], "--set", help="Override a config value, e.g. --set optimiser.lr=3e-4 "
                              "(repeatable; values are YAML)."),
    ) -> None:
        """Train a CT segmentation network from real and/or synthetic data."""
        run_training(config, resume=resume, overrides=overrides)
