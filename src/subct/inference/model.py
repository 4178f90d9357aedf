"""Loading a segmentation network for inference: device, precision, engine, cache.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctConfigError, SubctInputError
from subct.labels.schemes import scheme_labels, scheme_names
from subct.model.checkpoint import load_checkpoint, read_checkpoint_metadata, size_divisor
from subct.model.engines import Engine, TorchEngine
from subct.model.graphs import graph_engine_for_checkpoint
from subct.model.registry import class_scales, resolve_model_path
from subct.model.runtime import (
    ResolvedBackend,
    ResolvedPrecision,
    default_threads,
    resolve_engine,
    resolve_precision,
    runtime_summary,
)

if TYPE_CHECKING:
    import torch

    from subct.model.checkpoint import CheckpointMetadata
from subct.inference.config import InferenceConfig, parse_device


@dataclass
class SegmentationModel:
    """A network ready to run (its engine) plus the checkpoint facts inference needs.

    Attributes:
        engine: what runs the network (:mod:`subct.model.engines`).
        metadata: the checkpoint's metadata (scheme, spacing, HU window, patch size).
        device: ``cpu`` or a CUDA device string.
        path: the checkpoint file (None for an in-memory network).
        precision: the arithmetic the engine runs (resolved, never ``auto``).
        threads: CPU threads of the engine.
        network: the PyTorch module when one is loaded (always for the torch engine;
            loaded on demand from ``path`` for Monte-Carlo dropout otherwise).
    """

    engine: Engine
    metadata: CheckpointMetadata
    device: str = "cpu"
    path: Path | None = None
    precision: ResolvedPrecision = "fp32"
    threads: int = 1
    network: torch.nn.Module | None = None

    @property
    def backend(self) -> ResolvedBackend:
        """Which engine runs the network (``openvino``, ``onnxruntime`` or ``torch``)."""
        return self.engine.name  # type: ignore[return-value]

    @property
    def network_scheme(self) -> str:
        """Label scheme of the network's output channels."""
        return str(self.metadata.label_scheme)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size (mm, RAS axes) of the grid the network was trained on."""
        spacing = self.metadata.spacing_mm
        return (float(spacing[0]), float(spacing[1]), float(spacing[2]))

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """Training patch size in voxels (x, y, z)."""
        return self.metadata.plan.patch_size

    @property
    def window_size(self) -> tuple[int, int, int]:
        """Sliding-window size in voxels (x, y, z): the checkpoint's ``inference_window``,
        else its training patch size."""
        return self.metadata.plan.inference_window

    @property
    def size_divisor(self) -> int:
        """Network input sides must be multiples of this."""

        return size_divisor(self.metadata.network_name, **self.metadata.network_kwargs)

    def class_scale_vector(self) -> NDArray[np.float32] | None:
        """Per-channel factors of the model's volume calibration (background first, 1 for
        a structure it does not list; :func:`subct.model.registry.class_scales`), or
        None when the model has none."""
        scales = class_scales(self.path, self.metadata.class_scales)
        if not scales:
            return None
        names = scheme_names(self.network_scheme)
        return np.array([1.0] + [scales.get(names[value], 1.0)
                                 for value in scheme_labels(self.network_scheme)],
                        dtype=np.float32)

    def runtime(self) -> dict[str, Any]:
        """What runs the network: CPU, precision, engine, threads (for ``qc.json``)."""
        return runtime_summary(self.precision, self.backend, self.threads, self.device)

    def torch_network(self) -> torch.nn.Module:
        """The PyTorch module (loaded from the checkpoint on first use)."""
        if self.network is None:
            if self.path is None:
                raise SubctConfigError("this model has no PyTorch network to run")
            import torch


            self.network = load_checkpoint(self.path, torch.device(self.device)).network
        return self.network


def resolve_device(name: str = "auto") -> str:
    """``auto`` → CUDA when a GPU and a CUDA build of torch are present, MPS on a Mac with
    Apple silicon, else CPU.

    On a Linux machine without an NVIDIA driver torch is not even imported (start-up
    time).

    Raises:
        SubctConfigError: unknown name, or CUDA / MPS asked for where it is not available.
    """
    parse_device(name)
    if name == "cpu":
        return "cpu"
    mac = sys.platform == "darwin"
    driver = Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()
    if name == "auto" and not driver and not mac:
        return "cpu"
    import torch  # a GPU may be present: only torch can tell

    if name == "mps" or (name == "auto" and mac):
        if torch.backends.mps.is_available():
            return "mps"
        if name == "auto":
            return "cpu"
        raise SubctConfigError("--device mps was asked for but PyTorch's Metal (MPS) backend "
                               "is not available here (it needs macOS on Apple silicon)")
    if torch.cuda.is_available():
        if name.startswith("cuda:") and int(name.split(":")[1]) >= torch.cuda.device_count():
            raise SubctConfigError(f"--device {name}: only {torch.cuda.device_count()} "
                                   "CUDA device(s) present")
        return "cuda" if name == "auto" else name
    if name == "auto":
        return "cpu"
    raise SubctConfigError(f"--device {name} was asked for but no CUDA GPU is available")


def load_model(model: str | Path | None = None, device: str = "auto",
               precision: str | None = None, backend: str | None = None,
               threads: int | None = None) -> SegmentationModel:
    """Load ``--model NAME|PATH`` (default: the shipped model) for inference.

    The engine follows :func:`subct.model.runtime.resolve_engine`: on CPU the checkpoint's
    ONNX graph (shipped, cached by checkpoint hash, or exported now) runs under
    OpenVINO (or ONNX Runtime), and torch is not imported; on GPUs, for bf16 autocast
    or with ``backend="torch"``, PyTorch runs the checkpoint.

    Raises:
        SubctInputError: no model installed, unknown name, missing or invalid file.
        SubctConfigError: an unknown or impossible device/precision/backend choice.
    """

    path = resolve_model_path(model)
    metadata = read_checkpoint_metadata(path)
    device_name = resolve_device(device)
    device_type = device_name.split(":")[0]
    engine_name, resolved_precision = resolve_engine(backend, precision, device_type)
    thread_count = threads or default_threads()
    if engine_name != "torch":

        _check_orientation(metadata, path)
        engine = graph_engine_for_checkpoint(path, engine_name, thread_count,
                                             resolved_precision)
        return SegmentationModel(engine, metadata, "cpu", path, resolved_precision,
                                 thread_count)
    import torch


    if device_type == "cpu":
        torch.set_num_threads(thread_count)
    loaded = load_checkpoint(path, torch.device(device_name))
    return model_from_network(loaded.network, metadata, device_name, path,
                              precision=resolved_precision, threads=thread_count)


def _check_orientation(metadata: CheckpointMetadata, path: Path | None) -> None:
    if str(metadata.orientation) != "RAS":
        raise SubctInputError(path, f"model expects orientation {metadata.orientation}; "
                                    "only RAS models are supported")


def model_from_network(
    network: torch.nn.Module,
    metadata: CheckpointMetadata,
    device: torch.device | str = "cpu",
    path: Path | None = None,
    precision: str | None = None,
    threads: int | None = None,
) -> SegmentationModel:
    """Wrap an in-memory PyTorch network and its metadata for inference (eval mode).

    It runs on the PyTorch engine; on CPU the weights are stored channels-last (3D),
    which speeds up convolutions (with bf16 autocast: 0.63 s vs 1.96 s per 128³ pass of
    the default UNet, ``benchmarks/bench_segment.py --network-only``).
    """
    import torch

    torch_device = torch.device(device)
    _check_orientation(metadata, path)
    resolved = (precision if precision in ("fp32", "bf16", "fp16")
                else resolve_precision(precision, torch_device.type))
    engine = TorchEngine(network.eval(), torch_device, resolved)  # type: ignore[arg-type]
    return SegmentationModel(engine, metadata, str(torch_device), path,
                             resolved, threads or default_threads(),  # type: ignore[arg-type]
                             network=engine.network)


_MODEL_CACHE: dict[tuple[str, ...], SegmentationModel] = {}


def cached_model(model: str | Path | None, config: InferenceConfig) -> SegmentationModel:
    """:func:`load_model` with the run settings of ``config``, loaded once per process."""
    key = (str(model), config.device, str(config.precision), str(config.backend),
           str(config.threads))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_model(model, config.device, config.precision,
                                       config.backend, config.threads)
    return _MODEL_CACHE[key]
