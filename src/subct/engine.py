"""Inference engines: run a network on numpy arrays with OpenVINO, ONNX Runtime or PyTorch.

subct's CPU default is OpenVINO (chosen by ``benchmarks/bench_engines.py`` and
``benchmarks/bench_segment.py``; see :func:`subct.runtime.resolve_engine`): its oneDNN
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
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctConfigError, SubctInputError
from subct.runtime import ResolvedPrecision

if TYPE_CHECKING:
    import torch

#: Largest absolute logit difference allowed between the ONNX graph and PyTorch fp32
#: (measured 2e-5 on the shipped UNet; the tests assert this bound).
ONNX_TOLERANCE = 1e-3
#: ONNX metadata key holding the SHA-256 of the source checkpoint.
HASH_KEY = "subct_checkpoint_sha256"
#: ONNX opset of exported graphs.
ONNX_OPSET = 17
CACHE_ENV = "SUBCT_CACHE_DIR"


class Engine(Protocol):
    """Runs a network: ``(N, C_in, X, Y, Z)`` float32 → ``(N, C_out, X, Y, Z)`` logits."""

    name: str

    def logits(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Network output for a batch of images (numpy in, numpy out)."""
        ...


# -------------------------------------------------------------------------- ONNX Runtime


class OnnxRuntimeEngine:
    """ONNX Runtime's CPU provider on an exported graph.

    Args:
        session: an ``onnxruntime.InferenceSession``.
    """

    name = "onnxruntime"

    def __init__(self, session: Any) -> None:
        self.session = session
        self._input = session.get_inputs()[0].name

    def logits(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Run the graph on a float32 batch."""
        output = self.session.run(None, {self._input: np.ascontiguousarray(batch,
                                                                           np.float32)})
        return np.asarray(output[0], dtype=np.float32)

    @property
    def checkpoint_sha256(self) -> str:
        """Hash of the checkpoint the graph was exported from ('' if unrecorded)."""
        return str(self.session.get_modelmeta().custom_metadata_map.get(HASH_KEY, ""))


def onnx_session(graph: str | Path, threads: int) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and no spinning.

    Spinning is off: with it, idle pool threads busy-wait for work, which costs CPU
    seconds on a quiet machine and slows everyone on a busy one
    (``benchmarks/bench_engines.py``).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: no warnings about unused initialisers
    try:
        return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise SubctInputError(graph, f"ONNX Runtime cannot load this graph ({error})") from error


# ------------------------------------------------------------------------------ OpenVINO


class OpenVinoEngine:
    """OpenVINO's CPU plugin (oneDNN kernels) on an exported ONNX graph.

    Args:
        model: an ``openvino.Model`` read from the graph.
        threads: inference threads.
        precision: ``fp32`` or ``bf16`` (OpenVINO's inference-precision hint; OpenVINO
            would otherwise pick bf16 by itself on AMX CPUs).

    The array returned by :meth:`logits` is OpenVINO's output buffer: it is valid
    until the next call (the sliding-window blend consumes it before then), which
    saves one copy of every window's logits.
    """

    name = "openvino"

    def __init__(self, model: Any, threads: int, precision: ResolvedPrecision = "fp32") -> None:
        import openvino as ov

        self.checkpoint_sha256 = _openvino_recorded_hash(model)
        config = {"INFERENCE_NUM_THREADS": max(1, int(threads)), "NUM_STREAMS": 1,
                  "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        compiled = ov.Core().compile_model(model, "CPU", config)
        self.request = compiled.create_infer_request()

    def logits(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Run the graph on a float32 batch (result valid until the next call)."""
        self.request.infer({0: np.ascontiguousarray(batch, np.float32)})
        return np.asarray(self.request.get_output_tensor(0).data)


def read_openvino_model(graph: str | Path) -> Any:
    """An ONNX graph read by OpenVINO (not compiled yet)."""
    import openvino as ov

    try:
        return ov.Core().read_model(str(graph))
    except Exception as error:  # OpenVINO raises its own exception types
        raise SubctInputError(graph, f"OpenVINO cannot read this graph ({error})") from error


def _openvino_recorded_hash(model: Any) -> str:
    """The source-checkpoint hash an ONNX graph recorded (OpenVINO keeps ONNX metadata
    under ``rt_info['framework']``); '' when absent."""
    key = ["framework", HASH_KEY]
    if not model.has_rt_info(key):
        return ""
    return str(model.get_rt_info(key).astype(str))


# ------------------------------------------------------------------------------ PyTorch


class TorchEngine:
    """PyTorch eager under the precision policy (channels-last 3D on CPU).

    Args:
        network: the module, in eval mode (or with dropout switched on for MC dropout).
        device: where it runs.
        precision: resolved precision (:func:`subct.runtime.resolve_precision`).
    """

    name = "torch"

    def __init__(self, network: torch.nn.Module, device: torch.device,
                 precision: ResolvedPrecision) -> None:
        import torch

        self.device = device
        self.precision = precision
        self.channels_last = device.type == "cpu"
        network = network.to(device)
        if self.channels_last:
            network = network.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        self.network = network

    def logits(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Run the network on a float32 batch."""
        import torch

        from subct.runtime import autocast

        tensor = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode(), autocast(self.device, self.precision):
            output = self.network(tensor)
        return output.float().cpu().numpy()


# ---------------------------------------------------------------------- sliding windows


@lru_cache(maxsize=8)
def gaussian_importance(window: tuple[int, ...], sigma_scale: float = 0.125
                        ) -> NDArray[np.float32]:
    """Blending weights of one window: a Gaussian of σ = ``sigma_scale`` × side (voxels),
    peak 1 at the centre, clamped below at max(min, 1e-3) — MONAI's ``gaussian`` mode."""
    weights = np.ones((), dtype=np.float32)
    for side in window:
        axis = np.arange(-(side - 1) / 2.0, (side - 1) / 2.0 + 1, dtype=np.float32)
        profile = np.exp(axis**2 / np.float32(-2.0 * (side * sigma_scale) ** 2))
        weights = np.multiply.outer(weights, profile.astype(np.float32))
    minimum = max(float(weights.min()), 1e-3)
    return np.maximum(weights, np.float32(minimum)).astype(np.float32)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start indices of windows of ``window`` voxels covering ``size`` voxels.

    Step = int(window × (1 − overlap)) (at least 1); the last window is moved back to
    end at the border (MONAI's placement).
    """
    if window >= size:
        return [0]
    step = max(int(window * (1.0 - overlap)), 1)
    count = next(index for index in range(int(math.ceil(size / step)))
                 if index * step + window >= size) + 1
    return [min(index * step, size - window) for index in range(count)]


def sliding_window_logits(engine: Engine, images: NDArray[np.float32],
                          window: Sequence[int], overlap: float,
                          batch_size: int = 2, threads: int = 1) -> NDArray[np.float32]:
    """Gaussian-blended logits of ``engine`` over ``images`` ``(N, X, Y, Z)``.

    Every image is covered by windows of ``window`` voxels (clipped to the image);
    windows of all N images at the same place are run together, ``batch_size`` at a
    time, so a test-time-augmented pair costs one batched call per place. The blend
    (weighting and accumulating each window's logits) is split by channel over
    ``threads`` threads; every voxel still sums its windows in the same order, so the
    result does not depend on ``threads``.

    Returns:
        ``(N, C, X, Y, Z)`` float32 logits.
    """
    count, *shape = images.shape
    roi = tuple(min(int(w), int(s)) for w, s in zip(window, shape, strict=True))
    starts = [window_starts(s, w, overlap) for s, w in zip(shape, roi, strict=True)]
    places = [(x, y, z) for x in starts[0] for y in starts[1] for z in starts[2]]
    importance = gaussian_importance(roi)
    jobs = [(image, place) for place in places for image in range(count)]
    output: NDArray[np.float32] | None = None
    weight_sum = np.zeros(shape, dtype=np.float32)
    for x, y, z in places:
        weight_sum[x:x + roi[0], y:y + roi[1], z:z + roi[2]] += importance
    for first in range(0, len(jobs), batch_size):
        chunk = jobs[first:first + batch_size]
        batch = np.stack([images[image, x:x + roi[0], y:y + roi[1], z:z + roi[2]]
                          for image, (x, y, z) in chunk])[:, None]
        logits = engine.logits(batch)
        if output is None:
            output = np.zeros((count, logits.shape[1], *shape), dtype=np.float32)

        def blend(channels: slice, logits: NDArray[np.float32] = logits,
                  chunk: list[tuple[int, tuple[int, int, int]]] = chunk,
                  accumulator: NDArray[np.float32] = output) -> None:
            part = logits[:, channels]
            part *= importance  # in place, broadcast over batch and channels
            for (image, (x, y, z)), window_logits in zip(chunk, part, strict=True):
                accumulator[image, channels, x:x + roi[0], y:y + roi[1],
                            z:z + roi[2]] += window_logits

        in_parallel(blend, logits.shape[1], threads)
    assert output is not None
    result = output

    def normalise(channels: slice) -> None:
        result[:, channels] /= weight_sum

    in_parallel(normalise, result.shape[1], threads)
    return result


def in_parallel(task: Callable[[slice], None], length: int, threads: int) -> None:
    """Run ``task(part)`` over ``threads`` contiguous parts of ``range(length)``.

    For numpy work on large arrays, which releases the GIL: two threads halve the
    wall time of the sliding-window blend and the softmax on a 2-core machine.
    """
    parts = max(1, min(int(threads), length))
    bounds = np.linspace(0, length, parts + 1).round().astype(int)
    slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if parts == 1:
        task(slices[0])
        return
    for future in [_pool(parts).submit(task, part) for part in slices]:
        future.result()


@lru_cache(maxsize=4)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="subct-blend")


def softmax(logits: NDArray[np.float32], axis: int = 0, threads: int = 1
            ) -> NDArray[np.float32]:
    """Numerically stable softmax along ``axis`` (float32, in a new array).

    The array is split along its longest other axis over ``threads`` threads.
    """
    result = np.empty_like(logits, dtype=np.float32)
    axis = axis % logits.ndim
    split_axis = max((a for a in range(logits.ndim) if a != axis), key=lambda a: logits.shape[a])

    def part(index: slice) -> None:
        where: list[slice | int] = [slice(None)] * logits.ndim
        where[split_axis] = index
        block = logits[tuple(where)]
        shifted = block - block.max(axis=axis, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=axis, keepdims=True)
        result[tuple(where)] = shifted

    in_parallel(part, logits.shape[split_axis], threads)
    return result


# ------------------------------------------------------------------ graphs from weights


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where derived files (ONNX graphs) are cached: ``SUBCT_CACHE_DIR`` or
    ``$XDG_CACHE_HOME/subct`` (default ``~/.cache/subct``)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "subct"


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
    from subct.io import atomic_output

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

    from subct.checkpoint import load_checkpoint

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
    from subct.io import atomic_output

    checkpoint = Path(checkpoint)
    target = Path(output) if output is not None else shipped_graph_path(checkpoint)
    if target.resolve() == checkpoint.resolve():
        raise SubctInputError(target, "the graph would overwrite the checkpoint")
    sha256 = file_sha256(checkpoint)
    with atomic_output(target, suffix=".onnx") as temporary:
        _export_checkpoint(checkpoint, Path(temporary))
        stamp_graph(Path(temporary), sha256)
    return target
