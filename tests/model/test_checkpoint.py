"""Checkpoints: one safetensors file, metadata in its header, no code executed on load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from subct.errors import SubctInputError
from subct.model.checkpoint import (
    CheckpointMetadata,
    average_checkpoints,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from subct.model.networks import build_network


def _metadata() -> CheckpointMetadata:
    return CheckpointMetadata(
        network_name="unet3d",
        network_kwargs={"in_channels": 1, "out_channels": 18, "channels": [4, 8, 16]},
        label_scheme="canonical", spacing_mm=(1.0, 1.0, 1.0), hu_window=(-100.0, 200.0),
        patch_size=(32, 32, 32), epoch=3, best_metric=0.5,
        validation_dice={"Left-Thalamus": 0.7},
    )


def test_round_trip_restores_weights_metadata_and_predictions(tmp_path: Path) -> None:
    meta = _metadata()
    network = build_network(meta.network_name, **meta.network_kwargs)
    path = save_checkpoint(tmp_path / "best.safetensors", network, meta)
    assert [p.name for p in tmp_path.iterdir()] == ["best.safetensors"]  # no temp left
    with safe_open(str(path), framework="pt") as reader:  # plain safetensors + JSON header
        assert json.loads(reader.metadata()["subct"])["network_name"] == "unet3d"
    loaded = load_checkpoint(path)
    assert not loaded.network.training
    assert loaded.metadata.validation_dice == {"Left-Thalamus": 0.7}
    assert loaded.metadata.patch_size == (32, 32, 32)
    assert loaded.metadata.num_classes == 18
    x = torch.randn(1, 1, 16, 16, 16)
    network.eval()
    with torch.no_grad():
        assert torch.equal(network(x), loaded.network(x))


def test_non_subct_or_mismatched_files_raise_input_errors(tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(SubctInputError, match="not a subct checkpoint"):
        read_checkpoint_metadata(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x80\x04 definitely not safetensors")
    with pytest.raises(SubctInputError, match="garbage.safetensors"):
        load_checkpoint(garbage)
    meta = _metadata()
    other = build_network("unet3d", 1, 18, channels=[4, 8])
    wrong = save_checkpoint(tmp_path / "wrong.safetensors", other, meta)
    with pytest.raises(SubctInputError, match="do not match"):
        load_checkpoint(wrong)
    with pytest.raises(SubctInputError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_average_checkpoints_is_the_mean_of_the_weights(tmp_path: Path) -> None:
    meta = _metadata()
    paths = []
    networks = []
    for seed in range(3):
        torch.manual_seed(seed)
        network = build_network(meta.network_name, **meta.network_kwargs)
        networks.append(network)
        paths.append(save_checkpoint(tmp_path / f"e{seed}.safetensors", network,
                                     meta.model_copy(update={"epoch": 10 + seed})))
    out = average_checkpoints(paths, tmp_path / "swa.safetensors")
    loaded = load_checkpoint(out)
    for name, tensor in loaded.network.state_dict().items():
        expected = sum(n.state_dict()[name].double() for n in networks) / 3
        assert torch.allclose(tensor.double(), expected, atol=1e-6), name
    assert not torch.equal(loaded.network.state_dict()[name], networks[-1].state_dict()[name])
    with safe_open(str(out), framework="pt") as reader:
        header = json.loads(reader.metadata()["subct"])
    assert [entry["epoch"] for entry in header["averaged_from"]] == [10, 11, 12]
    # other network, a single input, or overwriting an input: one clear error each
    other = save_checkpoint(tmp_path / "other.safetensors", build_network(
        "unet3d", in_channels=1, out_channels=18, channels=[4, 8, 32]),
        meta.model_copy(update={"network_kwargs": {"in_channels": 1, "out_channels": 18,
                                                   "channels": [4, 8, 32]}}))
    with pytest.raises(SubctInputError, match="differs from the last one in network_kwargs"):
        average_checkpoints([other, paths[0]], tmp_path / "bad.safetensors")
    with pytest.raises(SubctInputError, match="at least two"):
        average_checkpoints(paths[:1], tmp_path / "bad.safetensors")
    with pytest.raises(SubctInputError, match="overwrite"):
        average_checkpoints(paths, paths[0])


def test_weighted_average_interpolates_between_two_checkpoints(tmp_path: Path) -> None:
    meta = _metadata()
    networks, paths = [], []
    for seed in range(2):
        torch.manual_seed(seed)
        networks.append(build_network(meta.network_name, **meta.network_kwargs))
        paths.append(save_checkpoint(tmp_path / f"w{seed}.safetensors", networks[-1],
                                     meta.model_copy(update={"epoch": seed})))
    out = average_checkpoints(paths, tmp_path / "wise.safetensors", weights=[3.0, 1.0])
    for name, tensor in load_checkpoint(out).network.state_dict().items():
        expected = (0.75 * networks[0].state_dict()[name].double()
                    + 0.25 * networks[1].state_dict()[name].double())
        assert torch.allclose(tensor.double(), expected, atol=1e-6), name
    with safe_open(str(out), framework="pt") as reader:
        header = json.loads(reader.metadata()["subct"])
    assert [entry["weight"] for entry in header["averaged_from"]] == [0.75, 0.25]
    with pytest.raises(SubctInputError, match="one positive weight per checkpoint"):
        average_checkpoints(paths, tmp_path / "bad.safetensors", weights=[1.0])
    with pytest.raises(SubctInputError, match="one positive weight per checkpoint"):
        average_checkpoints(paths, tmp_path / "bad.safetensors", weights=[1.0, -1.0])


def test_cli_average_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from subct.cli import main

    meta = _metadata()
    paths = [str(save_checkpoint(tmp_path / f"e{i}.safetensors",
                                 build_network(meta.network_name, **meta.network_kwargs), meta))
             for i in range(2)]
    with pytest.raises(SystemExit) as exit_info:
        main(["average-checkpoints", *paths, "-o", str(tmp_path / "avg.safetensors")])
    assert exit_info.value.code in (0, None)
    assert load_checkpoint(tmp_path / "avg.safetensors").metadata.epoch == 3
    with pytest.raises(SystemExit) as exit_info:
        main(["average-checkpoints", paths[0], "-o", str(tmp_path / "one.safetensors")])
    assert exit_info.value.code == 2
    assert "at least two checkpoints" in capsys.readouterr().err
