"""The MRI segmenter interface: every tool returns canonical labels on the MRI grid.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from subct.errors import SubctError, SubctInputError
from subct.image.resample import resample_to_geometry
from subct.image.volume import Geometry, Volume
from subct.labels.convert import convert_to_canonical

if TYPE_CHECKING:  # torch (meshnet) is heavy: import it only when a MeshNet runs
    pass


class SegmenterUnavailableError(SubctError):
    """An external segmentation tool is not installed and no precomputed output was given."""


class Segmenter(ABC):
    """Turns a T1 MRI into a canonical 17-structure label map on the MRI's grid."""

    #: registry name, e.g. ``"synthseg"``
    name: str = ""

    @abstractmethod
    def segment(self, mri: Volume) -> Volume:
        """Label map (int16 canonical FreeSurfer IDs) on ``mri``'s grid."""

    def check_available(self) -> None:
        """Raise :class:`SegmenterUnavailableError` when :meth:`segment` could not run
        (an external tool not installed and no precomputed output): checked before a
        batch starts, so a missing tool is not found after a minute of work. Built-in
        segmenters always can."""
        return None

    def describe(self) -> str:
        """One-line description for ``subct mri-seg --help`` and reports."""
        return (self.__doc__ or self.name).strip().splitlines()[0]


def canonical_on_grid(labels: Volume, target: Geometry, tool: str) -> Volume:
    """Convert a tool's label map to canonical IDs and put it on ``target`` (nearest)."""

    array = np.asarray(labels.array)
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.rint(array)
        if not np.allclose(rounded, array):
            raise SubctInputError(labels.path, "label map has non-integer values")
        array = rounded.astype(np.int32)
    canonical = convert_to_canonical(array, tool)
    volume = Volume(canonical, labels.affine, None, f"{tool} labels")
    if not volume.geometry.same_grid(target):
        volume = resample_to_geometry(volume, target, "nearest", fill_value=0)
    return Volume(np.asarray(volume.array, dtype=np.int16), target.affine.copy(), None,
                  f"{tool} labels (canonical)")
