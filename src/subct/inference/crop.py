"""The deep-brain crop: from the native CT grid to the network's RAS grid and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.image.resample import smooth_for_downsampling
from subct.image.volume import Geometry, Volume
from subct.io.hounsfield import OUTSIDE_FOV_HU


@dataclass(frozen=True)
class CropGrid:
    """The axis-aligned RAS grid of the deep-brain box the network runs on."""

    shape: tuple[int, int, int]
    affine: NDArray[np.float64]

    @property
    def geometry(self) -> Geometry:
        """Shape + affine as a :class:`~subct.image.volume.Geometry`."""
        return Geometry(self.shape, self.affine)


def crop_grid(center_ras_mm: NDArray[np.float64], spacing_mm: tuple[float, float, float],
              size_mm: tuple[float, float, float], divisor: int,
              rotation: NDArray[np.float64] | None = None) -> CropGrid:
    """RAS grid of ``size_mm`` centred on ``center_ras_mm``, axis-aligned or turned by
    ``rotation`` (3×3, world from grid axes; e.g. to follow the head's pitch).

    The number of voxels per axis is rounded up to a multiple of ``divisor`` so the
    network (pooling levels) accepts it.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    turn = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    counts = np.ceil(np.asarray(size_mm) / spacing / divisor).astype(int) * divisor
    affine = np.eye(4)
    affine[:3, :3] = turn @ np.diag(spacing)
    affine[:3, 3] = np.asarray(center_ras_mm, dtype=np.float64) \
        - turn @ (spacing * (counts - 1) / 2.0)
    return CropGrid((int(counts[0]), int(counts[1]), int(counts[2])), affine)


def pitch_rotation(degrees: float) -> NDArray[np.float64]:
    """Rotation about the left-right (x) axis by ``degrees`` (nose up positive)."""
    angle = np.deg2rad(degrees)
    return np.array([[1.0, 0.0, 0.0],
                     [0.0, np.cos(angle), -np.sin(angle)],
                     [0.0, np.sin(angle), np.cos(angle)]])


def _index_bbox(source_to_target: NDArray[Any], source_lo: NDArray[Any],
                source_hi: NDArray[Any], target_shape: tuple[int, int, int],
                margin: int) -> tuple[slice, slice, slice] | None:
    """Target-index bounding box of a source-index box mapped by a 4×4 matrix."""
    corners = np.array([[x, y, z, 1.0] for x in (source_lo[0], source_hi[0])
                        for y in (source_lo[1], source_hi[1])
                        for z in (source_lo[2], source_hi[2])])
    mapped = (source_to_target @ corners.T)[:3]
    low = np.floor(mapped.min(axis=1)).astype(int) - margin
    high = np.ceil(mapped.max(axis=1)).astype(int) + margin + 1
    low = np.maximum(low, 0)
    high = np.minimum(high, np.asarray(target_shape))
    if np.any(high <= low):
        return None
    return (slice(int(low[0]), int(high[0])), slice(int(low[1]), int(high[1])),
            slice(int(low[2]), int(high[2])))


def resample_to_crop(hu: Volume, grid: CropGrid, hu_offset: float = 0.0) -> NDArray[np.float32]:
    """HU on the crop grid, sampled from the native grid through the full affines.

    Only the native sub-block under the box is touched. When the box is coarser than
    the native voxels, the block is smoothed first (Gaussian, σ = (factor − 1)/2 voxels
    per native axis) so thin noisy slices do not alias. Outside the scanned field of
    view the box gets :data:`OUTSIDE_FOV_HU`.
    """
    crop_to_native = np.linalg.inv(hu.affine) @ grid.affine
    shape = np.asarray(grid.shape)
    block = _index_bbox(crop_to_native, np.zeros(3), shape - 1.0, hu.shape, margin=2)
    if block is None:
        return np.full(grid.shape, OUTSIDE_FOV_HU, dtype=np.float32)
    sub = np.asarray(hu.array[block], dtype=np.float32)
    if hu_offset:
        sub = sub - np.float32(hu_offset)
    crop_spacing = float(np.min(np.sqrt((grid.affine[:3, :3] ** 2).sum(axis=0))))
    sub = smooth_for_downsampling(sub, hu.spacing, crop_spacing)
    start = np.array([block[0].start, block[1].start, block[2].start], dtype=np.float64)
    matrix = crop_to_native[:3, :3]
    offset = crop_to_native[:3, 3] - start
    out = ndimage.affine_transform(sub, matrix, offset=offset, output_shape=grid.shape,
                                   order=1, mode="constant", cval=OUTSIDE_FOV_HU,
                                   prefilter=False)
    return out.astype(np.float32, copy=False)


def labels_to_native(crop_indices: NDArray[np.integer], grid: CropGrid, native: Geometry,
                     num_classes: int, probabilities: NDArray[np.float32] | None = None
                     ) -> NDArray[np.int16]:
    """Class indices on the crop grid → class indices on the native grid.

    Linear interpolation of the one-hot label map followed by argmax: every native voxel
    inside the labelled part of the box is mapped (full affines) to continuous crop
    coordinates; where its 8 surrounding crop voxels agree it simply takes their label,
    and only near boundaries are the trilinear weights of each candidate label summed
    and the heaviest label (background included) chosen. This gives smooth boundaries on
    finer native grids, no half-voxel shift and no flipped grid, at the cost of one
    label lookup per native voxel. Exact ties (common when grids are offset by exactly
    half a voxel) are broken by the interpolated posterior when ``probabilities``
    (C, X, Y, Z on the crop grid) are given, so mirrored inputs give mirrored labels.
    """
    labels = np.asarray(crop_indices, dtype=np.int16)
    result = np.zeros(native.shape, dtype=np.int16)
    found = ndimage.find_objects((labels > 0).astype(np.int8))
    if not found or found[0] is None:
        return result
    low = np.array([s.start for s in found[0]], dtype=np.float64) - 1.0
    high = np.array([s.stop for s in found[0]], dtype=np.float64)
    native_to_crop = np.linalg.inv(grid.affine) @ native.affine
    block = _index_bbox(np.linalg.inv(native_to_crop), low, high, native.shape, margin=1)
    if block is None:
        return result
    # Crop padded by one background voxel on every side so corner look-ups never leave it.
    padded = np.pad(labels, 1)
    shape = np.asarray(padded.shape)
    uniform = np.ones(padded.shape, dtype=bool)
    for offset in ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)):
        shifted = np.pad(padded, [(0, o) for o in offset])[offset[0]:, offset[1]:, offset[2]:]
        uniform &= shifted == padded
    grids = np.meshgrid(*(np.arange(s.start, s.stop, dtype=np.float32) for s in block),
                        indexing="ij", copy=False)
    matrix = native_to_crop.astype(np.float32)
    coords = [matrix[axis, 0] * grids[0] + matrix[axis, 1] * grids[1]
              + matrix[axis, 2] * grids[2] + (matrix[axis, 3] + np.float32(1.0))
              for axis in range(3)]  # +1: padding
    inside = np.ones(coords[0].shape, dtype=bool)
    floors = []
    for axis in range(3):
        inside &= (coords[axis] >= 0.0) & (coords[axis] < shape[axis] - 1)
        floors.append(np.floor(coords[axis]).astype(np.int64))
    for axis in range(3):
        np.clip(floors[axis], 0, shape[axis] - 2, out=floors[axis])
    flat = np.ravel_multi_index((floors[0], floors[1], floors[2]), padded.shape)
    out = np.where(inside, padded.ravel()[flat], 0).astype(np.int16)
    edge = inside & ~uniform.ravel()[flat]
    if edge.any():
        out[edge] = _boundary_labels([coords[axis][edge] for axis in range(3)],
                                     [floors[axis][edge] for axis in range(3)], padded,
                                     probabilities)
    result[block] = out
    return result


