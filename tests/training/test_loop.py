"""`subct train` core: tiny synthetic run, exact resume, config validation, transfer."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from subct.errors import SubctConfigError, SubctInputError
from subct.model.checkpoint import load_checkpoint
from subct.model.networks import encoder_modules
from subct.training.config import (
    apply_overrides,
    load_training_config,
    training_config_from_dict,
)
from subct.training.loop import TrainingResult, train

REPOSITORY = Path(__file__).resolve().parents[2]


def tiny_config(shared: Path, output: Path, **changes: Any) -> dict[str, Any]:
    """The tiny synthetic config (32³ patches, 2 epochs, 2 label maps) as a dict."""
    maps = shared / "label_maps" / "synthseg"
    values: dict[str, Any] = {
        "output_dir": str(output), "seed": 3, "progress_bar": False,
        "evaluate_after_training": False,
        "data": {
            "synthetic": {"label_maps": [str(maps / "training_seg_01.nii.gz"),
                                         str(maps / "training_seg_02.nii.gz")],
                          "validation_label_maps": [str(maps / "training_seg_17.nii.gz")]},
            "patch_size": [32, 32, 32], "batch_size": 2, "samples_per_epoch": 6,
            "validation_samples": 2,
        },
        "network": {"name": "unet3d", "kwargs": {"channels": [8, 16, 32]}},
        "optimiser": {"lr": 3e-3},
        "schedule": {"epochs": 2},
    }
    for key, value in changes.items():
        apply_overrides(values, [f"{key}={value}"])
    return values


@pytest.fixture(scope="module")
def tiny_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    output = tmp_path_factory.mktemp("tiny")
    return train(training_config_from_dict(tiny_config(shared_data, output)))


def test_tiny_synthetic_run_learns_and_writes_usable_outputs(tiny_run: TrainingResult) -> None:
    losses = tiny_run.step_losses
    assert len(losses) == 6  # 2 epochs × 3 steps
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    assert tiny_run.history[1].val_loss < tiny_run.history[0].val_loss
    output = tiny_run.output_dir
    for name in ("best.safetensors", "last.safetensors", "last_state.pt",
                 "training_log.csv", "training_curves.png"):
        assert (output / name).is_file(), name
    rows = list(csv.DictReader((output / "training_log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert "dice_Left-Thalamus" in rows[0]
    loaded = load_checkpoint(output / "last.safetensors")
    meta = loaded.metadata
    assert meta.epoch == 2 and meta.label_scheme == "canonical"
    assert meta.patch_size == (32, 32, 32) and meta.training_config["seed"] == 3
    with torch.no_grad():
        logits = loaded.network(torch.rand(1, 1, 32, 32, 32))
    assert logits.shape == (1, 18, 32, 32, 32)


def test_resume_reproduces_the_uninterrupted_run_exactly(
        shared_data: Path, tmp_path: Path, tiny_run: TrainingResult) -> None:
    first = train(training_config_from_dict(
        tiny_config(shared_data, tmp_path, **{"schedule.epochs": 1})))
    assert first.step_losses == tiny_run.step_losses[:3]
    resumed = train(training_config_from_dict(tiny_config(shared_data, tmp_path)), resume=True)
    assert resumed.step_losses == tiny_run.step_losses[3:]  # exact, not approximately
    assert [h.epoch for h in resumed.history] == [1, 2]


def test_warm_restart_sets_the_learning_rate_only_when_resuming(
        shared_data: Path, tmp_path: Path) -> None:
    train(training_config_from_dict(tiny_config(shared_data, tmp_path, **{"schedule.epochs": 1})))
    restarted = train(training_config_from_dict(tiny_config(
        shared_data, tmp_path, **{"schedule.restart_lr": 7e-4})), resume=True)
    assert restarted.history[-1].lr == pytest.approx(7e-4)  # not the 3e-3 of the first epoch
    fresh = train(training_config_from_dict(tiny_config(
        shared_data, tmp_path / "fresh", **{"schedule.epochs": 1, "schedule.restart_lr": 7e-4})))
    assert fresh.history[-1].lr == pytest.approx(3e-3)  # no resume: the configured rate


def test_config_rejects_unknown_keys_and_applies_overrides(tmp_path: Path) -> None:
    values = tiny_config(tmp_path, tmp_path)
    values["optimiser"]["lrr"] = 0.1
    with pytest.raises(SubctConfigError, match="optimiser.lrr"):
        training_config_from_dict(values)
    with pytest.raises(SubctConfigError, match="needs class_weights"):
        training_config_from_dict(tiny_config(tmp_path, tmp_path, **{"loss.name": "weighted_ce"}))
    shipped = load_training_config(REPOSITORY / "configs" / "shipped_ct_unet.yaml",
                                   ["optimiser.lr=3e-4", "data.patch_size=[64,64,64]"])
    assert shipped.optimiser.lr == pytest.approx(3e-4)
    assert shipped.data.patch_size == (64, 64, 64)
    with pytest.raises(SubctInputError, match="shipped_ct_unet.yaml"):
        load_training_config(REPOSITORY / "configs" / "shipped_ct_unet.yaml", ["typo.key=1"])
    with pytest.raises(SubctConfigError, match="key.subkey=value"):
        load_training_config(REPOSITORY / "configs" / "shipped_ct_unet.yaml", ["no_equals"])


@pytest.mark.parametrize("path", sorted((REPOSITORY / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_example_configs_are_valid_and_build_their_networks(path: Path) -> None:
    from subct.model.checkpoint import size_divisor
    from subct.model.networks import build_network
    from subct.training.loop import network_kwargs

    config = load_training_config(path)
    kwargs = network_kwargs(config)
    assert kwargs["out_channels"] == config.num_classes
    build_network(config.network.name, **kwargs)
    divisor = size_divisor(config.network.name, **config.network.kwargs)
    in_plane = config.data.patch_size if config.network.name != "unet2d_layernorm" \
        else config.data.patch_size[:2]
    assert all(side % divisor == 0 for side in in_plane)


def test_cli_reports_config_errors_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from subct.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(REPOSITORY / "configs" / "tiny_synthetic.yaml"),
              "--set", "optimiser.momentum=0.9"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert "optimiser.momentum" in message and "\n" not in message


def test_transfer_learning_freezes_encoder_and_tunes_decoder(
        shared_data: Path, tmp_path: Path, tiny_run: TrainingResult) -> None:
    start = load_checkpoint(tiny_run.output_dir / "last.safetensors").network
    values = tiny_config(shared_data, tmp_path, **{"schedule.epochs": 1,
                                                    "data.samples_per_epoch": 2})
    values["transfer"] = {"init_checkpoint": str(tiny_run.output_dir / "last.safetensors"),
                          "freeze_encoder": True}
    values["evaluate_after_training"] = True  # on a synthetic CT from a held-out map
    values["data"]["synthetic"]["test_label_maps"] = [
        str(shared_data / "label_maps" / "synthseg" / "training_seg_18.nii.gz")]
    values["data"]["synthetic"]["test_image_shape"] = [160, 192, 192]  # a whole head
    result = train(training_config_from_dict(values))
    assert result.evaluation_csv is not None
    rows = list(csv.DictReader(result.evaluation_csv.open()))
    assert {r["case"] for r in rows} == {"synthetic_training_seg_18"}
    metrics = {r["metric"] for r in rows}
    assert {"dice", "hd95_mm", "assd_mm", "abs_volume_diff_mm3"} <= metrics
    tuned = load_checkpoint(result.last_checkpoint).network
    encoder_names = {id(p) for m in encoder_modules(tuned) for p in m.parameters()}
    start_params = dict(start.named_parameters())
    changed_encoder, changed_decoder = 0, 0
    for name, parameter in tuned.named_parameters():
        moved = not torch.equal(parameter, start_params[name])
        if id(parameter) in encoder_names:
            changed_encoder += moved
        else:
            changed_decoder += moved
    assert changed_encoder == 0
    assert changed_decoder > 0


def test_pipeline_validation_keeps_the_best_whole_head_checkpoint(
        shared_data: Path, tmp_path: Path) -> None:
    values = tiny_config(shared_data, tmp_path, **{"pipeline_validation.every_epochs": 1,
                                                   "pipeline_validation.heads": 1,
                                                   "pipeline_validation.shape": "[160,192,192]",
                                                   "pipeline_validation.keep_checkpoints": "true"})
    result = train(training_config_from_dict(values))
    scores = [record.pipeline_dice for record in result.history]
    assert all(score is not None and 0.0 <= score <= 1.0 for score in scores)
    assert (tmp_path / "best_pipeline.safetensors").is_file()
    best = load_checkpoint(tmp_path / "best_pipeline.safetensors").metadata.epoch
    assert scores[best - 1] == max(s for s in scores if s is not None)
    rows = list(csv.DictReader((tmp_path / "training_log.csv").open()))
    assert [float(r["pipeline_dice"]) for r in rows] == pytest.approx(scores, abs=1e-4)
    # one group of heads (the training generator's): its column is the same figure
    assert [float(r["pipeline_training"]) for r in rows] == pytest.approx(scores, abs=1e-4)
    kept = sorted(path.name for path in tmp_path.glob("pipeline_*.safetensors"))
    assert kept == [f"pipeline_{epoch:04d}.safetensors" for epoch in range(1, len(rows) + 1)]
    assert load_checkpoint(tmp_path / kept[-1]).metadata.epoch == len(rows)
    state = torch.load(tmp_path / "last_state.pt", weights_only=True)
    assert state["best_pipeline_dice"] == pytest.approx(max(scores))  # type: ignore[type-var]


def test_weight_average_is_kept_scored_and_carried_across_a_resume(
        shared_data: Path, tmp_path: Path, tiny_run: TrainingResult) -> None:
    from subct.model.checkpoint import load_state_dict

    changes = {"averaging.ema_decay": 0.5, "schedule.epochs": 1}
    first = train(training_config_from_dict(tiny_config(shared_data, tmp_path, **changes)))
    assert first.step_losses == tiny_run.step_losses[:3]  # averaging does not change training
    averaged = load_state_dict(tmp_path / "ema.safetensors")
    trained = load_state_dict(tmp_path / "last.safetensors")
    assert set(averaged) == set(trained)
    assert any(not torch.equal(averaged[k], trained[k]) for k in trained)
    changes["schedule.epochs"] = 2
    train(training_config_from_dict(tiny_config(shared_data, tmp_path, **changes)), resume=True)
    whole = train(training_config_from_dict(tiny_config(shared_data, tmp_path / "whole",
                                                        **changes)))
    assert whole.step_losses == tiny_run.step_losses
    # the resumed average went on from the saved one: the same as the uninterrupted run's
    resumed = load_state_dict(tmp_path / "ema.safetensors")
    uninterrupted = load_state_dict(tmp_path / "whole" / "ema.safetensors")
    for key in uninterrupted:
        torch.testing.assert_close(resumed[key], uninterrupted[key])
    assert not torch.equal(resumed[key], averaged[key])


def test_pipeline_dice_of_the_shipped_network_on_a_validation_head(
        shared_data: Path, tmp_path: Path) -> None:
    from subct.model.registry import resolve_model_path
    from subct.training.pipeline_validation import build_validation_heads, pipeline_dice

    values = tiny_config(shared_data, tmp_path, **{"pipeline_validation.every_epochs": 1,
                                                   "pipeline_validation.heads": 1})
    heads = build_validation_heads(training_config_from_dict(values))
    assert len(heads) == 1 and heads[0].ct.shape == (192, 240, 240)
    assert set(np.unique(heads[0].reference)) >= {0, 4, 10, 17, 43, 49, 53}
    shipped = load_checkpoint(resolve_model_path(None))
    shipped.network.train()
    score = pipeline_dice(shipped.network, shipped.metadata, heads, torch.device("cpu"))
    # the shipped model's clean validation heads score about 0.83 (docs/benchmarks.md)
    assert 0.7 < score < 0.95
    assert shipped.network.training      # left as the training loop needs it


def test_growing_a_trained_network_trains_only_its_new_blocks(
        shared_data: Path, tmp_path: Path, tiny_run: TrainingResult) -> None:
    start = load_checkpoint(tiny_run.output_dir / "last.safetensors").network
    values = tiny_config(shared_data, tmp_path, **{"schedule.epochs": 1,
                                                    "data.samples_per_epoch": 4})
    values["network"]["kwargs"]["refine_levels"] = [1, 2]
    values["transfer"] = {"init_checkpoint": str(tiny_run.output_dir / "last.safetensors"),
                          "freeze_pretrained": True}
    grown = load_checkpoint(train(training_config_from_dict(values)).last_checkpoint).network
    before = dict(start.named_parameters())
    new_names = [name for name, _ in grown.named_parameters() if name not in before]
    assert new_names and all(".refine." in name for name in new_names)
    for name, parameter in grown.named_parameters():
        if name in before:
            assert torch.equal(parameter, before[name]), name  # the trained network is fixed
    gates = [p for name, p in grown.named_parameters() if name.endswith("refine.gate")]
    assert any(float(gate.detach().abs()) > 0 for gate in gates)  # and the new blocks learnt
    with pytest.raises(SubctConfigError, match="freeze_pretrained needs init_checkpoint"):
        training_config_from_dict(tiny_config(shared_data, tmp_path,
                                              **{"transfer.freeze_pretrained": "true"}))


def test_subcortical_only_maps_train_inside_the_background_head(
        shared_data: Path, tmp_path: Path) -> None:
    from subct.training.data import build_label_bank

    paper_map = shared_data / "label_maps" / "ct_subcortical_paper" / "1BA001.nii.gz"
    values = tiny_config(shared_data, tmp_path)
    values["data"]["synthetic"]["label_maps"].append(str(paper_map))
    with pytest.raises(SubctInputError, match="background"):
        build_label_bank(training_config_from_dict(values), [str(paper_map)])
    values["data"]["synthetic"]["background_label_map"] = \
        values["data"]["synthetic"]["label_maps"][0]
    config = training_config_from_dict(values)
    bank = build_label_bank(config, config.data.synthetic.label_maps)
    assert len(bank) == 3
    embedded = bank.maps[2]
    present = set(bank.label_values[np.unique(embedded.indices.numpy())].tolist())
    assert {4, 43, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 16} <= present  # split L/R
    assert 2 in present or 41 in present  # surrounded by the head's white matter


def test_stop_file_ends_the_run_after_the_epoch_in_progress(
        shared_data: Path, tmp_path: Path) -> None:
    from subct.training.loop import STOP_FILE

    values = tiny_config(shared_data, tmp_path, **{"schedule.epochs": 5,
                                                    "data.samples_per_epoch": 2})
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / STOP_FILE).touch()
    result = train(training_config_from_dict(values))
    assert len(result.history) == 1  # one epoch, then the STOP file was seen
    assert (tmp_path / "last_state.pt").exists()  # and it is resumable


def test_resume_refuses_a_foreign_pickle_in_one_line(
        shared_data: Path, tmp_path: Path, tiny_run: TrainingResult) -> None:
    import pickle

    from subct.errors import SubctInputError

    output = tmp_path / "run"
    output.mkdir()
    shutil.copy(tiny_run.output_dir / "last.safetensors", output / "last.safetensors")

    class Payload:  # a pickle that would run code if unpickled without weights_only
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("executed!",))

    (output / "last_state.pt").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(SubctInputError, match="not a subct training state") as error:
        train(training_config_from_dict(tiny_config(shared_data, output)), resume=True)
    assert "\n" not in str(error.value)
