"""Shared test fixtures.

Tests that read the real data in ``../shared/data`` use the ``shared_data`` fixture:
it skips when the folder is absent on a developer's machine, and fails under
``CI=true`` (where the folder must be present).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from subct.paths import shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder (``SUBCT_SHARED_DATA`` or ``../shared/data``)."""
    folder = shared_data_dir()
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data folder {folder} is missing under CI")
        pytest.skip(f"shared data folder {folder} is absent")
    return folder
