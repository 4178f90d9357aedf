"""Full-pipeline validation: the evaluation protocol's heads and protocol changes on resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from subct.errors import SubctConfigError
from subct.model.checkpoint import load_checkpoint
from subct.paths import paper_split_maps
from subct.training.config import training_config_from_dict
from subct.training.loop import train
from subct.training.pipeline_validation import (
    ALL_HEADS,
    LEGACY_PROTOCOL,
    build_validation_heads,
    pipeline_dice,
    pipeline_scores,
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
    assert [head.group for head in heads] == ["clean", "clean", "clinical", "clinical"]
    shipped = load_checkpoint(resolve_model_path(None))
    scores = pipeline_scores(shipped.network, shipped.metadata, heads, torch.device("cpu"))
    # the shipped model's validation figures are 0.77-0.84 (docs/benchmarks.md)
    assert set(scores) == {ALL_HEADS, "clean", "clinical"}
    assert all(0.7 < score < 0.95 for score in scores.values())
    assert scores[ALL_HEADS] == pytest.approx((scores["clean"] + scores["clinical"]) / 2)


def paper_split_folder(shared_data: Path, root: Path) -> Path:
    """A paper-masks folder whose validation split holds 27 maps: the 12 real paper maps
    of the shared data, in turn (the full 180 are not part of the shared data)."""
    real = sorted((shared_data / "label_maps" / "ct_subcortical_paper").glob("*.nii.gz"))
    split = root / "segmentation_models_training" / "data" / "masks" / "val"
    split.mkdir(parents=True)
    for number in range(27):
        (split / f"{number:03d}_{real[number % len(real)].name}").symlink_to(
            real[number % len(real)])
    return root


def test_paper_validation_maps_are_scored_on_the_7_merged_classes(
        shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from subct.model.registry import resolve_model_path

    monkeypatch.setenv("SUBCT_PAPER_MASKS", str(paper_split_folder(shared_data, tmp_path / "pm")))
    config = training_config_from_dict(tiny_config(
        shared_data, tmp_path, **EVALUATION, **{"pipeline_validation.conditions": "[clean]",
                                                "pipeline_validation.slab_mm": 0,
                                                "pipeline_validation.paper_maps": 2}))
    heads = build_validation_heads(config)
    # one synthetic head, then the split's maps 0 and 13 (evenly spaced through its 27)
    assert [head.name for head in heads] == [
        "training_seg_17_clean0", "paper_000_1BA001", "paper_013_1BA005"]
    paper = heads[1]
    assert paper.scheme == "paper7" and heads[0].scheme is None
    assert [head.group for head in heads] == ["clean", "paper", "paper"]
    assert paper.ct.shape == (160, 192, 192) == paper.reference.shape
    assert set(np.unique(paper.reference)) == set(range(8))  # background + 7 merged classes
    shipped = load_checkpoint(resolve_model_path(None))
    score = pipeline_dice(shipped.network, shipped.metadata, heads[1:2], torch.device("cpu"))
    # the shipped model scores 0.82 on the paper's test maps (docs/benchmarks.md)
    assert 0.7 < score < 0.95
    with pytest.raises(SubctConfigError, match="needs generator: evaluation"):
        training_config_from_dict(tiny_config(shared_data, tmp_path,
                                              **{"pipeline_validation.paper_maps": 2}))
    with pytest.raises(SubctConfigError, match="scheme is merged"):
        build_validation_heads(training_config_from_dict(tiny_config(
            shared_data, tmp_path, **EVALUATION, **{"pipeline_validation.paper_maps": 1,
                                                    "label_scheme": "merged",
                                                    "preprocessing.merge_left_right": "true"})))


def test_an_incomplete_paper_split_is_refused(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBCT_PAPER_MASKS", str(tmp_path))
    folder = tmp_path / "segmentation_models_training" / "data" / "masks" / "test"
    folder.mkdir(parents=True)
    (folder / "only.nii.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="expected the paper's 27 test maps, found 1"):
        paper_split_maps("test")
    with pytest.raises(ValueError, match="unknown paper split"):
        paper_split_maps("validation")


def test_protocol_keys_tell_the_generators_and_settings_apart(
        shared_data: Path, tmp_path: Path) -> None:
    training = training_config_from_dict(tiny_config(shared_data, tmp_path))
    evaluation = training_config_from_dict(tiny_config(shared_data, tmp_path, **EVALUATION))
    thin = training_config_from_dict(tiny_config(
        shared_data, tmp_path, **EVALUATION, **{"pipeline_validation.slab_mm": 0}))
    flipped = training_config_from_dict(tiny_config(
        shared_data, tmp_path, **EVALUATION, **{"pipeline_validation.tta": "true"}))
    paper = training_config_from_dict(tiny_config(
        shared_data, tmp_path, **EVALUATION, **{"pipeline_validation.paper_maps": 4}))
    assert protocol_key(training) == LEGACY_PROTOCOL
    assert "paper_maps" not in protocol_key(evaluation)  # keys of earlier runs stand
    keys = {protocol_key(c) for c in (training, evaluation, thin, flipped, paper)}
    assert len(keys) == 5


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
