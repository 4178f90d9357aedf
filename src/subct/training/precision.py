"""The training loop's numeric precision: autocast dtype and memory format.

One policy with inference and MeshNet (:mod:`subct.model.runtime`): bf16 autocast only on
CPUs with native bf16 (AMX), AMP on CUDA, fp32 elsewhere; ``SUBCT_PRECISION`` overrides it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from subct.model.runtime import resolve_precision, torch_dtype
from subct.training.config import TrainingConfig


def autocast_dtype(config: TrainingConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``device`` (None = fp32), from :mod:`subct.model.runtime`'s policy.

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


def autocast_context(device: torch.device,
                     dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """Autocast to ``dtype`` on ``device``; nothing (fp32) when ``dtype`` is None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def prepare_batch(batch: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """Move ``batch`` to ``device``; 5D batches in ``channels_last_3d`` when asked."""
    batch = batch.to(device, non_blocking=True)
    if channels_last and batch.dim() == 5:
        batch = batch.contiguous(memory_format=torch.channels_last_3d)
    return batch
