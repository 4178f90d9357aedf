"""The training loop behind ``subct train``.

Per epoch: train on a fresh, seeded patch stream; validate on fixed patches (loss and
per-structure Dice); step ``ReduceLROnPlateau`` on the validation loss; write
``last.safetensors`` (+ ``best.safetensors`` when the validation loss improved; +
``best_pipeline.safetensors`` when whole validation heads segmented through
``subct segment`` scored best, with ``pipeline_validation``; + ``ema.safetensors``, the
moving average of the weights, with ``averaging.ema_decay``, which the pipeline validation
then scores instead), ``last_state.pt`` (optimiser, scheduler, counters, RNG; read back
with ``torch.load(weights_only=True)``), a CSV row and the PNG of the curves; stop early
after ``early_stopping_patience`` epochs without improvement (paper: Adam 1e-4,
plateau patience 3, early stopping patience 5).

A file named ``STOP`` in the output folder ends the run after the epoch in progress
(its state saved), as the time budget ``schedule.max_minutes`` does.

``resume=True`` restores all of that and continues with the next epoch, producing the
same losses as an uninterrupted run (the data stream of an epoch depends only on the
seed and the epoch number).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from subct.errors import SubctConfigError, SubctInputError
from subct.model.checkpoint import load_state_dict, save_checkpoint
from subct.model.losses import build_loss, class_weights
from subct.model.networks import build_network, freeze_encoder, is_growth_of
from subct.training import data as training_data
from subct.training.config import TrainingConfig
from subct.training.distributed import DistributedContext, single_process
from subct.training.evaluate import evaluate_checkpoint_on_test
from subct.training.pipeline_validation import (
    ALL_HEADS,
    LEGACY_PROTOCOL,
    ValidationHead,
    build_validation_heads,
    pipeline_scores,
    protocol_key,
)
from subct.training.precision import (
    autocast_context,
    autocast_dtype,
    prepare_batch,
    use_channels_last,
)
from subct.training.records import (
    AVERAGED_CHECKPOINT,
    BEST_CHECKPOINT,
    BEST_PIPELINE_CHECKPOINT,
    CURVES_FILE,
    LAST_CHECKPOINT,
    LOG_FILE,
    STATE_FILE,
    EpochRecord,
    TrainingResult,
    make_metadata,
    network_kwargs,
    plot_curves,
    save_state,
    structure_names,
    write_log,
)

#: Creating this file in the output folder stops the run cleanly after the current epoch.
STOP_FILE = "STOP"

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
        image = prepare_batch(torch.stack([s["image"] for s in chunk]), device, channels_last)
        label = torch.stack([s["label"] for s in chunk]).to(device)
        labelled = torch.stack([s["labelled"] for s in chunk]).to(device)
        with autocast_context(device, dtype):
            logits = network(image)
        losses.append(float(loss_fn(logits.float(), label, labelled)) * len(chunk))
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


def _load_initial_weights(network: nn.Module, config: TrainingConfig) -> set[str]:
    """Load ``transfer.init_checkpoint`` into ``network``; returns the names it held."""
    path = config.resolve_path(config.transfer.init_checkpoint or "")
    state = load_state_dict(path)
    try:
        if is_growth_of(set(state), network):
            # a grown network (refine_levels): the new blocks start as the identity
            network.load_state_dict(state, strict=False)
        else:
            network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise SubctInputError(path, "initial checkpoint does not fit network "
                                    f"{config.network.name} {config.network.kwargs}") from error
    return set(state)


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


@dataclass
class _Run:
    """What one training run builds and updates, epoch after epoch."""

    network: nn.Module
    model: nn.Module
    trainable: list[nn.Parameter]
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    dtype: torch.dtype | None
    channels_last: bool
    averaged: AveragedModel | None = None
    history: list[EpochRecord] = field(default_factory=list)
    start_epoch: int = 0
    best_loss: float = math.inf
    best_dice: float | None = None
    best_pipeline_dice: float = -math.inf
    epochs_without_improvement: int = 0
    global_step: int = 0
    step_losses: list[float] = field(default_factory=list)

    @property
    def scored_network(self) -> nn.Module:
        """The weights the full-pipeline validation scores: the average when kept."""
        return self.network if self.averaged is None else self.averaged.module


def _build_run(config: TrainingConfig, context: DistributedContext,
               real_train: Any, bank: Any) -> _Run:
    """Network (initial weights, frozen encoder), optimiser, LR schedule and loss."""
    device = context.device
    network = build_network(config.network.name, **network_kwargs(config))
    if config.transfer.init_checkpoint:
        loaded = _load_initial_weights(network, config)
        if config.transfer.freeze_encoder:
            freeze_encoder(network)
        if config.transfer.freeze_pretrained:
            for name, parameter in network.named_parameters():
                if name in loaded:
                    parameter.requires_grad_(False)
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
    averaged = None
    if config.averaging.ema_decay is not None:
        averaged = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(
            config.averaging.ema_decay), use_buffers=True)
    return _Run(network, model, trainable, optimiser, scheduler, scaler, loss_fn, dtype,
                channels_last, averaged)


def _restore(run: _Run, output: Path, device: torch.device, config: TrainingConfig) -> None:
    """Continue a run from ``last_state.pt`` + ``last.safetensors`` in ``output``; with
    ``schedule.restart_lr`` a warm restart (that rate, plateau count and best loss
    cleared); a changed full-pipeline protocol clears the best full-pipeline figure."""
    state_path = output / STATE_FILE
    if not state_path.is_file() or not (output / LAST_CHECKPOINT).is_file():
        raise SubctInputError(state_path, "nothing to resume (no last_state.pt/last "
                                          "checkpoint in the output folder)")
    try:  # tensors and plain containers only: a pickle with code is never run
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError, EOFError... from torch
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SubctInputError(state_path, "not a subct training state (written by subct "
                                          f"train; loading refused: {first[:160]})") from error
    if not isinstance(state, dict) or "optimiser" not in state:
        raise SubctInputError(state_path, "not a subct training state (no optimiser state)")
    run.network.load_state_dict(load_state_dict(output / LAST_CHECKPOINT, device))
    run.optimiser.load_state_dict(state["optimiser"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    run.start_epoch = int(state["epoch"])
    run.best_loss = float(state["best_loss"])
    run.best_dice = None if state["best_dice"] is None else float(state["best_dice"])
    run.best_pipeline_dice = float(state.get("best_pipeline_dice", -math.inf))
    if state.get("pipeline_protocol", LEGACY_PROTOCOL) != protocol_key(config):
        run.best_pipeline_dice = -math.inf  # figures of another protocol do not compare
    run.epochs_without_improvement = int(state["epochs_without_improvement"])
    run.global_step = int(state["global_step"])
    run.history = [EpochRecord(**record) for record in json.loads(state["history_json"])]
    if run.averaged is not None:
        # the average so far; a run that had none starts it from the resumed weights
        source = output / AVERAGED_CHECKPOINT
        if not source.is_file():
            source = output / LAST_CHECKPOINT
        run.averaged.module.load_state_dict(load_state_dict(source, device))
        run.averaged.n_averaged.fill_(1)
    restart_lr = config.schedule.restart_lr
    if restart_lr is not None:  # warm restart: a fresh rate, a fresh plateau count
        for group in run.optimiser.param_groups:
            group["lr"] = restart_lr
        run.scheduler.num_bad_epochs = 0
        run.scheduler.best = math.inf


def _train_epoch(run: _Run, loader: DataLoader[Any], config: TrainingConfig,
                 device: torch.device, on_step: Callable[[int, float], None] | None,
                 on_batch: Callable[[float], None]) -> list[float]:
    """One pass over the epoch's patches; returns the loss of every optimiser step."""
    run.model.train()
    losses: list[float] = []
    for batch in loader:
        image = prepare_batch(batch["image"], device, run.channels_last)
        label = batch["label"].to(device)
        labelled = batch["labelled"].to(device)
        run.optimiser.zero_grad(set_to_none=True)
        with autocast_context(device, run.dtype):
            logits = run.model(image)
        loss = run.loss_fn(logits.float(), label, labelled)
        run.scaler.scale(loss).backward()
        if config.optimiser.grad_clip_norm is not None:
            run.scaler.unscale_(run.optimiser)
            torch.nn.utils.clip_grad_norm_(run.trainable, config.optimiser.grad_clip_norm)
        run.scaler.step(run.optimiser)
        run.scaler.update()
        if run.averaged is not None:
            run.averaged.update_parameters(run.network)
        value = float(loss.detach())
        losses.append(value)
        run.step_losses.append(value)
        run.global_step += 1
        if on_step is not None:
            on_step(run.global_step, value)
        on_batch(value)
    return losses


