"""Lazy exports for package ``__init__`` files (PEP 562), the one helper they all use.

A stage package lists the names it offers and the module that defines each; a name is
imported on first use, so ``import subct.io`` stays cheap (no torch, no SimpleITK) and
package imports cannot form cycles::

    _EXPORTS = {"load_volume": "subct.io.readers"}
    __getattr__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package``: ``exports[name]`` is the module that
    defines ``name``; any other name is an AttributeError, as for a normal module."""

    def __getattr__(name: str) -> object:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
