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
:func:`resolve_engine`; the engines themselves live in :mod:`subct.model.engines`.

This module imports neither torch nor onnxruntime at import time (start-up time):
:func:`autocast` imports torch when it is called.
"""

from __future__ import annotations

import contextlib
import ctypes
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
Backend = Literal["auto", "openvino", "onnxruntime", "torch"]


ResolvedBackend = Literal["openvino", "onnxruntime", "torch"]


#: Engines that run the exported ONNX graph (CPU only), in order of preference.
GRAPH_BACKENDS: tuple[ResolvedBackend, ...] = ("openvino", "onnxruntime")


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
        """True when bf16 runs in hardware (AVX512-BF16 or AMX), so bf16 autocast pays.

        ``ONEDNN_MAX_CPU_ISA`` (oneDNN's own switch, which PyTorch's CPU convolutions
        obey) set to an ISA without bf16, e.g. ``AVX2``, makes PyTorch emulate bf16
        even on an AMX CPU, so it counts as no native bf16 here too. That also lets an
        AMX machine reproduce an AVX2-only machine's behaviour for tests and benchmarks.
        """
        limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
        if limit and limit != "ALL" and not any(
                token in limit for token in ("BF16", "AMX", "AVX10", "FP16")):
            return False
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


def resolve_precision(requested: str | None = None, device_type: str = "cpu",
                      cpu_bf16_pays: bool = True) -> ResolvedPrecision:
    """The arithmetic that will actually run on ``device_type`` (``cpu``, ``cuda``, ``mps``).

    ``auto``: on CPU, bf16 only where :attr:`CpuInfo.native_bf16` and the network gains
    from it (``cpu_bf16_pays``: False for MeshNet, whose dilated convolutions ran 2×
    slower in bf16 than in fp32 even on an AMX CPU, ``benchmarks/bench_meshnet.py``); on
    CUDA, bf16 where the GPU supports it, else fp16 (automatic mixed precision).

    Raises:
        SubctConfigError: an unknown precision name.
    """
    choice = requested_precision(requested)
    if choice != "auto":
        return choice
    if device_type == "cuda":
        import torch  # only reached with a CUDA device, where torch is loaded anyway

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device_type == "mps":  # Apple GPUs: fp32 (autocast there is partial and untested)
        return "fp32"
    return "bf16" if cpu_bf16_pays and cpu_info().native_bf16 else "fp32"


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
                   device_type: str = "cpu", cpu_bf16_pays: bool = True
                   ) -> tuple[ResolvedBackend, ResolvedPrecision]:
    """The engine and arithmetic that will run a network on ``device_type``.

    * CUDA: PyTorch, with :func:`resolve_precision`'s AMP choice.
    * CPU, ``--backend auto``: OpenVINO at fp32 (else ONNX Runtime, if OpenVINO is
      not installed), unless bf16 is asked for explicitly (then PyTorch bf16
      autocast). Measured (``benchmarks/bench_engines.py``, ``bench_segment.py``):
      OpenVINO's 3D convolutions ran as fast as PyTorch fp32 and ~1.4x faster than
      ONNX Runtime's, PyTorch's bf16 gained less end to end than its 3 s import
      (torch + MONAI) cost, and OpenVINO's bf16 hint gained nothing on the UNet.
    * CPU, ``--backend openvino`` / ``onnxruntime``: that engine; ``auto``
      precision means fp32 there, ``bf16`` is OpenVINO's bf16 hint (ONNX Runtime's
      CPU provider has no bf16 convolutions: refused).
    * CPU, ``--backend torch``: the precision policy (bf16 only on native-bf16 CPUs,
      and only for networks where it pays: ``cpu_bf16_pays``).

    Raises:
        SubctConfigError: unknown names, a graph engine on a GPU, ONNX Runtime at bf16,
            or an engine asked for but not installed.
    """
    engine = requested_backend(backend)
    wanted = requested_precision(precision)
    if device_type != "cpu":
        if engine in GRAPH_BACKENDS:
            raise SubctConfigError(f"--backend {engine} runs on the CPU only; use "
                                   "--backend torch (or auto) for a GPU")
        return "torch", resolve_precision(wanted, device_type)
    if engine == "auto":
        if wanted == "bf16":
            return "torch", "bf16"
        installed = [name for name in GRAPH_BACKENDS if backend_available(name)]
        return ((installed[0], "fp32") if installed
                else ("torch", resolve_precision(wanted, device_type, cpu_bf16_pays)))
    if engine in GRAPH_BACKENDS:
        if not backend_available(engine):
            raise SubctConfigError(f"--backend {engine} needs the {engine} package "
                                   f"(pip install {engine})")
        if engine == "onnxruntime" and wanted == "bf16":
            raise SubctConfigError("--backend onnxruntime runs fp32 only; use "
                                   "--precision fp32 or another backend")
        return engine, "bf16" if wanted == "bf16" else "fp32"  # type: ignore[return-value]
    return "torch", resolve_precision(wanted, device_type, cpu_bf16_pays)


@lru_cache(maxsize=4)
def backend_available(name: str) -> bool:
    """True when the engine's package can be imported (checked without importing it)."""
    from importlib.util import find_spec

    return find_spec(name) is not None


