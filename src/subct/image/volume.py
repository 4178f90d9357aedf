"""The in-memory image: an array with its voxel-to-world (RAS, mm) geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

#: Converts between RAS+ (NIfTI, nibabel) and LPS+ (ITK, DICOM) world coordinates.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    """The voxel grid of a volume: array shape and voxel-to-world (RAS+, mm) affine."""

    shape: tuple[int, int, int]
    affine: NDArray[np.float64]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm."""
        sizes = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (float(sizes[0]), float(sizes[1]), float(sizes[2]))

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"``, ``"LIA"`` or ``"LPS"`` (closest for oblique grids)."""
        return "".join(nib.aff2axcodes(self.affine))

    def same_grid(self, other: Geometry, atol_mm: float = 1e-3) -> bool:
        """True when both grids have the same shape and affines equal within ``atol_mm``."""
        return self.shape == other.shape and bool(
            np.allclose(self.affine, other.affine, atol=atol_mm)
        )


@dataclass(frozen=True)
class Volume:
    """A 3D image: voxel array, voxel→world affine (RAS+, mm) and where it came from.

    Attributes:
        array: voxel values, shape (I, J, K), in the source file's voxel order.
        affine: 4×4 matrix mapping voxel indices to RAS+ world coordinates in mm.
        path: the file or folder it was read from (``None`` for computed volumes).
        description: human-readable provenance, e.g. which DICOM series was picked.
        metadata: extra facts from the source (series description, tilt, ...).
    """

    array: NDArray[Any]
    affine: NDArray[np.float64]
    path: Path | None = None
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume array must be 3D, got shape {self.array.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"Volume affine must be 4x4, got {self.affine.shape}")

    @property
    def geometry(self) -> Geometry:
        """Shape and affine of the voxel grid."""
        shape = self.array.shape
        return Geometry((int(shape[0]), int(shape[1]), int(shape[2])), self.affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape in voxels."""
        return self.geometry.shape

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm."""
        return self.geometry.spacing

    @property
    def orientation(self) -> str:
        """Axis codes of the voxel axes, e.g. ``"LIA"`` for FreeSurfer-conformed volumes."""
        return self.geometry.orientation

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³."""
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def with_array(self, array: NDArray[Any], description: str | None = None) -> Volume:
        """A new volume on the same grid with different voxel values (e.g. labels)."""
        return Volume(
            array=array,
            affine=self.affine.copy(),
            path=None,
            description=self.description if description is None else description,
            metadata=dict(self.metadata),
        )

    def reoriented(self, axcodes: str = "RAS") -> Volume:
        """The same image with its voxel axes permuted/flipped to ``axcodes``.

        This is exact (no interpolation): only the array axes are reordered and the
        affine is updated so that each voxel keeps its world position.
        """
        view = self.reoriented_view(axcodes)
        return Volume(np.ascontiguousarray(view.array), view.affine, self.path,
                      self.description, dict(self.metadata))

    def reoriented_view(self, axcodes: str = "RAS") -> Volume:
        """Like :meth:`reoriented`, but the array is a strided *view* of this one (no copy).

        For code that reads a few slices or a subsampled grid of a large image (a
        512 × 512 × 150 CT is 79 MB as int16): copying it to make it contiguous costs
        more than the reading. Do not write into the view's array.
        """
        current = nib.orientations.io_orientation(self.affine)
        target = nib.orientations.axcodes2ornt(tuple(axcodes))
        transform = nib.orientations.ornt_transform(current, target)
        array = nib.orientations.apply_orientation(self.array, transform)
        affine = self.affine @ nib.orientations.inv_ornt_aff(transform, self.array.shape)
        return Volume(array, affine, self.path, self.description, dict(self.metadata))


def is_orthogonal_affine(affine: NDArray[np.float64], tolerance: float = 1e-4) -> bool:
    """True when the voxel axes of ``affine`` are mutually perpendicular (no shear)."""
    columns = affine[:3, :3] / np.sqrt((affine[:3, :3] ** 2).sum(axis=0))[None, :]
    return bool(np.allclose(columns.T @ columns, np.eye(3), atol=tolerance))