def _close_epoch(run: _Run, epoch: int, train_loss: float, validation: list[Any],
                 config: TrainingConfig, device: torch.device, seconds: float
                 ) -> tuple[EpochRecord, bool]:
    """Validate, step the LR schedule, update the best loss; returns the log record and
    whether the validation loss improved."""
    if validation:
        val_loss, dice = validate(run.network, run.loss_fn, validation, config, device)
    else:
        val_loss, dice = train_loss, {}
    run.scheduler.step(val_loss)
    improved = val_loss < run.best_loss
    if improved:
        run.best_loss = val_loss
        run.best_dice = _mean(dice) if dice else None
        run.epochs_without_improvement = 0
    else:
        run.epochs_without_improvement += 1
    record = EpochRecord(epoch + 1, train_loss, val_loss, _mean(dice),
                         float(run.optimiser.param_groups[0]["lr"]), seconds, dice)
    run.history.append(record)
    return record, improved


def _save_epoch(run: _Run, config: TrainingConfig, output: Path, record: EpochRecord,
                improved: bool, heads: list[ValidationHead], device: torch.device) -> None:
    """Checkpoints (last, best, best by the full pipeline, per epoch), resumable state,
    CSV log and curves."""
    metadata = make_metadata(config, record.epoch, run.best_dice, record.dice)
    save_checkpoint(output / LAST_CHECKPOINT, run.network, metadata)
    if improved:
        save_checkpoint(output / BEST_CHECKPOINT, run.network, metadata)
    if run.averaged is not None:
        save_checkpoint(output / AVERAGED_CHECKPOINT, run.averaged.module, metadata)
    if heads and (every := config.pipeline_validation.every_epochs) and record.epoch % every == 0:
        record.pipeline_groups = pipeline_scores(run.scored_network, metadata, heads, device,
                                                 config.pipeline_validation.tta)
        record.pipeline_dice = record.pipeline_groups.pop(ALL_HEADS)
        if config.pipeline_validation.keep_checkpoints:  # every scored network, by epoch
            save_checkpoint(output / f"pipeline_{record.epoch:04d}.safetensors",
                            run.scored_network, metadata)
        if record.pipeline_dice > run.best_pipeline_dice:
            run.best_pipeline_dice = record.pipeline_dice
            save_checkpoint(output / BEST_PIPELINE_CHECKPOINT, run.scored_network, metadata)
    if config.keep_epoch_checkpoints:
        save_checkpoint(output / f"epoch_{record.epoch:03d}.safetensors", run.network, metadata)
    save_state({
        "epoch": record.epoch, "optimiser": run.optimiser.state_dict(),
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
        "torch_rng": torch.get_rng_state(), "best_loss": run.best_loss,
        "best_dice": run.best_dice, "best_pipeline_dice": run.best_pipeline_dice,
        "pipeline_protocol": protocol_key(config),
        "epochs_without_improvement": run.epochs_without_improvement,
        "global_step": run.global_step,
        "history_json": json.dumps([entry.__dict__ for entry in run.history]),
    }, output / STATE_FILE)
    write_log(output / LOG_FILE, run.history, structure_names(config.label_scheme))
    plot_curves(output / CURVES_FILE, run.history)


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
    real_train, real_val, test_cases = training_data.load_real_cases(config)
    synthetic = config.data.synthetic
    bank = training_data.build_label_bank(config, synthetic.label_maps) if synthetic else None
    validation = training_data.build_validation_set(config, real_val)
    heads = build_validation_heads(config) if context.is_main else []
    run = _build_run(config, context, real_train, bank)
    if resume:
        _restore(run, output, device, config)

    stream = training_data.PatchStream(
        config, real_train, bank, samples=max(1, config.data.samples_per_epoch
                                              // context.world_size), rank=context.rank)
    steps_per_epoch = math.ceil(len(stream) / config.data.batch_size)
    stopped_early = False
    progress = _progress(config.progress_bar and context.is_main)
    if progress is not None:
        progress.start()
    try:
        task = None if progress is None else progress.add_task(
            "training", total=config.schedule.epochs * steps_per_epoch,
            completed=run.start_epoch * steps_per_epoch, status="")
        started = time.perf_counter()
        for epoch in range(run.start_epoch, config.schedule.epochs):
            clock = time.perf_counter()
            stream.set_epoch(epoch)
            loader = DataLoader(stream, batch_size=config.data.batch_size,
                                num_workers=config.data.num_workers, persistent_workers=False)

            def advance(loss: float, epoch: int = epoch) -> None:
                if progress is not None and task is not None:
                    progress.update(task, advance=1, status=f"epoch {epoch + 1} loss {loss:.4f}")

            losses = _train_epoch(run, loader, config, device, on_step, advance)
            train_loss = context.mean(float(np.mean(losses)) if losses else math.nan)
            record, improved = _close_epoch(run, epoch, train_loss, validation, config,
                                            device, time.perf_counter() - clock)
            if context.is_main:
                _save_epoch(run, config, output, record, improved, heads, device)
            context.barrier()
            patience = config.schedule.early_stopping_patience
            if patience is not None and run.epochs_without_improvement >= patience:
                stopped_early = True
                break
            budget = config.schedule.max_minutes
            if budget is not None and (time.perf_counter() - started) / 60.0 >= budget:
                break  # time budget spent: resumable from the saved state
            if (output / STOP_FILE).exists():
                break  # asked to stop (scripts/continue_training.sh stop): resumable
    finally:
        if progress is not None:
            progress.stop()

    best_path = output / BEST_CHECKPOINT
    result = TrainingResult(output, run.history, best_path if best_path.exists() else None,
                            output / LAST_CHECKPOINT, run.step_losses, stopped_early,
                            run.network)
    if context.is_main and config.evaluate_after_training and result.best_checkpoint:
        result.evaluation_csv = evaluate_checkpoint_on_test(config, result.best_checkpoint,
                                                            test_cases)
    return result
