"""Inference engines (:mod:`subct.model.engines`): the numpy sliding window reproduces MONAI,
exported graphs equal PyTorch within the stated tolerance, graphs are tied to their
checkpoint by hash, and the graph engines run without importing torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from subct.errors import SubctInputError
from subct.inference.window import (
    class_argmax,
    gaussian_importance,
    sliding_window_logits,
    softmax,
    window_starts,
)
from subct.model.checkpoint import CheckpointMetadata, save_checkpoint
from subct.model.engines import HASH_KEY, ONNX_TOLERANCE, TorchEngine
from subct.model.graphs import (
    cached_graph_path,
    export_checkpoint_graph,
    file_sha256,
    graph_engine_for_checkpoint,
    shipped_graph_path,
)
from subct.model.networks import build_network
from subct.model.registry import default_model_path
from tests.support.tiny_phantom_unet import FIXTURE


def _small_network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network("unet3d", in_channels=1, out_channels=8, channels=[4, 8, 16]).eval()


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_sliding_window_reproduces_monai(overlap: float) -> None:
    from monai.inferers import sliding_window_inference

    network = _small_network()
    image = np.random.default_rng(1).random((1, 40, 56, 48), dtype=np.float32)
    with torch.inference_mode():
        expected = sliding_window_inference(torch.from_numpy(image)[:, None], (32, 32, 32), 1,
                                            network, overlap=overlap, mode="gaussian")
    engine = TorchEngine(network, torch.device("cpu"), "fp32")
    for threads in (1, 2):
        ours = sliding_window_logits(engine, image, (32, 32, 32), overlap, threads=threads)
        np.testing.assert_allclose(ours, expected.numpy(), atol=1e-5)


def test_window_placement_and_weights() -> None:
    assert window_starts(112, 64, 0.5) == [0, 32, 48]
    assert window_starts(160, 64, 0.5) == [0, 32, 64, 96]
    assert window_starts(64, 64, 0.5) == [0] and window_starts(50, 64, 0.5) == [0]
    assert window_starts(100, 64, 0.0) == [0, 36]
    weights = gaussian_importance((9, 11, 13))  # odd sides: a centre voxel of weight 1
    assert weights.shape == (9, 11, 13) and weights.dtype == np.float32
    assert weights[4, 5, 6] == pytest.approx(1.0) and weights.min() >= 1e-3
    np.testing.assert_allclose(weights, weights[::-1, ::-1, ::-1])  # symmetric


def test_threaded_softmax_matches_one_thread() -> None:
    logits = np.random.default_rng(0).normal(size=(2, 6, 9, 7, 5)).astype(np.float32) * 20
    one = softmax(logits, axis=1, threads=1)
    np.testing.assert_array_equal(softmax(logits, axis=1, threads=2), one)
    np.testing.assert_allclose(one.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(one.argmax(axis=1), logits.argmax(axis=1))
    # in place (the pipeline's own logits): the same figures, written over the input
    own = logits.copy()
    assert softmax(own, axis=1, threads=2, in_place=True) is own
    np.testing.assert_array_equal(own, one)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threaded_class_argmax_equals_numpy(threads: int) -> None:
    probabilities = np.random.default_rng(5).random((6, 7, 4, 5), dtype=np.float32)
    probabilities[:, 0, 0, 0] = 0.5  # a tie: the first class wins, as in numpy
    np.testing.assert_array_equal(class_argmax(probabilities, threads),
                                  probabilities.argmax(axis=0))


def test_shipped_graph_belongs_to_the_shipped_checkpoint() -> None:
    """The graph in the package was exported from the shipped weights (re-export with
    ``subct export-onnx`` whenever they change, or this fails)."""
    import onnx

    graph = onnx.load(str(shipped_graph_path(default_model_path())), load_external_data=False)
    recorded = {prop.key: prop.value for prop in graph.metadata_props}
    assert recorded[HASH_KEY] == file_sha256(default_model_path())


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_graph_engines_equal_pytorch_within_tolerance(backend: str) -> None:
    from subct.model.checkpoint import load_checkpoint

    network = load_checkpoint(default_model_path()).network
    engine = graph_engine_for_checkpoint(default_model_path(), backend, threads=2)
    assert engine.checkpoint_sha256 == file_sha256(default_model_path())
    rng = np.random.default_rng(3)
    batch = rng.random((2, 1, 64, 64, 64), dtype=np.float32)
    reference = TorchEngine(network, torch.device("cpu"), "fp32").logits(batch)
    ours = np.array(engine.logits(batch))
    assert ours.shape == reference.shape == (2, 18, 64, 64, 64)
    assert float(np.abs(ours - reference).max()) < ONNX_TOLERANCE


def _tiny_checkpoint(path: Path, seed: int) -> Path:
    network = _small_network(seed)
    metadata = CheckpointMetadata(network_name="unet3d", network_kwargs={
        "in_channels": 1, "out_channels": 8, "channels": [4, 8, 16]},
        label_scheme="paper7", spacing_mm=(4.0, 4.0, 4.0), patch_size=(32, 32, 32),
        hu_window=(-100.0, 200.0))
    return save_checkpoint(path, network, metadata)


def test_graphs_are_cached_by_hash_and_stale_graphs_are_never_used(tmp_path: Path) -> None:
    first = _tiny_checkpoint(tmp_path / "a.safetensors", seed=0)
    engine = graph_engine_for_checkpoint(first, "onnxruntime", threads=1)
    cached = cached_graph_path(file_sha256(first))
    assert cached.is_file() and engine.checkpoint_sha256 == file_sha256(first)
    stamp = cached.stat().st_mtime_ns
    graph_engine_for_checkpoint(first, "openvino", threads=1)  # reused, not re-exported
    assert cached.stat().st_mtime_ns == stamp
    # Other weights under the same name: the graph beside it (from the old weights)
    # records the old hash and must not be used.
    export_checkpoint_graph(first)
    second = _tiny_checkpoint(tmp_path / "b.safetensors", seed=1)
    os.replace(second, first)
    for backend in ("openvino", "onnxruntime"):
        engine = graph_engine_for_checkpoint(first, backend, threads=1)
        assert engine.checkpoint_sha256 == file_sha256(first) != ""
    with pytest.raises(SubctInputError, match="overwrite the checkpoint"):
        export_checkpoint_graph(first, first)


def test_graph_engine_runs_without_importing_torch(tmp_path: Path) -> None:
    from subct.inference.model import load_model

    load_model(FIXTURE, "cpu", backend="openvino")  # exports into the session cache
    code = (
        "import sys\n"
        "from tests.support.phantom import analytic_head_phantom\n"
        "from subct.inference import InferenceConfig, load_model, segment_volume\n"
        f"model = load_model({str(FIXTURE)!r}, 'cpu')\n"
        "ct = analytic_head_phantom(spacing_mm=4.0).ct\n"
        "result = segment_volume(ct, model, InferenceConfig(scheme='merged'))\n"
        "assert result.labels.shape == ct.shape\n"
        "print(model.backend, 'torch' in sys.modules, 'monai' in sys.modules)\n"
    )
    env = {**os.environ, "SUBCT_BACKEND": "auto"}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env=env, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split() == ["openvino", "False", "False"]


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_a_grown_network_exports_and_runs_in_the_graph_engines(tmp_path: Path,
                                                                backend: str) -> None:
    torch.manual_seed(2)
    network = build_network("unet3d", in_channels=1, out_channels=8, channels=[4, 8, 16],
                            refine_levels=[1, 2])
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if name.endswith("refine.gate"):
                parameter.fill_(0.3)  # trained blocks, not the identity
    metadata = CheckpointMetadata(network_name="unet3d", network_kwargs={
        "in_channels": 1, "out_channels": 8, "channels": [4, 8, 16], "refine_levels": [1, 2]},
        label_scheme="paper7", spacing_mm=(4.0, 4.0, 4.0), patch_size=(32, 32, 32),
        hu_window=(-100.0, 200.0))
    path = save_checkpoint(tmp_path / "grown.safetensors", network.eval(), metadata)
    engine = graph_engine_for_checkpoint(path, backend, threads=1)
    batch = np.random.default_rng(4).random((1, 1, 32, 32, 32), dtype=np.float32)
    reference = TorchEngine(network, torch.device("cpu"), "fp32").logits(batch)
    assert float(np.abs(np.array(engine.logits(batch)) - reference).max()) < ONNX_TOLERANCE
