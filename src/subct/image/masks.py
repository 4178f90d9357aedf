"""Masks on volumes: the largest connected component, head and brain masks.

The intracranial locator (skull ray casting) is :mod:`subct.image.intracranial`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from scipy import ndimage

if TYPE_CHECKING:  # torch is not imported here: ONNX Runtime inference runs without it
    pass


#: HU range treated as intracranial soft tissue (CSF ≈ 0–15, brain ≈ 25–45, blood ≤ 90)
#: by :func:`skull_strip_mask`; bone (> 300 HU) and air/fat (< −20 HU) fall outside.
BRAIN_HU_RANGE: tuple[float, float] = (-15.0, 100.0)


def connected_components(mask: NDArray[np.bool_], *, full_connectivity: bool = False
                         ) -> tuple[NDArray[np.int32], int]:
    """Label the connected components of ``mask`` (0 = background, 1..count).

    Face-connected (6 in 3D) by default, 26-connected (8 in 2D) with
    ``full_connectivity``. The one place subct labels components (tested by the layout
    rules); :func:`largest_component` builds on it.
    """
    mask = np.asarray(mask, dtype=bool)
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim) if full_connectivity \
        else None
    components, count = ndimage.label(mask, structure=structure)
    return np.asarray(components, dtype=np.int32), int(count)


def bounding_box(mask: NDArray[np.bool_], margin_voxels: int = 0
                 ) -> tuple[slice, ...] | None:
    """Index slices of the smallest box holding every True voxel of ``mask``, grown by
    ``margin_voxels`` on each side and clipped to the array; ``None`` when ``mask`` is
    empty. The one helper for "work on the part of the volume that matters"."""
    found = ndimage.find_objects(np.asarray(mask, dtype=np.uint8))
    if not found or found[0] is None:
        return None
    return tuple(slice(max(part.start - margin_voxels, 0), min(part.stop + margin_voxels, size))
                 for part, size in zip(found[0], np.shape(mask), strict=True))


def depth_inside_mm(mask: NDArray[np.bool_], spacing_mm: tuple[float, float, float]
                    ) -> NDArray[np.float64]:
    """Distance (mm) of every voxel of ``mask`` from the nearest voxel outside it (0
    outside): how deep inside the intracranial space a voxel lies. The pipeline computes
    it once per case for the in-painting and the hyperdense-region check."""
    return np.asarray(ndimage.distance_transform_edt(
        np.asarray(mask, dtype=bool), sampling=np.asarray(spacing_mm, dtype=np.float64)))


def largest_component(mask: NDArray[np.bool_], *, full_connectivity: bool = False,
                      min_fraction: float = 1.0) -> NDArray[np.bool_]:
    """The largest connected component of ``mask`` (the one helper for this job).

    Args:
        mask: boolean array (2D or 3D).
        full_connectivity: 26-connected in 3D (8 in 2D) when True, else face-connected
            (6 in 3D), scipy's default.
        min_fraction: also keep components with at least this fraction of the largest
            one's voxels (1.0: only the largest, plus any of exactly equal size).

    Returns:
        A new boolean array; all False when ``mask`` is empty.
    """
    mask = np.asarray(mask, dtype=bool)
    components, count = connected_components(mask, full_connectivity=full_connectivity)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = sizes >= min_fraction * sizes.max()
    keep[0] = False
    return np.asarray(keep[components])


def head_mask(image: sitk.Image) -> sitk.Image:
    """Binary head mask: Otsu foreground, largest component, holes filled (uint8).

    Works for CT in HU (air ≈ −1000 vs tissue) and for MRI (dark background).
    """
    foreground = sitk.OtsuThreshold(image, 0, 1, 128)
    components = sitk.ConnectedComponent(foreground)
    largest = sitk.RelabelComponent(components, sortByObjectSize=True) == 1
    filled = sitk.BinaryFillhole(largest)
    return sitk.Cast(filled, sitk.sitkUInt8)


def _dilated(mask: sitk.Image, margin_mm: float) -> sitk.Image:
    if margin_mm <= 0:
        return mask
    radius = [max(1, int(round(margin_mm / s))) for s in mask.GetSpacing()]
    return sitk.BinaryDilate(mask, radius, sitk.sitkBall)


def skull_strip_mask(
    hu: NDArray[np.floating], spacing_mm: tuple[float, float, float], erosion_mm: float = 3.0
) -> NDArray[np.bool_]:
    """Intracranial mask of a head CT in HU: soft-tissue threshold + largest component.

    Voxels in :data:`BRAIN_HU_RANGE` are eroded by ``erosion_mm`` (cuts the thin
    soft-tissue bridges between brain and scalp through the skull base and orbits), the
    largest connected component is kept, dilated back by the same distance inside the
    threshold mask, and holes are filled slice by slice (ventricles with blood, calcified
    plexus). Returns an all-False mask when nothing is in range.
    """
    tissue = (hu >= BRAIN_HU_RANGE[0]) & (hu <= BRAIN_HU_RANGE[1])
    radius = np.maximum(np.round(erosion_mm / np.asarray(spacing_mm)), 1).astype(int)
    structure = np.zeros(tuple(2 * r + 1 for r in radius), dtype=bool)
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    structure[sum((g / max(r, 1)) ** 2 for g, r in zip(grid, radius, strict=True)) <= 1.0] = True
    core = ndimage.binary_erosion(tissue, structure=structure)
    if not core.any():
        return np.zeros(hu.shape, dtype=bool)
    mask = ndimage.binary_dilation(largest_component(core), structure=structure) & tissue
    for index in range(mask.shape[2]):
        mask[:, :, index] = ndimage.binary_fill_holes(mask[:, :, index])
    return np.asarray(mask, dtype=bool)


def mask_edge_areas_mm2(mask: NDArray[np.bool_], affine: NDArray[np.float64]
                        ) -> tuple[float, float]:
    """Area (mm²) of ``mask`` on its grid's topmost and bottommost slices (the grid axis
    closest to superior)."""
    axes = affine[:3, :3]
    axis = int(np.argmax(np.abs(axes[2])))
    others = [axes[:, i] for i in range(3) if i != axis]
    pixel_mm2 = float(np.linalg.norm(np.cross(others[0], others[1])))
    first, last = (float(np.take(mask, index, axis=axis).sum()) * pixel_mm2
                   for index in (0, -1))
    return (last, first) if axes[2, axis] > 0 else (first, last)
