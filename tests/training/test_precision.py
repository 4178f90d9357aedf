"""The training loop's precision choices: autocast dtype, memory format, batch layout."""

from __future__ import annotations

import pytest
import torch

from subct.training.config import PrecisionConfig, TrainingConfig
from subct.training.precision import (
    autocast_context,
    autocast_dtype,
    prepare_batch,
    use_channels_last,
)

CPU = torch.device("cpu")


def config_with(**precision: str) -> TrainingConfig:
    """A valid training config (two label maps, never read here) with these precision keys."""
    return TrainingConfig.model_validate({
        "output_dir": "run", "data": {"synthetic": {"label_maps": ["a.nii.gz", "b.nii.gz"]}},
        "precision": PrecisionConfig.model_validate(precision).model_dump()})


def test_off_is_fp32_and_forced_dtypes_are_kept() -> None:
    assert autocast_dtype(config_with(autocast="off"), CPU) is None
    assert autocast_dtype(config_with(autocast="fp16"), CPU) is torch.float16


def test_auto_follows_the_precision_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBCT_PRECISION", "fp32")
    assert autocast_dtype(config_with(autocast="auto"), CPU) is None
    monkeypatch.setenv("SUBCT_PRECISION", "bf16")
    assert autocast_dtype(config_with(autocast="auto"), CPU) is torch.bfloat16


def test_channels_last_is_on_for_cpu_by_default_and_off_when_asked() -> None:
    assert use_channels_last(config_with(channels_last="auto"), CPU)
    assert not use_channels_last(config_with(channels_last="off"), CPU)
    batch = prepare_batch(torch.zeros(2, 3, 4, 5, 6), CPU, channels_last=True)
    assert batch.is_contiguous(memory_format=torch.channels_last_3d)
    assert not batch.is_contiguous()
    flat = prepare_batch(torch.zeros(2, 4, 5), CPU, channels_last=True)  # only 5D is changed
    assert flat.is_contiguous()


def test_no_dtype_means_no_autocast() -> None:
    weights = torch.ones(3, 3)
    with autocast_context(CPU, None):
        assert (weights @ weights).dtype is torch.float32
    with autocast_context(CPU, torch.bfloat16):
        assert (weights @ weights).dtype is torch.bfloat16
