"""One precision, engine and thread policy for every network subct runs.

The machines subct runs on are not one CPU. Some have native bf16 (AVX512-BF16, AMX),
where bf16 autocast with channels-last 3D made the CT UNet 2.5–3× faster; many have
AVX2 only, where PyTorch emulates bf16 and one dilated 3D convolution took 21 s in bf16
against 0.29 s in fp32 (≈ 70×), and MeshNet's bf16 path asked for a 27 GB buffer. So
precision is chosen here, from the CPU, once, for inference, MeshNet, training and the
benchmarks:

* ``auto`` (default): bf16 autocast on CPUs with native bf16, fp32 on other CPUs, AMP
  on CUDA (bf16 where the GPU supports it, else fp16);
* ``fp32`` / ``bf16``: forced, e.g. to test or benchmark the fp32 path on an AMX
  machine. ``--precision`` on the command line, or ``SUBCT_PRECISION`` in the
  environment.

The inference engine is chosen here too (``--backend`` or ``SUBCT_BACKEND``): see
:func:`resolve_engine`; the engines themselves live in :mod:`subct.engine`.

This module imports neither torch nor onnxruntime at import time (start-up time):
:func:`autocast` imports torch when it is called.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, get_args

from subct.errors import SubctConfigError

if TYPE_CHECKING:
    import torch

#: Requested precision: ``auto`` follows the hardware, the others force it.
Precision = Literal["auto", "fp32", "bf16"]
#: What actually runs: ``fp16`` only on CUDA (AMP).
ResolvedPrecision = Literal["fp32", "bf16", "fp16"]
#: Requested inference engine; ``auto`` is resolved by :func:`resolve_engine`.
Backend = Literal["auto", "onnxruntime", "torch"]
ResolvedBackend = Literal["onnxruntime", "torch"]

PRECISION_ENV = "SUBCT_PRECISION"
BACKEND_ENV = "SUBCT_BACKEND"

#: CPU flags that decide subct's speed; recorded in benchmark tables and ``qc.json``.
RELEVANT_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                      "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
#: Flags meaning the CPU executes bf16 arithmetic natively, so bf16 autocast pays.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True)
class CpuInfo:
    """What this CPU is and can do, from ``/proc/cpuinfo`` (Linux) or ``platform``.

    Attributes:
        model: the CPU's model name.
        flags: every feature flag the kernel reports.
        logical_cores: cores this process may run on (its affinity mask).
    """

    model: str
    flags: frozenset[str]
    logical_cores: int

    @property
    def native_bf16(self) -> bool:
        """True when bf16 runs in hardware (AVX512-BF16 or AMX), so bf16 autocast pays."""
        return bool(self.flags & NATIVE_BF16_FLAGS)

    @property
    def relevant_flags(self) -> tuple[str, ...]:
        """The speed-relevant flags present, in a fixed order (see RELEVANT_CPU_FLAGS)."""
        return tuple(flag for flag in RELEVANT_CPU_FLAGS if flag in self.flags)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (benchmark tables, ``qc.json``)."""
        return {"model": self.model, "flags": list(self.relevant_flags),
                "native_bf16": self.native_bf16, "logical_cores": self.logical_cores}


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (read once per process)."""
    model = platform.processor() or platform.machine()
    flags: frozenset[str] = frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    model = value.strip()
                elif key == "flags":
                    flags = frozenset(value.split())
                if flags and key == "" and model:  # first processor block is enough
                    break
    except OSError:
        pass
    return CpuInfo(model=model, flags=flags, logical_cores=_available_cores())


def _from_environment(variable: str, allowed: tuple[str, ...], requested: str | None,
                      flag: str) -> str:
    """``requested`` if given, else the environment variable, else ``auto``; validated."""
    value = requested if requested is not None else os.environ.get(variable, "auto")
    value = value.strip().lower()
    if value not in allowed:
        source = flag if requested is not None else f"the environment variable {variable}"
        raise SubctConfigError(f"{source} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def requested_precision(requested: str | None = None) -> Precision:
    """The precision asked for: ``requested``, else ``SUBCT_PRECISION``, else ``auto``."""
    value = _from_environment(PRECISION_ENV, get_args(Precision), requested, "--precision")
    return value  # type: ignore[return-value]


def resolve_precision(requested: str | None = None,
                      device_type: str = "cpu") -> ResolvedPrecision:
    """The arithmetic that will actually run on ``device_type`` (``cpu`` or ``cuda``).

    ``auto``: on CPU, bf16 only where :attr:`CpuInfo.native_bf16`; on CUDA, bf16 where
    the GPU supports it, else fp16 (automatic mixed precision).

    Raises:
        SubctConfigError: an unknown precision name.
    """
    choice = requested_precision(requested)
    if choice != "auto":
        return choice
    if device_type == "cuda":
        import torch  # only reached with a CUDA device, where torch is loaded anyway

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_info().native_bf16 else "fp32"


def torch_dtype(precision: ResolvedPrecision) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (None for fp32: no autocast)."""
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device | str, precision: str | None = None
             ) -> contextlib.AbstractContextManager[Any]:
    """Autocast context for running a network on ``device`` under the policy.

    ``precision`` may be a requested (``auto``/``fp32``/``bf16``) or resolved value.
    """
    import torch

    device = torch.device(device)
    resolved = (precision if precision == "fp16"
                else resolve_precision(precision, device.type))
    dtype = torch_dtype(resolved)  # type: ignore[arg-type]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def requested_backend(requested: str | None = None) -> Backend:
    """The engine asked for: ``requested``, else ``SUBCT_BACKEND``, else ``auto``."""
    value = _from_environment(BACKEND_ENV, get_args(Backend), requested, "--backend")
    return value  # type: ignore[return-value]


