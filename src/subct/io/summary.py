"""What ``subct info`` prints about a volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from subct.image.volume import Volume


@dataclass(frozen=True)
class VolumeSummary:
    """What ``subct info`` reports about one loaded volume (all sizes in mm/voxels)."""

    path: str
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    orientation: str
    affine: list[list[float]]
    dtype: str
    minimum: float
    maximum: float
    description: str
    metadata: dict[str, Any]


def summarise_volume(volume: Volume) -> VolumeSummary:
    """Collect shape, spacing (mm), orientation, affine and intensity range of ``volume``."""
    return VolumeSummary(
        path="" if volume.path is None else str(volume.path),
        shape=volume.shape,
        spacing_mm=volume.spacing,
        orientation=volume.orientation,
        affine=[[float(value) for value in row] for row in volume.affine],
        dtype=str(volume.array.dtype),
        minimum=float(volume.array.min()),
        maximum=float(volume.array.max()),
        description=volume.description,
        metadata=dict(volume.metadata),
    )
