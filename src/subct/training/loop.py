"""The training loop behind ``subct train``.

Per epoch: train on a fresh, seeded patch stream; validate on fixed patches (loss and
per-structure Dice); step ``ReduceLROnPlateau`` on the validation loss; write
``last.safetensors`` (+ ``best.safetensors`` when the validation loss improved),
``last_state.pt`` (optimiser, scheduler, counters, RNG; read back with
``torch.load(weights_only=True)``), a CSV row and the PNG of the curves; stop early
after ``early_stopping_patience`` epochs without improvement (paper: Adam 1e-4,
plateau patience 3, early stopping patience 5).

``resume=True`` restores all of that and continues with the next epoch, producing the
same losses as an uninterrupted run (the data stream of an epoch depends only on the
seed and the epoch number).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from subct import __version__
from subct.errors import SubctConfigError, SubctInputError
from subct.io.writers import atomic_output, atomic_write_text
from subct.labels.schemes import scheme_labels, scheme_names
from subct.model.checkpoint import CheckpointMetadata, load_state_dict, save_checkpoint
from subct.model.losses import build_loss, class_weights
from subct.model.networks import build_network, freeze_encoder
from subct.model.runtime import resolve_precision, torch_dtype
from subct.training import data as training_data
from subct.training.config import TrainingConfig
from subct.training.distributed import DistributedContext, single_process

STATE_FILE = "last_state.pt"
LOG_FILE = "training_log.csv"
CURVES_FILE = "training_curves.png"
BEST_CHECKPOINT = "best.safetensors"
LAST_CHECKPOINT = "last.safetensors"


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


# ----------------------------------------------------------------------------- precision


def autocast_dtype(config: TrainingConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``device`` (None = fp32), from :mod:`subct.runtime`'s policy.

    ``auto`` follows the one policy of inference and MeshNet (bf16 only on CPUs with
    native bf16, AMP on CUDA; ``SUBCT_PRECISION`` overrides it), ``off`` is fp32, and
    ``bf16``/``fp16`` force a dtype.
    """
    choice = config.precision.autocast
    if choice == "off":
        return None
    if choice == "fp16":
        return torch.float16
    return torch_dtype(resolve_precision("bf16" if choice == "bf16" else None, device.type))


def use_channels_last(config: TrainingConfig, device: torch.device) -> bool:
    """Whether to keep 5D tensors in ``channels_last_3d`` memory format."""
    choice = config.precision.channels_last
    return choice == "on" or (choice == "auto" and device.type == "cpu")


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ------------------------------------------------------------------------------- helpers


def structure_names(scheme: str) -> list[str]:
    """Structure name of every foreground channel (channel i+1 ↔ name i)."""
    names = scheme_names(scheme)
    return [names[value] for value in scheme_labels(scheme)]


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
        skull_strip=config.preprocessing.skull_strip, subct_version=__version__,
        training_config=config.model_dump(mode="json"), epoch=epoch, best_metric=best,
        validation_dice=dice)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_output(path) as temporary:
        torch.save(obj, temporary)


def _write_log(path: Path, history: list[EpochRecord], names: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch", "train_loss", "val_loss", "mean_dice", "lr", "seconds",
                     *[f"dice_{n}" for n in names]])
    for record in history:
        writer.writerow([record.epoch, f"{record.train_loss:.6f}", f"{record.val_loss:.6f}",
                         f"{record.mean_dice:.4f}", f"{record.lr:.3g}", f"{record.seconds:.1f}",
                         *[f"{record.dice.get(n, math.nan):.4f}" for n in names]])
    atomic_write_text(path, buffer.getvalue())


def plot_curves(path: Path, history: list[EpochRecord]) -> None:
    """PNG of training/validation loss and mean validation Dice per epoch."""
    import matplotlib

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


