"""After the network: one component per structure, label-scheme conversion.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.errors import SubctConfigError
from subct.image.masks import bounding_box, largest_component
from subct.image.volume import Volume
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


#: A calibrated structure must keep at least this share of the voxels it wins without
#: calibration. On the 20 clean validation heads of the shipped model's calibration
#: (accumbens × 0.37) it kept 0.71-0.84 (one head 0.51); where the network's evidence
#: for a structure is weak (a lesion beside it) the factor can take nearly all of it
#: away (a validation head with the clinical mix: right accumbens 113 → 36 mm³, Dice
#: 0.04 → 0, share 0.33), so there the calibration is withheld and the structure flagged.
MIN_CALIBRATED_SHARE = 0.5
#: Voxels where a structure's probability is at most this cannot be its argmax (18
#: classes: the largest probability is ≥ 1/18), so its box is where it exceeds it.
_NEVER_ARGMAX = 0.05


def apply_class_scales(probabilities: NDArray[np.float32],
                       class_scales: NDArray[np.float32]) -> dict[int, float]:
    """Multiply each channel of the softmax (classes, X, Y, Z) in place by its factor in
    ``class_scales`` (one per channel, background first), except for a channel that
    would keep less than :data:`MIN_CALIBRATED_SHARE` of the voxels it wins unscaled.

    Returns the withheld channels → the share they would have kept. Each channel is
    tested on its own, in the bounding box where it can win (probability above 1/18),
    so the test costs a fraction of a full argmax.
    """
    withheld: dict[int, float] = {}
    for channel in np.flatnonzero(class_scales != 1.0):
        factor = float(class_scales[channel])
        box = bounding_box(probabilities[channel] > _NEVER_ARGMAX)
        if box is not None:
            block = probabilities[(slice(None), *box)]
            others = np.delete(block, channel, axis=0).max(axis=0)
            raw = int(np.count_nonzero(block[channel] > others))
            kept = int(np.count_nonzero(block[channel] * np.float32(factor) > others))
            if raw > 0 and kept < MIN_CALIBRATED_SHARE * raw:
                withheld[int(channel)] = kept / raw
                continue
        probabilities[channel] *= np.float32(factor)
    return withheld


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


#: No structure on bone: crop voxels above this HU are background. Calcified pallidum,
#: choroid plexus and pineal (100–400 HU) stay below it and keep their anatomy's label.
BONE_HU = 600.0


def remove_labels_outside(indices: NDArray[np.int64], allowed: NDArray[np.bool_]
                          ) -> tuple[NDArray[np.int64], int]:
    """Background wherever ``allowed`` is False (e.g. outside the intracranial mask);
    returns the labels and how many labelled voxels were removed (reported in QC)."""
    outside = ~allowed
    removed = int(np.count_nonzero(indices[outside]))
    if removed:
        indices = indices.copy()
        indices[outside] = 0
    return indices, removed


def remove_labels_on_bone(indices: NDArray[np.int64], crop_hu: NDArray[np.float32]
                          ) -> tuple[NDArray[np.int64], int]:
    """Background on bone (> :data:`BONE_HU`); returns the labels and how many labelled
    crop voxels were removed (reported in QC)."""
    bone = crop_hu > BONE_HU
    removed = int(np.count_nonzero(indices[bone]))
    if removed:
        indices = indices.copy()
        indices[bone] = 0
    return indices, removed
