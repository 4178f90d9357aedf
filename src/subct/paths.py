"""Where subct finds data that is not part of the package.

``SUBCT_SHARED_DATA`` points at the shared data folder (real label maps, CTs, MRI
networks) used by tests and benchmarks; by default it is ``../shared/data`` next to
the repository checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """Return the shared data folder (may not exist on a user's machine)."""
    configured = os.environ.get("SUBCT_SHARED_DATA")
    if configured:
        return Path(configured).expanduser().resolve()
    return (REPOSITORY_ROOT.parent / "shared" / "data").resolve()
