"""MeshNet's default engine follows the free memory (issue 26: ≤ 90 s CPU on 2 cores)."""

from __future__ import annotations

import pytest

from subct.transfer import meshnet


def test_default_backend_is_openvino_only_with_enough_free_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meshnet, "available_memory_gb", lambda: 64.0)
    assert meshnet.default_backend("cpu") == "openvino"
    monkeypatch.setattr(meshnet, "available_memory_gb", lambda: 6.0)
    assert meshnet.default_backend("cpu") == "torch"  # the leaner engine on a small machine
    assert meshnet.default_backend("cuda") == "torch"


def test_available_memory_is_read_from_the_system() -> None:
    assert meshnet.available_memory_gb() > 0.5  # /proc/meminfo on Linux
