"""Label transfer from MRI to CT: MRI segmenters (external tools, MeshNet, atlas), label
fusion (consensus, majority vote, STAPLE) and MRI-to-CT registration.

The names below are imported on first use (PEP 562), so importing the package stays
cheap and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from subct.lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _EXPORTS)
