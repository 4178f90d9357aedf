"""After the network: one component per structure, label-scheme conversion.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.errors import SubctConfigError
from subct.image.masks import IntracranialLocation, largest_component
from subct.image.volume import Volume
from subct.inference.crop import CropGrid
from subct.labels.schemes import (
    to_scheme,
)


def keep_largest_components(indices: NDArray[np.integer], num_classes: int,
                            min_fraction: float = 1.0) -> NDArray[np.int64]:
    """Keep the largest 26-connected component of every class; the rest → background.

    With ``min_fraction`` < 1, components with at least that fraction of the largest
    one's voxels are kept too (e.g. 0.1: a lateral ventricle cut into frontal horn and
    body by a thin stretch keeps both parts, while small stray islands still go).
    """
    result = np.array(indices, dtype=np.int64, copy=True)
    objects = ndimage.find_objects(result.astype(np.int32), max_label=num_classes - 1)
    for index, found in enumerate(objects, start=1):
        if found is None:
            continue
        block = result[found]
        mask = block == index
        block[mask & ~largest_component(mask, full_connectivity=True,
                                        min_fraction=min_fraction)] = 0
    return result


def _convert_scheme(labels: NDArray[np.integer], network_scheme: str, output_scheme: str,
                    volume: Volume) -> NDArray[np.int16]:
    if network_scheme == output_scheme:
        return np.asarray(labels, dtype=np.int16)
    if network_scheme == "canonical":
        return to_scheme(labels, output_scheme)
    raise SubctConfigError(
        f"the model predicts the {network_scheme!r} scheme; it cannot write {output_scheme!r} "
        f"labels (choose --scheme {network_scheme})"
    )


#: Labels stay inside the skull: the locator's intracranial mask, widened by this margin
#: (mm; its 2 mm grid and the partial-volumed inner table of the skull), holes filled.
INTRACRANIAL_MARGIN_MM = 6.0
#: No structure on bone: crop voxels above this HU are background. Calcified pallidum,
#: choroid plexus and pineal (100–400 HU) stay below it and keep their anatomy's label.
BONE_HU = 600.0


def intracranial_on_grid(location: IntracranialLocation, grid: CropGrid
                         ) -> NDArray[np.bool_] | None:
    """The widened, hole-filled intracranial mask on the crop grid (None: no skull-based
    mask, e.g. when the locator fell back to the soft tissue or the whole head)."""
    if location.mask is None or location.method != "skull":
        return None
    mask = np.asarray(location.mask.array, dtype=bool)
    spacing = np.asarray(location.mask.spacing)
    radius = np.maximum(1, np.round(INTRACRANIAL_MARGIN_MM / spacing)).astype(int)
    grid_axes = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((axis / r) ** 2 for axis, r in zip(grid_axes, radius, strict=True)) <= 1.0
    widened = ndimage.binary_fill_holes(ndimage.binary_dilation(mask, structure=ball))
    crop_to_mask = np.linalg.inv(location.mask.affine) @ grid.affine
    on_grid = ndimage.affine_transform(widened.astype(np.uint8), crop_to_mask[:3, :3],
                                       offset=crop_to_mask[:3, 3], output_shape=grid.shape,
                                       order=0, mode="constant", cval=0)
    return np.asarray(on_grid, dtype=bool)


def restrict_to_anatomy(indices: NDArray[np.int64], crop_hu: NDArray[np.float32],
                        intracranial: NDArray[np.bool_] | None) -> tuple[NDArray[np.int64], int]:
    """Background outside the intracranial mask and on bone (> :data:`BONE_HU`).

    Returns the labels and how many labelled crop voxels were removed (reported in QC).
    """
    outside = crop_hu > BONE_HU
    if intracranial is not None:
        outside |= ~intracranial
    removed = int(np.count_nonzero(indices[outside]))
    if removed:
        indices = indices.copy()
        indices[outside] = 0
    return indices, removed
