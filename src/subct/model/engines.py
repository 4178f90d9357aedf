"""Network engines: OpenVINO, ONNX Runtime and PyTorch behind one ``logits(batch)`` call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctInputError
from subct.model.runtime import ResolvedPrecision, autocast

if TYPE_CHECKING:
    import torch


#: Largest absolute logit difference allowed between the ONNX graph and PyTorch fp32
#: (measured 2e-5 on the shipped UNet; the tests assert this bound).
ONNX_TOLERANCE = 1e-3


#: ONNX metadata key holding the SHA-256 of the source checkpoint.
HASH_KEY = "subct_checkpoint_sha256"


class Engine(Protocol):
    """Runs a network: ``(N, C_in, X, Y, Z)`` float32 → ``(N, C_out, X, Y, Z)`` logits."""

    name: str

    def logits(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Network output for a batch of images (numpy in, numpy out)."""
        ...


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


class TorchEngine:
    """PyTorch eager under the precision policy (channels-last 3D on CPU).

    Args:
        network: the module, in eval mode (or with dropout switched on for MC dropout).
        device: where it runs.
        precision: resolved precision (:func:`subct.model.runtime.resolve_precision`).
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


        tensor = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode(), autocast(self.device, self.precision):
            output = self.network(tensor)
        return output.float().cpu().numpy()
