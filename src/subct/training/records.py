"""What a training run writes and keeps: file names, the per-epoch record, checkpoint
metadata, the CSV log and the curves.

Checkpoint metadata takes the spacing and HU window from the configuration's
``preprocessing`` section, the one home of those numbers for training, synthesis
(:mod:`subct.synth` windows its images with them) and inference.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from subct import __version__
from subct.io.writers import atomic_output, atomic_write_text
from subct.labels.schemes import get_scheme
from subct.model.checkpoint import CheckpointMetadata
from subct.training.config import TrainingConfig

STATE_FILE = "last_state.pt"
LOG_FILE = "training_log.csv"
CURVES_FILE = "training_curves.png"
BEST_CHECKPOINT = "best.safetensors"
#: The checkpoint with the best full-pipeline validation Dice (``pipeline_validation``).
BEST_PIPELINE_CHECKPOINT = "best_pipeline.safetensors"
LAST_CHECKPOINT = "last.safetensors"
#: The exponential moving average of the weights (``averaging.ema_decay``), every epoch.
AVERAGED_CHECKPOINT = "ema.safetensors"


@dataclass
class EpochRecord:
    """One row of the training log."""

    epoch: int
    train_loss: float
    val_loss: float
    mean_dice: float
    lr: float
    seconds: float
    dice: dict[str, float] = field(default_factory=dict)
    #: mean Dice of whole validation heads through ``subct segment`` (epochs where
    #: ``pipeline_validation`` ran; None elsewhere)
    pipeline_dice: float | None = None
    #: the same per group of heads (``clean``, ``clinical``, ``paper``; those epochs only)
    pipeline_groups: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingResult:
    """What :func:`train` produced."""

    output_dir: Path
    history: list[EpochRecord]
    best_checkpoint: Path | None
    last_checkpoint: Path
    step_losses: list[float]
    stopped_early: bool
    network: nn.Module
    evaluation_csv: Path | None = None


def structure_names(scheme: str) -> list[str]:
    """Structure name of every foreground channel (channel i+1 ↔ name i)."""
    return get_scheme(scheme).structure_names()


def network_kwargs(config: TrainingConfig) -> dict[str, Any]:
    """``build_network`` keyword arguments, incl. channels (stored in checkpoints)."""
    return {"in_channels": 1, "out_channels": config.num_classes, **config.network.kwargs}


def make_metadata(config: TrainingConfig, epoch: int, best: float | None,
                  dice: dict[str, float]) -> CheckpointMetadata:
    """Checkpoint metadata: enough for inference without the YAML file."""
    return CheckpointMetadata(
        network_name=config.network.name, network_kwargs=network_kwargs(config),
        label_scheme=config.label_scheme, spacing_mm=config.preprocessing.spacing_mm,
        hu_window=config.preprocessing.hu_window, patch_size=config.data.patch_size,
        inference_window=config.data.inference_window,
        skull_strip=config.preprocessing.skull_strip, subct_version=__version__,
        training_config=config.model_dump(mode="json"), epoch=epoch, best_metric=best,
        validation_dice=dice, reference_pitch_deg=config.preprocessing.reference_pitch_deg)


def save_state(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename (a killed run keeps the old state)."""
    with atomic_output(path) as temporary:
        torch.save(obj, temporary)


def write_log(path: Path, history: list[EpochRecord], names: list[str]) -> None:
    """The CSV training log: one row per epoch, per-structure validation Dice."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    pipeline = any(record.pipeline_dice is not None for record in history)
    groups = list(dict.fromkeys(g for record in history for g in record.pipeline_groups))
    writer.writerow(["epoch", "train_loss", "val_loss", "mean_dice", "lr", "seconds",
                     *[f"dice_{n}" for n in names], *(["pipeline_dice"] if pipeline else []),
                     *[f"pipeline_{g}" for g in groups]])
    for record in history:
        extra = ([] if not pipeline else
                 ["" if record.pipeline_dice is None else f"{record.pipeline_dice:.4f}"])
        extra += [f"{record.pipeline_groups[g]:.4f}" if g in record.pipeline_groups else ""
                  for g in groups]
        writer.writerow([record.epoch, f"{record.train_loss:.6f}", f"{record.val_loss:.6f}",
                         f"{record.mean_dice:.4f}", f"{record.lr:.3g}", f"{record.seconds:.1f}",
                         *[f"{record.dice.get(n, math.nan):.4f}" for n in names], *extra])
    atomic_write_text(path, buffer.getvalue())


def plot_curves(path: Path, history: list[EpochRecord]) -> None:
    """PNG of training/validation loss and mean validation Dice per epoch."""
    import matplotlib  # matplotlib costs ~0.5 s to import: only when a curve is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r.train_loss for r in history], "o-", label="train")
    left.plot(epochs, [r.val_loss for r in history], "o-", label="validation")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(epochs, [r.mean_dice for r in history], "o-", color="C2")
    right.set_xlabel("epoch")
    right.set_ylabel("mean validation Dice")
    right.set_ylim(0, 1)
    figure.tight_layout()
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png",
                                         dir=str(path.parent))
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=100)
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        if os.path.exists(temporary):
            os.unlink(temporary)
