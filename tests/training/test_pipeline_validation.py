"""Full-pipeline validation: the evaluation protocol's heads and protocol changes on resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from subct.model.checkpoint import load_checkpoint
from subct.training.config import training_config_from_dict
from subct.training.loop import train
from subct.training.pipeline_validation import (
    LEGACY_PROTOCOL,
    build_validation_heads,
    pipeline_dice,
    protocol_key,
)

from .test_loop import tiny_config

EVALUATION = {"pipeline_validation.every_epochs": 1, "pipeline_validation.heads": 1,
              "pipeline_validation.shape": "[160,192,192]",
              "pipeline_validation.generator": "evaluation"}


def test_evaluation_protocol_draws_clean_and_clinical_heads_at_1_and_5_mm(
        shared_data: Path, tmp_path: Path) -> None:
    from subct.model.registry import resolve_model_path

    config = training_config_from_dict(tiny_config(shared_data, tmp_path, **EVALUATION))
    heads = build_validation_heads(config)
    assert [head.name for head in heads] == [
        "training_seg_17_clean0", "training_seg_17_clean0_5mm",
        "training_seg_17_clinical0", "training_seg_17_clinical0_5mm"]
    clean, clean_slabs, clinical, _ = heads
    assert clean.ct.shape == (160, 192, 192) and clean.ct.spacing == pytest.approx((1, 1, 1))
    assert clean_slabs.ct.spacing == pytest.approx((1, 1, 5))
    assert clean_slabs.ct.shape == (160, 192, 38) == clean_slabs.reference.shape
    assert set(np.unique(clean.reference)) >= {0, 4, 10, 16, 17, 43, 49, 53}
    assert set(np.unique(clean_slabs.reference)) <= set(np.unique(clean.reference))
    assert not np.array_equal(clean.ct.array, clinical.ct.array)  # pathology was drawn
    again = build_validation_heads(config)[0]  # the same heads every epoch and on resume
    assert np.array_equal(again.ct.array, clean.ct.array)
    shipped = load_checkpoint(resolve_model_path(None))
    score = pipeline_dice(shipped.network, shipped.metadata, heads, torch.device("cpu"))
    # the shipped model's validation figures are 0.77-0.84 (docs/benchmarks.md)
    assert 0.7 < score < 0.95


def test_protocol_keys_tell_the_generators_and_settings_apart(
        shared_data: Path, tmp_path: Path) -> None:
    training = training_config_from_dict(tiny_config(shared_data, tmp_path))
    evaluation = training_config_from_dict(tiny_config(shared_data, tmp_path, **EVALUATION))
    thin = training_config_from_dict(tiny_config(
        shared_data, tmp_path, **EVALUATION, **{"pipeline_validation.slab_mm": 0}))
    flipped = training_config_from_dict(tiny_config(
        shared_data, tmp_path, **EVALUATION, **{"pipeline_validation.tta": "true"}))
    assert protocol_key(training) == LEGACY_PROTOCOL
    keys = {protocol_key(c) for c in (training, evaluation, thin, flipped)}
    assert len(keys) == 4


def test_a_resumed_run_keeps_its_best_figure_unless_the_protocol_changed(
        shared_data: Path, tmp_path: Path) -> None:
    training = {"pipeline_validation.every_epochs": 1, "pipeline_validation.heads": 1,
                "pipeline_validation.shape": "[160,192,192]"}
    train(training_config_from_dict(tiny_config(shared_data, tmp_path, **training,
                                                **{"schedule.epochs": 1})))
    state_path = tmp_path / "last_state.pt"
    state = torch.load(state_path, weights_only=True)
    assert state["pipeline_protocol"] == LEGACY_PROTOCOL
    state["best_pipeline_dice"] = 2.0  # a figure no epoch can beat
    torch.save(state, state_path)
    # same protocol: the saved best stands, epoch 2 does not replace epoch 1's checkpoint
    train(training_config_from_dict(tiny_config(shared_data, tmp_path, **training)),
          resume=True)
    assert load_checkpoint(tmp_path / "best_pipeline.safetensors").metadata.epoch == 1
    # another protocol (and crops turned to the training pose): the best starts afresh,
    # so epoch 3 is kept, and its checkpoint records the pose for inference
    result = train(training_config_from_dict(tiny_config(
        shared_data, tmp_path, **EVALUATION, **{"pipeline_validation.conditions": "[clean]",
                                                "pipeline_validation.slab_mm": 0,
                                                "preprocessing.reference_pitch_deg": 24.7,
                                                "schedule.epochs": 3})), resume=True)
    best = load_checkpoint(tmp_path / "best_pipeline.safetensors").metadata
    assert best.epoch == 3 and best.reference_pitch_deg == pytest.approx(24.7)
    state = torch.load(state_path, weights_only=True)
    assert state["best_pipeline_dice"] == pytest.approx(result.history[-1].pipeline_dice)
    assert state["pipeline_protocol"].startswith("evaluation")
    assert state["pipeline_protocol"].endswith("pitch=24.7")