def _prepare(batch: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    batch = batch.to(device, non_blocking=True)
    if channels_last and batch.dim() == 5:
        batch = batch.contiguous(memory_format=torch.channels_last_3d)
    return batch


# ------------------------------------------------------------------------------ validation


@torch.no_grad()
def validate(network: nn.Module, loss_fn: nn.Module, samples: list[dict[str, torch.Tensor]],
             config: TrainingConfig, device: torch.device) -> tuple[float, dict[str, float]]:
    """Mean validation loss and per-structure Dice (pooled over all validation patches).

    Dice per structure is 2·TP / (|pred| + |ref|) accumulated over every patch, so
    structures absent from some patches still get one well-defined score (NaN only when
    absent from every prediction and reference).
    """
    network.eval()
    dtype = autocast_dtype(config, device)
    channels_last = use_channels_last(config, device)
    classes = config.num_classes
    intersection = torch.zeros(classes, dtype=torch.float64)
    totals = torch.zeros(classes, dtype=torch.float64)
    losses: list[float] = []
    batch_size = config.data.batch_size
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        image = _prepare(torch.stack([s["image"] for s in chunk]), device, channels_last)
        label = torch.stack([s["label"] for s in chunk]).to(device)
        with _autocast(device, dtype):
            logits = network(image)
        losses.append(float(loss_fn(logits.float(), label)) * len(chunk))
        prediction = logits.argmax(1).flatten().cpu()
        reference = label.flatten().cpu()
        joint = torch.bincount(reference * classes + prediction, minlength=classes * classes)
        confusion = joint.reshape(classes, classes).double()
        intersection += confusion.diagonal()
        totals += confusion.sum(0) + confusion.sum(1)
    network.train()
    names = structure_names(config.label_scheme)
    dice = {name: float(2 * intersection[i + 1] / totals[i + 1]) if totals[i + 1] > 0
            else math.nan for i, name in enumerate(names)}
    return sum(losses) / max(1, len(samples)), dice


def _mean(values: dict[str, float]) -> float:
    finite = [v for v in values.values() if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


# ----------------------------------------------------------------------------------- train


def _load_initial_weights(network: nn.Module, config: TrainingConfig) -> None:
    path = config.resolve_path(config.transfer.init_checkpoint or "")
    state = load_state_dict(path)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise SubctInputError(path, "initial checkpoint does not fit network "
                                    f"{config.network.name} {config.network.kwargs}") from error


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), transient=False)