#: OpenMP's wait policy for PyTorch's CPU thread pool. With the default (active
#: spinning) one 64³ window of the CT UNet went from 0.03 s to 0.46 s (15×) with two
#: busy processes on a 2-core machine; with PASSIVE 1.9×, and no slower when quiet
#: (``benchmarks/bench_engines.py``).
OMP_WAIT_POLICY = "PASSIVE"


def prepare_thread_environment() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it (before torch loads).

    OpenMP reads the variable once, when PyTorch's library is loaded, so this is
    called when subct is imported; a process that imported torch earlier keeps its
    setting.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)


#: ``SUBCT_MALLOC``: ``retain`` (default) keeps freed memory in the process's heap for
#: reuse; ``system`` leaves glibc's allocator as it is.
MALLOC_ENV = "SUBCT_MALLOC"


#: glibc ``mallopt`` parameters (malloc.h): how many blocks may be ``mmap``-ed, and how
#: much free memory at the top of the heap is kept before it is returned to the kernel.
_M_MMAP_MAX, _M_TRIM_THRESHOLD = -4, -1


#: Free heap memory kept for reuse before glibc trims it (bytes).
RETAINED_HEAP_BYTES = 1 << 30


#: A batch (:func:`subct.inference.batch.run_batch`, in this process) keeps freed memory
#: when it segments at least this many cases: the
#: first case runs ~2 s slower with it, each later one ~1.5 s faster (measured on a
#: 3-case batch, :func:`retain_freed_memory`).
RETAIN_MEMORY_FROM_CASES = 3


def retain_freed_memory() -> bool:
    """Let glibc keep large freed blocks for reuse instead of unmapping them; True if set.

    By default glibc serves blocks above its mmap threshold (128 kB, raised dynamically
    to at most 32 MB) with a fresh ``mmap`` and unmaps them on free, so each case of a
    batch gets new memory for its large arrays (the crop's logits, 18 classes × ~3 M
    voxels, float32, their softmax and TTA copies; numpy asks for huge pages on large
    arrays, so every fault zero-fills 2 MB). With ``mmap`` off for the allocator and 1 GB
    of free memory kept at the top of the heap, the next case reuses the last one's
    memory: ``benchmarks/time_segment.py`` (segment calls in one process) went from
    5.9–6.1 s to 4.4 s wall and 8.4–8.8 to 6.8–6.9 CPU s per case on 2 cores, labels
    bit-identical.

    ``subct segment`` (``run_batch``) calls this when it segments
    :data:`RETAIN_MEMORY_FROM_CASES` or more cases in its own process: a 3-case batch of
    the GE head took 21.1–23.4 s against 24.6–28.4 s (system
    time 3.4–4.5 against 5.9–9.7 s; cases 9.6, 5.8, 5.9 s against 7.1, 7.3, 8.3 s), but
    the first case is slower with it (one ``subct segment`` process: ~1 s more system
    time, wall 9.4–11.3 against 8.2–10.5 s). Training gained nothing either: in the
    trainer's process long-lived objects at the top of the heap already kept glibc from
    unmapping, and the data-loader worker forked every epoch shares the retained heap
    copy-on-write, which made the loop slower (96³ bf16 patches: 2.53 patches/s against
    3.05 without, ``benchmarks/bench_training_throughput.py``). The cost is
    memory that stays with the process after its peak (reused, not leaked); a Python
    session that imports subct keeps glibc's default unless it calls this itself.
    ``SUBCT_MALLOC=system`` turns it off; other C libraries (musl, macOS, Windows) are
    left alone.
    """
    choice = os.environ.get(MALLOC_ENV, "retain").strip().lower()
    if choice not in ("retain", "system"):
        raise SubctConfigError(f"{MALLOC_ENV}={choice!r}: expected 'retain' or 'system'")
    if choice == "system" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(
        mallopt(_M_TRIM_THRESHOLD, RETAINED_HEAP_BYTES))


def default_threads() -> int:
    """Threads for one network: the cores this process may use (at least 1)."""
    return max(1, cpu_info().logical_cores)


def cpu_line() -> str:
    """One line naming this CPU and its speed-relevant flags, for benchmark output."""
    info = cpu_info()
    return (f"# CPU: {info.model}; flags: {' '.join(info.relevant_flags) or 'none'}; "
            f"native bf16: {info.native_bf16}; {info.logical_cores} cores")


def runtime_summary(precision: ResolvedPrecision, backend: ResolvedBackend,
                    threads: int, device: str = "cpu") -> dict[str, Any]:
    """What ran, for ``qc.json`` and benchmark tables: CPU, precision, engine, threads."""
    return {"cpu": cpu_info().as_dict(), "device": device, "precision": precision,
            "backend": backend, "threads": threads, "python": platform.python_version()}
