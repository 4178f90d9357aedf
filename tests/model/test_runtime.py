"""The one precision / engine / thread policy (:mod:`subct.model.runtime`)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from subct.errors import SubctConfigError
from subct.model.runtime import (
    CpuInfo,
    autocast,
    cpu_info,
    resolve_engine,
    resolve_precision,
    runtime_summary,
)


def test_cpu_info_reads_model_and_flags() -> None:
    info = cpu_info()
    assert info.model and info.logical_cores >= 1
    summary = runtime_summary("fp32", "openvino", 2)
    assert summary["cpu"]["model"] == info.model
    assert set(summary["cpu"]["flags"]) <= set(info.flags)


def test_native_bf16_follows_flags_and_onednn_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    amx = CpuInfo("x", frozenset({"avx2", "avx512f", "amx_bf16", "amx_tile"}), 2)
    avx2 = CpuInfo("y", frozenset({"avx2", "fma"}), 2)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert amx.native_bf16 and not avx2.native_bf16
    assert amx.relevant_flags == ("avx2", "avx512f", "amx_tile", "amx_bf16")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # torch would emulate bf16
    assert not amx.native_bf16
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert amx.native_bf16


def test_precision_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    import subct.model.runtime as runtime

    monkeypatch.delenv("SUBCT_PRECISION", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(runtime, "cpu_info",
                        lambda: CpuInfo("avx2 only", frozenset({"avx2"}), 2))
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    monkeypatch.setattr(runtime, "cpu_info",
                        lambda: CpuInfo("amx", frozenset({"amx_bf16"}), 2))
    assert resolve_precision("auto") == "bf16"
    assert resolve_precision(None) == "bf16"
    assert resolve_precision("auto", cpu_bf16_pays=False) == "fp32"  # MeshNet on CPU
    assert resolve_engine("torch", None, cpu_bf16_pays=False) == ("torch", "fp32")
    monkeypatch.setenv("SUBCT_PRECISION", "fp32")  # the environment override
    assert resolve_precision(None) == "fp32"
    assert resolve_precision("bf16") == "bf16"  # an explicit argument wins
    monkeypatch.setenv("SUBCT_PRECISION", "half")
    with pytest.raises(SubctConfigError, match="SUBCT_PRECISION"):
        resolve_precision(None)
    with pytest.raises(SubctConfigError, match="--precision"):
        resolve_precision("fp64")


def test_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import subct.model.runtime as runtime

    monkeypatch.delenv("SUBCT_BACKEND", raising=False)
    monkeypatch.delenv("SUBCT_PRECISION", raising=False)
    assert resolve_engine() == ("openvino", "fp32")
    assert resolve_engine("onnxruntime") == ("onnxruntime", "fp32")
    assert resolve_engine("auto", "bf16") == ("torch", "bf16")
    assert resolve_engine("openvino", "bf16") == ("openvino", "bf16")
    assert resolve_engine("torch", "fp32") == ("torch", "fp32")
    with pytest.raises(SubctConfigError, match="fp32 only"):
        resolve_engine("onnxruntime", "bf16")
    with pytest.raises(SubctConfigError, match="CPU only"):
        resolve_engine("openvino", None, "cuda")
    monkeypatch.setenv("SUBCT_BACKEND", "torch")
    assert resolve_engine()[0] == "torch"
    monkeypatch.delenv("SUBCT_BACKEND")
    monkeypatch.setattr(runtime, "backend_available", lambda name: name == "onnxruntime")
    assert resolve_engine() == ("onnxruntime", "fp32")  # OpenVINO missing: next engine
    monkeypatch.setattr(runtime, "backend_available", lambda name: False)
    monkeypatch.setattr(runtime, "cpu_info", lambda: CpuInfo("avx2", frozenset(), 2))
    assert resolve_engine() == ("torch", "fp32")
    with pytest.raises(SubctConfigError, match="pip install openvino"):
        resolve_engine("openvino")


def test_bf16_autocast_runs_when_asked_for() -> None:
    """The bf16 path itself (tiny input: cheap even where bf16 is emulated)."""
    convolution = torch.nn.Conv3d(1, 2, 3, padding=1)
    with torch.inference_mode(), autocast("cpu", "bf16"):
        out = convolution(torch.rand(1, 1, 8, 8, 8))
    assert out.dtype == torch.bfloat16
    with torch.inference_mode(), autocast("cpu", "fp32"):
        assert convolution(torch.rand(1, 1, 8, 8, 8)).dtype == torch.float32


def test_importing_subct_sets_a_passive_openmp_wait_policy() -> None:
    code = "import os, subct; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.strip()
    assert out == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # a user's own choice is kept
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.strip()
    assert out == "ACTIVE"


#: In a fresh process: the minor page faults of three forward + backward passes of a small
#: network on two 64³ patches (after one warm-up pass): large tensors freed and
#: allocated again, as a segmentation's steps do.
_STEP_FAULTS = """
import resource, torch
from subct.model.runtime import retain_freed_memory
print(retain_freed_memory())
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.InstanceNorm3d(8),
                          torch.nn.PReLU(), torch.nn.Conv3d(8, 4, 3, padding=1))
image = torch.rand(2, 1, 64, 64, 64)
def step():
    net.zero_grad(set_to_none=True)
    torch.log_softmax(net(image), 1).mean().backward()
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator (Linux only)")
def test_retained_memory_spares_the_page_faults_of_large_tensors() -> None:
    import os

    def faults(choice: str) -> tuple[str, int]:
        env = {**os.environ, "SUBCT_MALLOC": choice}
        out = subprocess.run([sys.executable, "-c", _STEP_FAULTS], capture_output=True,
                             text=True, env=env, check=True).stdout.split()
        return out[0], int(out[1])

    retained, retained_faults = faults("retain")
    system, system_faults = faults("system")
    assert (retained, system) == ("True", "False")
    # measured: 10-16 k faults retained, 90-160 k with glibc's default (fresh pages)
    assert retained_faults * 3 < system_faults


def test_malloc_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from subct.model.runtime import retain_freed_memory

    monkeypatch.setenv("SUBCT_MALLOC", "jemalloc")
    with pytest.raises(SubctConfigError, match="SUBCT_MALLOC"):
        retain_freed_memory()
