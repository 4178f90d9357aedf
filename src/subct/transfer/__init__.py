"""Label transfer from MRI to CT: MRI segmenters (external tools, MeshNet, atlas), label
fusion (consensus, majority vote, STAPLE) and MRI-to-CT registration.

The names below are imported on first use (PEP 562), so importing the package stays
cheap and free of import cycles.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from subct.transfer.fusion import fuse
    from subct.transfer.registration import RegistrationConfig, register
    from subct.transfer.registry import available_segmenters, get_segmenter

_EXPORTS: dict[str, str] = {
    "RegistrationConfig": "subct.transfer.registration",
    "available_segmenters": "subct.transfer.registry",
    "fuse": "subct.transfer.fusion",
    "get_segmenter": "subct.transfer.registry",
    "register": "subct.transfer.registration",
}

__all__ = [
    "RegistrationConfig",
    "available_segmenters",
    "fuse",
    "get_segmenter",
    "register",
]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
