"""The one bridge between :class:`~subct.image.volume.Volume` (RAS affine, x-y-z array order)
and SimpleITK images (LPS origin/spacing/direction, z-y-x array order).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from subct.image.volume import LPS_TO_RAS, Volume


def itk_geometry_to_affine(
    spacing: tuple[float, ...],
    origin: tuple[float, ...],
    direction: tuple[float, ...],
    dimension: int = 3,
) -> NDArray[np.float64]:
    """Build a RAS+ voxel→world affine from ITK's LPS+ spacing, origin and direction."""
    dim = min(dimension, 3)
    lps = np.eye(4)
    direction_matrix = np.asarray(direction, dtype=np.float64).reshape(dimension, dimension)
    lps[:dim, :dim] = direction_matrix[:dim, :dim] * np.asarray(spacing[:dim])[None, :]
    lps[:dim, 3] = np.asarray(origin[:dim])
    return LPS_TO_RAS @ lps


def affine_to_itk_geometry(
    affine: NDArray[np.float64],
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Split a RAS+ affine into ITK's LPS+ (spacing, origin, direction)."""
    lps = LPS_TO_RAS @ affine
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    direction = lps[:3, :3] / spacing[None, :]
    return (
        tuple(float(s) for s in spacing),
        tuple(float(o) for o in lps[:3, 3]),
        tuple(float(d) for d in direction.ravel()),
    )


def volume_to_sitk(volume: Volume, dtype: Any = np.float32) -> sitk.Image:
    """A :class:`Volume` as a SimpleITK image with the same world geometry (LPS inside)."""
    array = np.asarray(volume.array, dtype=dtype)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    spacing, origin, direction = affine_to_itk_geometry(volume.affine)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def sitk_to_array(image: sitk.Image) -> NDArray[Any]:
    """Voxel array of a SimpleITK image in (i, j, k) order, matching :func:`sitk_to_volume`."""
    return np.ascontiguousarray(np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)))


def sitk_to_volume(image: sitk.Image) -> Volume:
    """A SimpleITK image as a :class:`Volume` (RAS+ affine)."""
    affine = itk_geometry_to_affine(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    return Volume(sitk_to_array(image), affine)


def rigid_ras_to_itk(matrix_ras: NDArray[np.floating]) -> sitk.AffineTransform:
    """A 4×4 RAS+ world→world matrix as an ITK (LPS+) affine transform."""
    lps = LPS_TO_RAS @ np.asarray(matrix_ras, dtype=np.float64) @ LPS_TO_RAS
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(float(v) for v in lps[:3, :3].ravel()))
    transform.SetTranslation(tuple(float(v) for v in lps[:3, 3]))
    return transform


def _itk_image(array: NDArray[Any], affine: NDArray[np.float64]) -> Any:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    spacing, origin, direction = affine_to_itk_geometry(affine)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image