def resolve_engine(backend: str | None = None, precision: str | None = None,
                   device_type: str = "cpu") -> tuple[ResolvedBackend, ResolvedPrecision]:
    """The engine and arithmetic that will run a network on ``device_type``.

    * CUDA: PyTorch, with :func:`resolve_precision`'s AMP choice.
    * CPU, ``--backend auto``: the precision policy first; fp32 runs on ONNX Runtime
      (no torch import, and it held up under CPU contention:
      ``benchmarks/bench_engines.py``), bf16 (CPUs with native bf16) on PyTorch,
      since ONNX Runtime's CPU provider has no bf16 convolutions.
    * CPU, ``--backend onnxruntime``: fp32 (``auto`` precision means fp32 there).
    * CPU, ``--backend torch``: the precision policy.

    Raises:
        SubctConfigError: unknown names, ONNX Runtime on a GPU, ONNX Runtime at bf16,
            or ONNX Runtime asked for but not installed.
    """
    engine = requested_backend(backend)
    wanted = requested_precision(precision)
    if device_type != "cpu":
        if engine == "onnxruntime":
            raise SubctConfigError("--backend onnxruntime runs on the CPU only; use "
                                   "--backend torch (or auto) for a GPU")
        return "torch", resolve_precision(wanted, device_type)
    if engine == "onnxruntime":
        if wanted == "bf16":
            raise SubctConfigError("--backend onnxruntime runs fp32 only; use "
                                   "--precision fp32 or --backend torch")
        if not onnxruntime_available():
            raise SubctConfigError("--backend onnxruntime needs the onnxruntime package "
                                   "(pip install onnxruntime)")
        return "onnxruntime", "fp32"
    resolved = resolve_precision(wanted, device_type)
    if engine == "auto" and resolved == "fp32" and onnxruntime_available():
        return "onnxruntime", "fp32"
    return "torch", resolved


@lru_cache(maxsize=1)
def onnxruntime_available() -> bool:
    """True when ONNX Runtime can be imported (checked without importing it)."""
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None


def default_threads() -> int:
    """Threads for one network: the cores this process may use (at least 1)."""
    return max(1, cpu_info().logical_cores)


def runtime_summary(precision: ResolvedPrecision, backend: ResolvedBackend,
                    threads: int, device: str = "cpu") -> dict[str, Any]:
    """What ran, for ``qc.json`` and benchmark tables: CPU, precision, engine, threads."""
    return {"cpu": cpu_info().as_dict(), "device": device, "precision": precision,
            "backend": backend, "threads": threads, "python": platform.python_version()}
