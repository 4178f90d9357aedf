"""The CT network and what defines it: preprocessing (the one home of spacing and HU
window), architectures, losses, checkpoints, the precision/engine policy, ONNX graphs and
the registry of shipped models.

The names below are imported on first use (PEP 562), so importing the package stays
cheap and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from subct.lazy import lazy_exports

if TYPE_CHECKING:
    from subct.model.checkpoint import load_checkpoint, read_checkpoint_metadata
    from subct.model.networks import build_network
    from subct.model.registry import resolve_model_path
    from subct.model.runtime import cpu_info

_EXPORTS: dict[str, str] = {
    "build_network": "subct.model.networks",
    "cpu_info": "subct.model.runtime",
    "load_checkpoint": "subct.model.checkpoint",
    "read_checkpoint_metadata": "subct.model.checkpoint",
    "resolve_model_path": "subct.model.registry",
}

__all__ = [
    "build_network",
    "cpu_info",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "resolve_model_path",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
