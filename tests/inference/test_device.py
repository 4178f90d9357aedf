"""Device names: validation, and one clear error where a device is not available."""

from __future__ import annotations

import sys

import pytest

from subct.errors import SubctConfigError
from subct.inference.config import parse_device
from subct.inference.model import resolve_device
from subct.model.runtime import resolve_precision


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_known_device_names_are_accepted(name: str) -> None:
    assert parse_device(name) == name


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu", "mps:0", ""])
def test_unknown_device_names_are_refused(name: str) -> None:
    with pytest.raises(SubctConfigError, match="use auto, cpu, cuda, cuda:N or mps"):
        parse_device(name)


def test_cpu_is_always_available() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")


@pytest.mark.skipif(sys.platform == "darwin", reason="Linux/Windows: no Metal backend")
def test_mps_off_a_mac_is_one_clear_error() -> None:
    with pytest.raises(SubctConfigError, match="Metal .MPS. backend is not available"):
        resolve_device("mps")


def test_mps_runs_in_fp32_unless_asked_otherwise() -> None:
    assert resolve_precision("auto", "mps") == "fp32"
    assert resolve_precision("fp32", "mps") == "fp32"
