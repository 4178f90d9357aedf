"""Resampling volumes between voxel grids, honouring full (oblique) affines.

All functions work in world coordinates (RAS+, mm): an output voxel takes the
value of the input at the same world position, so the result overlays the input
in any viewer. Interpolation is ``"linear"`` for images (CT in HU) and
``"nearest"`` for label maps (labels are never blended).

Two engines do the same job: SimpleITK (multi-threaded, used when both grids have
perpendicular axes, i.e. every scanner grid) and :func:`scipy.ndimage.affine_transform`
(any affine, including sheared ones). Reorientation to axis codes (``"RAS"``,
``"LIA"``...) is exact and needs no interpolation: see :func:`reorient`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.image.sitk_bridge import affine_to_itk_geometry, array_to_sitk, sitk_to_array
from subct.image.volume import Geometry, Volume, is_orthogonal_affine

Interpolation = Literal["nearest", "linear"] | int


_SCIPY_ORDER = {"nearest": 0, "linear": 1}


def _order(interpolation: Interpolation) -> int:
    if isinstance(interpolation, str):
        if interpolation not in _SCIPY_ORDER:
            raise ValueError(
                f"interpolation must be 'nearest', 'linear' or 0..5, got {interpolation!r}"
            )
        return _SCIPY_ORDER[interpolation]
    if not 0 <= int(interpolation) <= 5:
        raise ValueError(f"spline order must be 0..5, got {interpolation}")
    return int(interpolation)


def _fill(volume: Volume, fill_value: float | None) -> float:
    """Background for voxels outside the input: its lowest value (air in CT, 0 in labels)."""
    return float(volume.array.min()) if fill_value is None else float(fill_value)


def _output_dtype(array: NDArray[Any], order: int) -> np.dtype[Any]:
    """Keep the input type for nearest-neighbour, use float32 for interpolated values."""
    if order == 0 or np.issubdtype(array.dtype, np.floating):
        return array.dtype
    return np.dtype(np.float32)


def antialias_sigma_voxels(source_spacing_mm: Any, target_spacing_mm: Any
                           ) -> NDArray[np.float64]:
    """Gaussian σ (in source voxels, per source axis) to smooth with before sampling a
    grid of ``target_spacing_mm`` from one of ``source_spacing_mm``.

    σ = (factor − 1)/2 voxels where the target is more than 1.2× coarser, else 0: thin
    noisy slices then do not alias into the coarser grid. The one anti-aliasing rule of
    subct, used by training (:func:`resample_to_geometry` with ``antialias``) and by
    inference (the deep-brain crop).
    """
    factors = np.asarray(target_spacing_mm, dtype=np.float64) / np.asarray(
        source_spacing_mm, dtype=np.float64)
    return np.where(factors > 1.2, (factors - 1.0) / 2.0, 0.0)


def smooth_for_downsampling(array: NDArray[Any], source_spacing_mm: Any,
                            target_spacing_mm: Any) -> NDArray[Any]:
    """``array`` smoothed by :func:`antialias_sigma_voxels` (unchanged when σ is 0)."""
    sigma = antialias_sigma_voxels(source_spacing_mm, target_spacing_mm)
    if np.any(sigma > 0):
        return np.asarray(ndimage.gaussian_filter(array, sigma=sigma, mode="nearest"))
    return array


def resample_to_geometry(
    volume: Volume,
    geometry: Geometry,
    interpolation: Interpolation = "linear",
    fill_value: float | None = None,
    engine: Literal["auto", "simpleitk", "scipy"] = "auto",
    antialias: bool = False,
) -> Volume:
    """Resample ``volume`` onto the voxel grid ``geometry`` (same world positions).

    Args:
        volume: the image to resample.
        geometry: target grid (shape in voxels, RAS+ affine in mm).
        interpolation: ``"nearest"`` (labels; keeps the dtype), ``"linear"`` (images;
            float32 output for integer input) or a spline order 0..5 (scipy engine).
        fill_value: value for target voxels outside the input; by default the
            input's minimum (air for CT in HU, background 0 for labels).
        engine: ``"auto"`` uses SimpleITK when both grids are orthogonal and the
            interpolation is nearest/linear, else scipy. Both give the same values.
        antialias: smooth a scalar image first where the target grid is coarser
            (:func:`smooth_for_downsampling`); never applied to nearest-neighbour labels.

    Returns:
        A new volume on ``geometry``, with the input's description and metadata.
    """
    order = _order(interpolation)
    fill = _fill(volume, fill_value)
    if antialias and order > 0:
        target_spacing = np.sqrt((np.asarray(geometry.affine)[:3, :3] ** 2).sum(axis=0))
        smoothed = smooth_for_downsampling(np.asarray(volume.array, dtype=np.float32),
                                           volume.spacing, target_spacing)
        volume = volume.with_array(smoothed)
    orthogonal = is_orthogonal_affine(volume.affine) and is_orthogonal_affine(geometry.affine)
    use_itk = engine == "simpleitk" or (engine == "auto" and orthogonal and order <= 1)
    if use_itk:
        if not orthogonal:
            raise ValueError("the SimpleITK engine needs grids with perpendicular axes")
        array = _resample_simpleitk(volume, geometry, order, fill)
    else:
        array = _resample_scipy(volume, geometry, order, fill)
    return Volume(
        array=array,
        affine=np.asarray(geometry.affine, dtype=np.float64).copy(),
        path=None,
        description=volume.description,
        metadata=dict(volume.metadata),
    )


def _resample_scipy(volume: Volume, geometry: Geometry, order: int, fill: float) -> NDArray[Any]:
    # Output voxel v maps to input voxel inv(A_in) @ A_out @ v.
    target_to_source = np.linalg.inv(volume.affine) @ np.asarray(geometry.affine)
    dtype = _output_dtype(volume.array, order)
    source = volume.array if order == 0 else volume.array.astype(np.float32, copy=False)
    result = ndimage.affine_transform(
        source,
        target_to_source,
        output_shape=geometry.shape,
        output=dtype if order == 0 else np.float32,
        order=order,
        mode="constant",
        cval=fill,
        prefilter=order > 1,
    )
    return np.asarray(result).astype(dtype, copy=False)


def _resample_simpleitk(
    volume: Volume, geometry: Geometry, order: int, fill: float
) -> NDArray[Any]:
    import SimpleITK as sitk

    dtype = _output_dtype(volume.array, order)
    source = volume.array
    if source.dtype == np.bool_:
        source = source.astype(np.uint8)
    if order == 1 and not np.issubdtype(source.dtype, np.floating):
        source = source.astype(np.float32)
    image = array_to_sitk(source, volume.affine)
    spacing, origin, direction = affine_to_itk_geometry(np.asarray(geometry.affine))
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(size) for size in geometry.shape])
    resampler.SetOutputSpacing(spacing)
    resampler.SetOutputOrigin(origin)
    resampler.SetOutputDirection(direction)
    resampler.SetInterpolator(sitk.sitkNearestNeighbor if order == 0 else sitk.sitkLinear)
    resampler.SetDefaultPixelValue(fill)
    resampler.SetOutputPixelType(image.GetPixelID())
    return sitk_to_array(resampler.Execute(image)).astype(dtype, copy=False)


def geometry_with_spacing(
    geometry: Geometry, spacing_mm: float | tuple[float, float, float]
) -> Geometry:
    """The grid covering the same field of view as ``geometry`` with new voxel sizes (mm).

    Axis directions are kept; the outer edge of the first voxel stays where it was and
    the number of voxels is rounded so the field of view is covered
    (``ceil(extent / spacing - 0.01)``).
    """
    new_spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,))
    if np.any(new_spacing <= 0):
        raise ValueError(f"spacing must be positive, got {spacing_mm}")
    old_spacing = np.asarray(geometry.spacing)
    extent = old_spacing * np.asarray(geometry.shape)
    shape = tuple(max(1, math.ceil(e / s - 0.01)) for e, s in zip(extent, new_spacing, strict=True))
    directions = geometry.affine[:3, :3] / old_spacing[None, :]
    affine = np.eye(4)
    affine[:3, :3] = directions * new_spacing[None, :]
    corner = geometry.affine[:3, 3] - directions @ (old_spacing / 2)
    affine[:3, 3] = corner + directions @ (new_spacing / 2)
    return Geometry((int(shape[0]), int(shape[1]), int(shape[2])), affine)


def resample_to_spacing(
    volume: Volume,
    spacing_mm: float | tuple[float, float, float],
    interpolation: Interpolation = "linear",
    fill_value: float | None = None,
    antialias: bool = False,
) -> Volume:
    """Resample ``volume`` to new voxel sizes (mm) over the same field of view and axes."""
    return resample_to_geometry(
        volume, geometry_with_spacing(volume.geometry, spacing_mm), interpolation, fill_value,
        antialias=antialias,
    )


def conformed_geometry(
    geometry: Geometry,
    shape: tuple[int, int, int] = (256, 256, 256),
    voxel_size_mm: float = 1.0,
    orientation: str = "LIA",
) -> Geometry:
    """A FreeSurfer-style "conformed" grid centred on ``geometry``'s field of view.

    The default is FreeSurfer's: 256³ voxels of 1 mm, axes Left, Inferior, Anterior
    (the grid MRI networks trained on conformed T1s expect).
    """
    import nibabel as nib

    codes = nib.orientations.axcodes2ornt(tuple(orientation))
    axes = np.zeros((3, 3))
    for voxel_axis, (world_axis, flip) in enumerate(codes):
        axes[int(world_axis), voxel_axis] = flip * voxel_size_mm
    centre_voxel = (np.asarray(geometry.shape, dtype=np.float64) - 1) / 2
    centre_world = geometry.affine[:3, :3] @ centre_voxel + geometry.affine[:3, 3]
    affine = np.eye(4)
    affine[:3, :3] = axes
    affine[:3, 3] = centre_world - axes @ ((np.asarray(shape, dtype=np.float64) - 1) / 2)
    return Geometry((int(shape[0]), int(shape[1]), int(shape[2])), affine)


def reorient(volume: Volume, axcodes: str = "RAS") -> Volume:
    """The same voxels with array axes permuted/flipped to ``axcodes`` (exact, no interpolation)."""
    return volume.reoriented(axcodes)


def to_ras(volume: Volume) -> Volume:
    """Exact reorientation to RAS voxel axes (i → Right, j → Anterior, k → Superior)."""
    return volume.reoriented("RAS")