def _boundary_labels(coords: list[NDArray[np.float32]], base: list[NDArray[np.int64]],
                     padded: NDArray[np.int16], probabilities: NDArray[np.float32] | None
                     ) -> NDArray[np.int16]:
    """Labels of native voxels whose 8 surrounding crop voxels disagree: the label with
    the largest summed trilinear weight (ties broken by the interpolated posterior).

    ``coords``/``base``: continuous and floor coordinates of those voxels on ``padded``
    (the crop's labels padded by one background voxel on every side).
    """
    fractions = [(coords[axis] - base[axis]).astype(np.float32) for axis in range(3)]
    unpadded_shape = tuple(n - 2 for n in padded.shape)
    corner_labels = []
    corner_weights = []
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                weight = ((fractions[0] if dx else 1.0 - fractions[0])
                          * (fractions[1] if dy else 1.0 - fractions[1])
                          * (fractions[2] if dz else 1.0 - fractions[2]))
                weight = np.round(weight, 5)  # float noise must not decide ties
                corner = (base[0] + dx, base[1] + dy, base[2] + dz)
                label = padded[corner]
                if probabilities is not None:  # crop index = padded index − 1
                    unpadded = tuple(np.clip(c - 1, 0, n - 1)
                                     for c, n in zip(corner, unpadded_shape, strict=True))
                    weight = weight * (1.0 + 1e-3 * probabilities[
                        (label.astype(np.int64), *unpadded)])
                corner_labels.append(label)
                corner_weights.append(weight.astype(np.float32))
    # Score of corner k's label = summed weight of the corners sharing that label.
    best_score = np.full(corner_labels[0].shape, -1.0, dtype=np.float32)
    best_label = np.zeros(corner_labels[0].shape, dtype=np.int16)
    for label in corner_labels:
        score = np.zeros(label.shape, dtype=np.float32)
        for other, weight in zip(corner_labels, corner_weights, strict=True):
            score += np.where(other == label, weight, np.float32(0.0))
        better = score > best_score
        best_score[better] = score[better]
        best_label[better] = label[better]
    return best_label
