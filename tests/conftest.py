"""Shared test fixtures.

Tests that read the real data in ``../shared/data`` use the ``shared_data`` fixture:
it skips when the folder is absent on a developer's machine, and fails under
``CI=true`` (where the folder must be present). Every test that uses it, directly or
through another fixture, is marked ``shared_data`` automatically (``-m "not
shared_data"`` deselects them).

The session runs at fp32 (``SUBCT_PRECISION=fp32``) so that no test depends on which
CPU it runs on: on CPUs without native bf16, bf16 is emulated and ~70× slower. The
bf16 path itself is tested explicitly on tiny inputs (``tests/model/test_runtime.py``).
Derived ONNX graphs go to a per-session cache folder, never to the user's cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from subct.paths import shared_data_dir

os.environ["SUBCT_PRECISION"] = "fp32"
os.environ.pop("SUBCT_BACKEND", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs the shared data (fixture used directly or indirectly)."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(scope="session", autouse=True)
def _private_graph_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Exported ONNX graphs go to a temporary cache for this session."""
    os.environ["SUBCT_CACHE_DIR"] = str(tmp_path_factory.mktemp("subct-cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder (``SUBCT_SHARED_DATA`` or ``../shared/data``)."""
    folder = shared_data_dir()
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data folder {folder} is missing under CI")
        pytest.skip(f"shared data folder {folder} is absent")
    return folder
