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


def set_sitk_geometry(image: sitk.Image, affine: NDArray[np.float64]) -> sitk.Image:
    """Give ``image`` the world geometry of the RAS+ ``affine`` (spacing, origin and
    direction in ITK's LPS convention); returns the same image."""
    spacing, origin, direction = affine_to_itk_geometry(np.asarray(affine, dtype=np.float64))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def array_to_sitk(array: NDArray[Any], affine: NDArray[np.float64] | None = None
                  ) -> sitk.Image:
    """A voxel array in (i, j, k) order as a SimpleITK image (ITK keeps (k, j, i)).

    With ``affine`` the image gets that world geometry; without, ITK's defaults (for
    filters where only the voxel values matter, such as STAPLE).
    """
    values = np.asarray(array)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(values, (2, 1, 0))))
    return set_sitk_geometry(image, affine) if affine is not None else image


def volume_to_sitk(volume: Volume, dtype: Any = np.float32) -> sitk.Image:
    """A :class:`Volume` as a SimpleITK image with the same world geometry (LPS inside)."""
    return array_to_sitk(np.asarray(volume.array, dtype=dtype), volume.affine)


def empty_sitk_image(shape: tuple[int, ...], affine: NDArray[np.float64],
                     pixel_type: int = sitk.sitkUInt8) -> sitk.Image:
    """A zero image of ``shape`` (i, j, k voxels) on the grid of ``affine`` (e.g. the
    reference grid of a resampling)."""
    return set_sitk_geometry(sitk.Image([int(s) for s in shape], pixel_type), affine)


def sitk_to_array(image: sitk.Image, *, contiguous: bool = True) -> NDArray[Any]:
    """Voxel array of a SimpleITK image in (i, j, k) order, matching :func:`sitk_to_volume`.

    Vector images keep their components last: (i, j, k, component). ``contiguous=False``
    returns a transposed view (no copy) of ITK's array.
    """
    values = sitk.GetArrayFromImage(image)
    spatial = image.GetDimension()
    order = tuple(range(spatial))[::-1] + tuple(range(spatial, values.ndim))
    values = np.transpose(values, order)
    return np.ascontiguousarray(values) if contiguous else values


def sitk_geometry(image: sitk.Image) -> NDArray[np.float64]:
    """The RAS+ affine of a SimpleITK image (any dimension ≤ 3 embedded in 3D)."""
    return itk_geometry_to_affine(image.GetSpacing(), image.GetOrigin(), image.GetDirection(),
                                  image.GetDimension())


def sitk_to_volume(image: sitk.Image) -> Volume:
    """A SimpleITK image as a :class:`Volume` (RAS+ affine)."""
    return Volume(sitk_to_array(image), sitk_geometry(image))


def rigid_ras_to_itk(matrix_ras: NDArray[np.floating]) -> sitk.AffineTransform:
    """A 4×4 RAS+ world→world matrix as an ITK (LPS+) affine transform."""
    lps = LPS_TO_RAS @ np.asarray(matrix_ras, dtype=np.float64) @ LPS_TO_RAS
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(float(v) for v in lps[:3, :3].ravel()))
    transform.SetTranslation(tuple(float(v) for v in lps[:3, 3]))
    return transform
