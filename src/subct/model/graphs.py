"""Inference engines: run a network on numpy arrays with OpenVINO, ONNX Runtime or PyTorch.

subct's CPU default is OpenVINO (chosen by ``benchmarks/bench_engines.py`` and
``benchmarks/bench_segment.py``; see :func:`subct.model.runtime.resolve_engine`): its oneDNN
3D convolutions are as fast as PyTorch's and faster than ONNX Runtime's, and it starts
in a fraction of a second where ``import torch`` + ``import monai`` cost seconds.
ONNX Runtime is the alternative graph engine (``--backend onnxruntime``; the steadiest
under CPU contention). PyTorch stays the engine for GPUs, for bf16 autocast, for
Monte-Carlo dropout (the exported graph has no dropout), and as the fallback
(``--backend torch``).

**One source of truth.** A checkpoint (``.safetensors``) is the model. Its ONNX graph is
derived from it: exported by PyTorch on first use and cached under
``$SUBCT_CACHE_DIR/onnx/<sha256 of the checkpoint>.onnx`` (default
``~/.cache/subct``), or shipped beside the checkpoint (``ct_subcortical.onnx`` in the
wheel). Every graph records the SHA-256 of the checkpoint it came from in its metadata
(``subct_checkpoint_sha256``), and a graph whose hash does not match is never used.
Outputs agree with PyTorch fp32 within :data:`ONNX_TOLERANCE` (tested).

The sliding-window blend is written here in numpy rather than taken from MONAI so that
the ONNX path needs no torch at all; it reproduces MONAI's ``sliding_window_inference``
(same window positions, same Gaussian importance map with σ = 0.125 × window, logits
blended before the softmax), tested against it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from subct.errors import SubctConfigError, SubctInputError
from subct.io.writers import atomic_output
from subct.model.checkpoint import load_checkpoint
from subct.model.runtime import ResolvedPrecision
from subct.paths import CACHE_ENV, cache_dir

if TYPE_CHECKING:
    import torch
from subct.model.engines import (
    HASH_KEY,
    OnnxRuntimeEngine,
    OpenVinoEngine,
    _openvino_recorded_hash,
    onnx_session,
    read_openvino_model,
)

#: ONNX opset of exported graphs.
ONNX_OPSET = 17


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_graph_path(checkpoint: str | Path) -> Path:
    """The graph that may ship beside a checkpoint (same name, ``.onnx``)."""
    return Path(checkpoint).with_suffix(".onnx")


def graph_engine_for_checkpoint(checkpoint: str | Path, backend: str, threads: int,
                                precision: ResolvedPrecision = "fp32"
                                ) -> OpenVinoEngine | OnnxRuntimeEngine:
    """An OpenVINO or ONNX Runtime engine for a subct checkpoint.

    The graph beside the checkpoint (shipped) or in the cache is used only when the
    checkpoint hash it records matches; otherwise (weights changed since) it is
    exported again into the cache.
    """
    checkpoint = Path(checkpoint)
    sha256 = file_sha256(checkpoint)
    for candidate in (shipped_graph_path(checkpoint), cached_graph_path(sha256)):
        if candidate.is_file():
            engine = _graph_engine(candidate, backend, threads, precision, sha256)
            if engine is not None:
                return engine
    graph = export_to_cache(sha256, lambda target: _export_checkpoint(checkpoint, target))
    engine = _graph_engine(graph, backend, threads, precision, sha256)
    if engine is None:
        raise SubctInputError(graph, "exported graph does not record its checkpoint hash")
    return engine


def _graph_engine(graph: Path, backend: str, threads: int, precision: ResolvedPrecision,
                  sha256: str) -> OpenVinoEngine | OnnxRuntimeEngine | None:
    """The engine on ``graph`` if the graph records ``sha256``, else None."""
    if backend == "openvino":
        model = read_openvino_model(graph)
        if _openvino_recorded_hash(model) != sha256:
            return None
        return OpenVinoEngine(model, threads, precision)
    engine = OnnxRuntimeEngine(onnx_session(graph, threads))
    return engine if engine.checkpoint_sha256 == sha256 else None


def cached_graph_path(sha256: str, prefix: str = "") -> Path:
    """Where the graph of weights with this hash is cached."""
    return cache_dir() / "onnx" / f"{prefix}{sha256}.onnx"


def export_to_cache(sha256: str, export: Callable[[Path], None], prefix: str = "") -> Path:
    """Export a graph into the cache, atomically (a reader never sees half a graph).

    Args:
        sha256: hash of the weights; the graph records it and is named by it.
        export: ``export(target)`` writes the ONNX file (needs torch).
        prefix: file-name prefix (e.g. ``meshnet-``).

    Raises:
        SubctConfigError: the cache folder cannot be written.
    """

    cached = cached_graph_path(sha256, prefix)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SubctConfigError(
            f"cannot write the ONNX cache {cached.parent} ({error.strerror}); set "
            f"{CACHE_ENV} to a writable folder or use --backend torch") from error
    with atomic_output(cached, suffix=".onnx") as temporary:
        export(Path(temporary))
        stamp_graph(Path(temporary), sha256)
    return cached


def stamp_graph(graph: Path, sha256: str) -> None:
    """Record the source checkpoint's hash in the graph's metadata."""
    import onnx

    model = onnx.load(str(graph))
    entry = model.metadata_props.add()
    entry.key, entry.value = HASH_KEY, sha256
    onnx.save(model, str(graph))


def export_network(network: torch.nn.Module, in_channels: int, target: Path) -> None:
    """Export ``network`` (eval mode, fp32) to ONNX with dynamic batch and spatial sizes."""
    import warnings

    import torch

    network = network.float().eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    example = torch.zeros(1, in_channels, 32, 32, 32)
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and train=True notes
        torch.onnx.export(network, (example,), str(target), dynamo=False,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": axes, "logits": axes},
                          opset_version=ONNX_OPSET)


def _export_checkpoint(checkpoint: Path, target: Path) -> None:
    import torch


    loaded = load_checkpoint(checkpoint, torch.device("cpu"))
    in_channels = int(loaded.metadata.network_kwargs.get("in_channels", 1))
    export_network(loaded.network, in_channels, target)


def export_checkpoint_graph(checkpoint: str | Path, output: str | Path | None = None) -> Path:
    """Write the stamped ONNX graph of ``checkpoint`` (default: beside it, ``.onnx``).

    This is how the shipped model's graph is made (``subct export-onnx``); written
    atomically, never over the checkpoint itself.

    Raises:
        SubctInputError: unreadable checkpoint, or an output equal to the checkpoint.
    """

    checkpoint = Path(checkpoint)
    target = Path(output) if output is not None else shipped_graph_path(checkpoint)
    if target.resolve() == checkpoint.resolve():
        raise SubctInputError(target, "the graph would overwrite the checkpoint")
    sha256 = file_sha256(checkpoint)
    with atomic_output(target, suffix=".onnx") as temporary:
        _export_checkpoint(checkpoint, Path(temporary))
        stamp_graph(Path(temporary), sha256)
    return target
