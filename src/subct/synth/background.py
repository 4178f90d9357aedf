"""Using label maps that hold only subcortical structures, by embedding them in a head.

Maps such as the CT-space subcortical masks of the ensemble label-transfer paper
(values 1–7, left/right merged, nothing around them) cannot drive a CT generator on
their own: the network must see brain, CSF, skull and air around the structures.
The simplest honest option, chosen here, is to **embed them into a real whole-head
label map** (the *background*, e.g. a SynthSeg training map):

1. the 7-class values are converted to FreeSurfer IDs and split into left and right
   at the midline (:func:`subct.labels.schemes.from_paper7`,
   :func:`subct.labels.schemes.split_left_right`);
2. a similarity transform (rotation, isotropic scale, translation; Umeyama 1991) is
   fitted between the centroids of the structures present in both maps, which aligns
   the subcortical map to the head in world space;
3. in the head map, its own target structures are replaced by their host tissue
   (white matter around deep nuclei and ventricles, cortex around hippocampus and
   amygdala; :data:`subct.synth.tissues.CONTRAST_HOST`), and the subcortical map's
   structures are pasted at their aligned position (nearest-neighbour resampling).

Structures that the subcortical map does not label (amygdala and accumbens for the
7-class maps) keep the background's in the image; their labels are *unknown* in
training (:func:`unlabelled_structures`, the marginal loss), not claimed. The
structures' shapes and relative positions are the subcortical map's own; the
surrounding anatomy is the background's, so the fit between them is only as good
as a similarity alignment.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.labels.schemes import CANONICAL_LABELS, from_paper7, split_left_right
from subct.synth.tissues import CONTRAST_HOST


def to_canonical_ids(labels: NDArray[np.integer], affine: NDArray[np.float64]) -> NDArray[np.int16]:
    """Subcortical map → canonical FreeSurfer IDs (7-class maps are converted and split L/R)."""
    present = set(np.unique(labels).tolist()) - {0}
    if present <= set(range(1, 8)):
        return split_left_right(from_paper7(labels), affine)
    return np.where(np.isin(labels, CANONICAL_LABELS), labels, 0).astype(np.int16)


def unlabelled_structures(subcortical: NDArray[np.integer],
                          affine: NDArray[np.float64]) -> tuple[int, ...]:
    """FreeSurfer IDs of the target structures a subcortical map does not label.

    A 7-class paper map has no amygdala or accumbens (18/54, 26/58); any structure absent
    from a map is unlabelled too. Training treats them as unknown there (the marginal
    loss of :mod:`subct.model.losses`), never as absent.
    """
    present = set(np.unique(to_canonical_ids(*labelled_box(subcortical, affine))).tolist())
    return tuple(sorted(set(CANONICAL_LABELS) - present))


def labelled_box(labels: NDArray[np.integer], affine: NDArray[np.float64]
                 ) -> tuple[NDArray[np.integer], NDArray[np.float64]]:
    """The labelled voxels' bounding box of ``labels`` and its affine (world positions
    unchanged). A paper map labels ~4 % of its 256³ grid: the conversion, the left/right
    split and the centroids then run on that box, ~25× fewer voxels."""
    values = np.asarray(labels)
    ranges = [np.flatnonzero(values.any(axis=tuple(a for a in range(3) if a != axis)))
              for axis in range(3)]
    if any(r.size == 0 for r in ranges):
        return values, np.asarray(affine, dtype=np.float64)
    low = np.array([r[0] for r in ranges])
    box = values[tuple(slice(int(r[0]), int(r[-1]) + 1) for r in ranges)]
    box_affine = np.array(affine, dtype=np.float64)
    box_affine[:3, 3] = box_affine[:3, :3] @ low + box_affine[:3, 3]
    return box, box_affine


def _centroids_mm(
    labels: NDArray[np.integer], affine: NDArray[np.float64], ids: list[int]
) -> NDArray[np.float64]:
    """World centroid (mm) of each label in ``ids`` (all must be present)."""
    lookup = np.full(int(max(ids)) + 1, -1, dtype=np.int64)
    lookup[ids] = np.arange(len(ids))
    values = np.asarray(labels)
    selected = np.isin(values, ids)
    voxels = np.argwhere(selected).astype(np.float64)
    groups = lookup[values[selected].astype(np.int64)]
    counts = np.bincount(groups, minlength=len(ids)).astype(np.float64)
    centroids = np.stack([np.bincount(groups, weights=voxels[:, axis], minlength=len(ids))
                          for axis in range(3)], axis=1) / counts[:, None]
    return np.asarray(centroids @ affine[:3, :3].T + affine[:3, 3], dtype=np.float64)


def similarity_transform(
    source: NDArray[np.float64], target: NDArray[np.float64]
) -> NDArray[np.float64]:
    """4×4 similarity (scale · rotation, translation) that best maps ``source`` points on
    ``target`` points in the least-squares sense (Umeyama 1991); (N, 3) arrays, mm."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rotation = u @ sign @ vt
    variance = (source_centred**2).sum() / len(source)
    scale = float(np.trace(np.diag(singular) @ sign) / variance) if variance > 0 else 1.0
    transform = np.eye(4)
    transform[:3, :3] = scale * rotation
    transform[:3, 3] = target_mean - scale * rotation @ source_mean
    return transform