def train(config: TrainingConfig, *, resume: bool = False,
          context: DistributedContext | None = None,
          on_step: Callable[[int, float], None] | None = None) -> TrainingResult:
    """Train the configured network; see the module docstring for what is written.

    Args:
        config: validated training configuration.
        resume: continue from ``last_state.pt`` + ``last.safetensors`` in the output folder.
        context: distributed context (``None``: single process).
        on_step: called with (global step, loss) after every optimiser step.

    Raises:
        SubctInputError / SubctConfigError: bad data, paths or settings.
    """
    context = context or single_process()
    device = context.device
    output = config.output_path
    if context.is_main:
        output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    names = structure_names(config.label_scheme)

    real_train, real_val, test_cases = training_data.load_real_cases(config)
    synthetic = config.data.synthetic
    bank = training_data.build_label_bank(config, synthetic.label_maps) if synthetic else None
    validation = training_data.build_validation_set(config, real_val)

    network = build_network(config.network.name, **network_kwargs(config))
    if config.transfer.init_checkpoint:
        _load_initial_weights(network, config)
        if config.transfer.freeze_encoder:
            freeze_encoder(network)
    network.to(device)
    channels_last = use_channels_last(config, device)
    if channels_last:
        network = network.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    model = context.wrap(network)
    trainable = [p for p in network.parameters() if p.requires_grad]
    if not trainable:
        raise SubctConfigError("no trainable parameters (is everything frozen?)")
    optimiser_class = torch.optim.AdamW if config.optimiser.name == "adamw" else torch.optim.Adam
    optimiser = optimiser_class(trainable, lr=config.optimiser.lr,
                                weight_decay=config.optimiser.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, mode="min", factor=config.schedule.plateau_factor,
        patience=config.schedule.plateau_patience, min_lr=config.schedule.min_lr)
    dtype = autocast_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=(dtype == torch.float16
                                                    and device.type == "cuda"))

    weights = None
    if config.loss.class_weights != "none":
        maps = training_data.training_label_counts_source(config, real_train, bank)
        weights = class_weights(maps, config.num_classes, mode=config.loss.class_weights)
    loss_fn = build_loss(config.loss.name, weights).to(device)

    history: list[EpochRecord] = []
    start_epoch = 0
    best_loss = math.inf
    best_dice: float | None = None
    epochs_without_improvement = 0
    global_step = 0
    if resume:
        state_path = output / STATE_FILE
        if not state_path.is_file() or not (output / LAST_CHECKPOINT).is_file():
            raise SubctInputError(state_path, "nothing to resume (no last_state.pt/last "
                                              "checkpoint in the output folder)")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        network.load_state_dict(load_state_dict(output / LAST_CHECKPOINT, device))
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"])
        best_loss = float(state["best_loss"])
        best_dice = None if state["best_dice"] is None else float(state["best_dice"])
        epochs_without_improvement = int(state["epochs_without_improvement"])
        global_step = int(state["global_step"])
        history = [EpochRecord(**record) for record in json.loads(state["history_json"])]

    stream = training_data.PatchStream(
        config, real_train, bank, samples=max(1, config.data.samples_per_epoch
                                              // context.world_size), rank=context.rank)
    steps_per_epoch = math.ceil(len(stream) / config.data.batch_size)
    step_losses: list[float] = []
    stopped_early = False
    progress = _progress(config.progress_bar and context.is_main)
    if progress is not None:
        progress.start()
    try:
        total_task = None
        if progress is not None:
            total_task = progress.add_task(
                "training", total=config.schedule.epochs * steps_per_epoch,
                completed=start_epoch * steps_per_epoch, status="")
        started = time.perf_counter()
        for epoch in range(start_epoch, config.schedule.epochs):
            clock = time.perf_counter()
            stream.set_epoch(epoch)
            loader = DataLoader(stream, batch_size=config.data.batch_size,
                                num_workers=config.data.num_workers,
                                persistent_workers=False)
            model.train()
            epoch_losses: list[float] = []
            for batch in loader:
                image = _prepare(batch["image"], device, channels_last)
                label = batch["label"].to(device)
                optimiser.zero_grad(set_to_none=True)
                with _autocast(device, dtype):
                    logits = model(image)
                loss = loss_fn(logits.float(), label)
                scaler.scale(loss).backward()
                if config.optimiser.grad_clip_norm is not None:
                    scaler.unscale_(optimiser)
                    torch.nn.utils.clip_grad_norm_(trainable, config.optimiser.grad_clip_norm)
                scaler.step(optimiser)
                scaler.update()
                value = float(loss.detach())
                epoch_losses.append(value)
                step_losses.append(value)
                global_step += 1
                if on_step is not None:
                    on_step(global_step, value)
                if progress is not None and total_task is not None:
                    progress.update(total_task, advance=1,
                                    status=f"epoch {epoch + 1} loss {value:.4f}")
            train_loss = float(np.mean(epoch_losses)) if epoch_losses else math.nan
            train_loss = context.mean(train_loss)
            if validation:
                val_loss, dice = validate(network, loss_fn, validation, config, device)
            else:
                val_loss, dice = train_loss, {}
            scheduler.step(val_loss)
            improved = val_loss < best_loss
            if improved:
                best_loss = val_loss
                best_dice = _mean(dice) if dice else None
                epochs_without_improvement = 0
            else:
                epochs_without_improvement += 1
            record = EpochRecord(epoch + 1, train_loss, val_loss, _mean(dice),
                                 float(optimiser.param_groups[0]["lr"]),
                                 time.perf_counter() - clock, dice)
            history.append(record)
            if context.is_main:
                metadata = make_metadata(config, epoch + 1, best_dice, dice)
                save_checkpoint(output / LAST_CHECKPOINT, network, metadata)
                if improved:
                    save_checkpoint(output / BEST_CHECKPOINT, network, metadata)
                if config.keep_epoch_checkpoints:
                    save_checkpoint(output / f"epoch_{epoch + 1:03d}.safetensors", network,
                                    metadata)
                _atomic_torch_save({
                    "epoch": epoch + 1, "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "best_loss": best_loss,
                    "best_dice": best_dice,
                    "epochs_without_improvement": epochs_without_improvement,
                    "global_step": global_step,
                    "history_json": json.dumps([record.__dict__ for record in history]),
                }, output / STATE_FILE)
                _write_log(output / LOG_FILE, history, names)
                plot_curves(output / CURVES_FILE, history)
            context.barrier()
            patience = config.schedule.early_stopping_patience
            if patience is not None and epochs_without_improvement >= patience:
                stopped_early = True
                break
            budget = config.schedule.max_minutes
            if budget is not None and (time.perf_counter() - started) / 60.0 >= budget:
                break  # time budget spent: resumable from the saved state
    finally:
        if progress is not None:
            progress.stop()

    best_path = output / BEST_CHECKPOINT
    result = TrainingResult(output, history, best_path if best_path.exists() else None,
                            output / LAST_CHECKPOINT, step_losses, stopped_early, network)
    if context.is_main and config.evaluate_after_training and result.best_checkpoint:
        from subct.training.evaluate import evaluate_checkpoint_on_test

        result.evaluation_csv = evaluate_checkpoint_on_test(config, result.best_checkpoint,
                                                            test_cases)
    return result
