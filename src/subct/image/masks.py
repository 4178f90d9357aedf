"""Masks on volumes: the largest connected component, head and brain masks, and the
intracranial locator that places the network's crop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from scipy import ndimage

from subct.errors import SubctInputError
from subct.image.volume import Volume

if TYPE_CHECKING:  # torch is not imported here: ONNX Runtime inference runs without it
    pass


#: HU range treated as intracranial soft tissue (CSF ≈ 0–15, brain ≈ 25–45, blood ≤ 90)
#: by :func:`skull_strip_mask`; bone (> 300 HU) and air/fat (< −20 HU) fall outside.
BRAIN_HU_RANGE: tuple[float, float] = (-15.0, 100.0)


@dataclass
class IntracranialLocation:
    """Where the brain is in a head CT, found from HU thresholds alone.

    Attributes:
        centroid_ras_mm: centre of the intracranial mask (world RAS, mm).
        intracranial_volume_mm3: volume of the skull-enclosed soft tissue + CSF, in mm³
            (None when no closed skull was found; the centroid then comes from the head).
        head_extent_mm: size of the head mask's bounding box along R, A, S (mm).
        method: ``skull`` (skull-enclosed), ``soft-tissue`` (no skull found; largest
            soft-tissue blob) or ``head`` (fallback: whole head mask).
        histogram: fractions of head voxels that are air (< −500 HU), fat (−200..−15),
            soft tissue (−15..100) and bone (> 250); brain HU mode inside the skull.
    """

    centroid_ras_mm: NDArray[np.float64]
    intracranial_volume_mm3: float | None
    head_extent_mm: tuple[float, float, float]
    method: str
    histogram: dict[str, float] = field(default_factory=dict)


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
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim) if full_connectivity \
        else None
    components, count = ndimage.label(mask, structure=structure)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = sizes >= min_fraction * sizes.max()
    keep[0] = False
    return np.asarray(keep[components])


def _ball(radius_voxels: NDArray[np.int64]) -> NDArray[np.bool_]:
    rx, ry, rz = (max(int(r), 0) for r in radius_voxels)
    x, y, z = np.ogrid[-rx:rx + 1, -ry:ry + 1, -rz:rz + 1]
    return np.asarray((x / max(rx, 0.5)) ** 2 + (y / max(ry, 0.5)) ** 2
                      + (z / max(rz, 0.5)) ** 2 <= 1.0)


def locate_intracranial(volume: Volume, hu_offset: float = 0.0,
                        working_spacing_mm: float = 2.0) -> IntracranialLocation:
    """Find the skull-enclosed intracranial space of a head CT and its centroid.

    Works on the RAS-reoriented image subsampled to about ``working_spacing_mm``:
    the head is the largest blob above −500 HU; bone is > 250 HU; the holes of the
    (gap-closed) bone mask in axial, coronal or sagittal planes that hold soft tissue
    (−15..100 HU) are intracranial; after a 4 mm erosion the largest 3D component is
    kept (this drops orbits, sinuses and neck) and dilated back. Tilted or oblique
    acquisitions are fine: only world coordinates (affine) are used for the centroid.

    Raises:
        SubctInputError: nothing above −500 HU (no head in the image).
    """
    ras = volume.reoriented_view("RAS")  # only a subsampled copy is made below
    spacing = np.asarray(ras.spacing)
    step = np.maximum(1, np.round(working_spacing_mm / spacing)).astype(int)
    hu = np.asarray(ras.array[::step[0], ::step[1], ::step[2]], dtype=np.float32)
    if hu_offset:
        hu = hu - np.float32(hu_offset)
    sub_affine = ras.affine.copy()
    sub_affine[:3, :3] = ras.affine[:3, :3] * step[None, :]
    sub_spacing = spacing * step
    voxel_mm3 = float(np.prod(sub_spacing))

    head = hu > -500.0
    if not head.any():
        raise SubctInputError(volume.path, "no voxel above -500 HU: the image holds no head")
    head = largest_component(head)
    head = ndimage.binary_fill_holes(head)
    head_idx = np.argwhere(head)
    extent = (head_idx.max(axis=0) - head_idx.min(axis=0) + 1) * sub_spacing
    head_hu = hu[head]
    bone = (hu > 250.0) & head
    soft = (hu > -15.0) & (hu < 100.0) & head
    histogram = {
        "air_fraction_of_image": float(np.mean(hu < -500.0)),
        "fat_fraction_of_head": float(np.mean((head_hu > -200) & (head_hu < -15))),
        "soft_tissue_fraction_of_head": float(np.mean((head_hu >= -15) & (head_hu < 100))),
        "bone_fraction_of_head": float(np.mean(head_hu > 250)),
    }

    # A voxel is enclosed when the (gap-closed) bone surrounds it in an axial, coronal
    # OR sagittal plane: at the skull base and vertex axial rings are often open
    # (foramina, thin or partial-volumed bone) while the other planes close, and using
    # axial rings alone pulled the centroid 25-60 mm upwards on synthetic heads.
    enclosed = np.zeros_like(bone)
    closed_bone = bone
    for axis in (2, 1, 0):
        closed = ndimage.binary_closing(
            bone, structure=np.expand_dims(np.ones((3, 3), dtype=bool), axis), iterations=2)
        if axis == 2:
            closed_bone = closed
        for k in range(bone.shape[axis]):
            plane = np.take(closed, k, axis=axis)
            if plane.any():
                index: list[slice | int] = [slice(None)] * 3
                index[axis] = k
                enclosed[tuple(index)] |= ndimage.binary_fill_holes(plane)
    candidate = enclosed & soft & ~closed_bone
    radius = np.maximum(1, np.round(4.0 / sub_spacing)).astype(np.int64)
    method = "skull"
    intracranial = np.zeros_like(candidate)
    if candidate.sum() * voxel_mm3 > 50_000.0:
        core = largest_component(ndimage.binary_erosion(candidate, structure=_ball(radius)))
        intracranial = ndimage.binary_dilation(core, structure=_ball(radius)) & candidate
    if intracranial.sum() * voxel_mm3 < 50_000.0:
        method = "soft-tissue"
        core = largest_component(ndimage.binary_erosion(soft, structure=_ball(radius)))
        intracranial = ndimage.binary_dilation(core, structure=_ball(radius)) & soft
    if intracranial.sum() * voxel_mm3 < 50_000.0:
        method = "head"
        intracranial = head
    icv = float(intracranial.sum() * voxel_mm3) if method == "skull" else None
    inside = hu[intracranial & soft] if method != "head" else hu[soft]
    if inside.size:
        counts, edges = np.histogram(inside, bins=np.arange(-15.0, 101.0, 2.0))
        histogram["brain_hu_mode"] = float(edges[int(np.argmax(counts))] + 1.0)
        histogram["brain_density_fraction"] = float(np.mean((inside >= 20.0) & (inside <= 50.0)))
    centroid_index = np.argwhere(intracranial).mean(axis=0)
    centroid = sub_affine[:3, :3] @ centroid_index + sub_affine[:3, 3]
    return IntracranialLocation(
        centroid_ras_mm=np.asarray(centroid, dtype=np.float64),
        intracranial_volume_mm3=icv,
        head_extent_mm=(float(extent[0]), float(extent[1]), float(extent[2])),
        method=method,
        histogram=histogram,
    )


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