def embed_in_head(
    subcortical: NDArray[np.integer],
    subcortical_affine: NDArray[np.float64],
    head: NDArray[np.integer],
    head_affine: NDArray[np.float64],
) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """Whole-head label map (on the head's grid) carrying the subcortical map's structures.

    Args:
        subcortical: map with only target structures (7-class values or FreeSurfer IDs).
        subcortical_affine: its voxel → world (RAS, mm) affine.
        head: whole-head background map (FreeSurfer IDs + extra-cerebral labels).
        head_affine: its affine; the result lives on this grid.

    Returns:
        (labels, head_affine).
    """
    subcortical, subcortical_affine = labelled_box(subcortical, subcortical_affine)
    structures = to_canonical_ids(subcortical, subcortical_affine)
    head_labels: NDArray[np.int32] = np.asarray(head, dtype=np.int32)
    present_sub = set(np.unique(structures).tolist()) - {0}
    shared = sorted(present_sub & set(np.unique(head_labels).tolist()))
    if len(shared) >= 4:
        transform = similarity_transform(
            _centroids_mm(structures, subcortical_affine, shared),
            _centroids_mm(head_labels, head_affine, shared))
    else:  # too few shared structures for a rotation: align the centroids only
        transform = np.eye(4)
        transform[:3, 3] = (_centroids_mm((head_labels > 0).astype(np.int32), head_affine, [1])[0]
                            - _centroids_mm((structures > 0).astype(np.int32),
                                            subcortical_affine, [1])[0])
    # head voxel → world → subcortical world (inverse similarity) → subcortical voxel
    sub_to_head_voxel = np.linalg.inv(head_affine) @ transform @ subcortical_affine
    # resample only the head-grid box that the structures land in (fast: ~1% of the head)
    labelled = np.argwhere(structures > 0)
    extremes = np.stack((labelled.min(axis=0), labelled.max(axis=0)))
    corners = np.array([[extremes[bit, axis] for axis, bit in enumerate(bits)]
                        for bits in np.ndindex(2, 2, 2)], dtype=np.float64)
    landed = corners @ sub_to_head_voxel[:3, :3].T + sub_to_head_voxel[:3, 3]
    low = np.clip(np.floor(landed.min(0)).astype(int) - 1, 0, None)
    high = np.minimum(np.ceil(landed.max(0)).astype(int) + 2, head_labels.shape)
    box_to_sub_voxel = np.linalg.inv(sub_to_head_voxel)
    box_offset = box_to_sub_voxel[:3, :3] @ low + box_to_sub_voxel[:3, 3]
    pasted = ndimage.affine_transform(
        structures, box_to_sub_voxel[:3, :3], offset=box_offset,
        output_shape=tuple(int(n) for n in high - low), order=0, mode="constant", cval=0)
    # the head's own copies of the pasted structures become their host tissue (one pass)
    host = np.arange(int(head_labels.max()) + 1, dtype=np.int32)
    for label in present_sub:
        if label < host.size:
            host[label] = CONTRAST_HOST.get(label, 0)
    result = host[head_labels]
    box = result[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
    inside = pasted > 0
    box[inside] = pasted[inside]
    return result, np.asarray(head_affine, dtype=np.float64)
