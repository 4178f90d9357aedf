"""Segmentation metrics: overlap, surface distances and volumes, per structure and per case.

All functions are pure: they take numpy label arrays (or boolean masks) plus the voxel
spacing in mm along each *array* axis, and return typed results. Distances are in mm
with anisotropic spacing honoured; volumes in mm³ (voxel count × voxel volume) and in
voxels.

Conventions (fixed here so that numbers are comparable between runs and papers):

* **Surface** of a mask: the mask voxels that have at least one 6-neighbour (face
  neighbour) outside the mask. Voxels outside the array count as outside, so a
  structure touching the array border has a surface there.
* **Directed surface distances** d(A→B): for each surface voxel of A, the Euclidean
  distance in mm (voxel centre to voxel centre) to the nearest surface voxel of B,
  computed with :func:`scipy.ndimage.distance_transform_edt` (``sampling=spacing``)
  on a crop around the union bounding box of both masks. The crop is exact: every
  surface voxel of B lies inside it, so no nearer voxel can be cut off.
* **Hausdorff distance (HD)**: max of the two directed maxima.
* **HD95**: max of the two directed 95th percentiles (numpy linear interpolation).
  This is MONAI's ``compute_hausdorff_distance(percentile=95)`` convention; other
  tools (e.g. the 95th percentile of the pooled distances) give slightly smaller values.
* **ASSD**: (Σ d(A→B) + Σ d(B→A)) / (|∂A| + |∂B|), the mean over both surfaces pooled,
  as in the 3D U-Net/MC-dropout paper (eq. 6) and MONAI's
  ``compute_average_surface_distance(symmetric=True)`` (which concatenates both
  directions before averaging; MONAI's surfaces are also 6-neighbour erosion edges,
  so our HD, HD95 and ASSD equal MONAI's up to float32 rounding).
* SimpleITK's ``HausdorffDistanceImageFilter`` is *set*-based (distances from every
  voxel of A to the nearest voxel of B). The surface HD is never smaller; the two agree
  for convex shapes (tests: two offset balls) and differ for shapes with cavities or
  holes (a hollow ball vs the full ball: set HD = cavity radius, surface HD = wall
  thickness), where the surface version is the one that sees the error.
* **Dice** = 2|A∩B| / (|A|+|B|), **Jaccard** = |A∩B| / |A∪B|.
* **Absolute volume difference** |V_pred − V_ref| in mm³ and in voxels;
  **relative volume difference** (V_pred − V_ref) / V_ref, signed (+ = over-segmentation).
* Per case: **mean Dice** over the structures that are scored (non-NaN Dice) and
  **volume-weighted Dice** Σ_s Dice_s·V_ref,s / Σ_s V_ref,s (eq. 5 of the 3D U-Net
  paper, weights = reference volumes; the background is not included).

Empty structures:

* **both empty** (structure absent in prediction and reference): nothing to score.
  Dice, Jaccard, HD, HD95, ASSD and the relative volume difference are NaN; the
  absolute volume differences are 0. Summaries skip NaN, so absent structures neither
  inflate nor deflate means. ``status == "both_empty"``.
* **one empty** (missed or hallucinated structure): Dice = Jaccard = 0, and HD, HD95,
  ASSD are **+inf** (the distance to an empty set); relative volume difference is −1
  when the prediction is empty and +inf when the reference is empty.
  ``status`` is ``"pred_empty"`` or ``"ref_empty"``. Summaries report how many such
  cases there were and compute distance means over the finite values only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

#: Face-connected (6-neighbour) structuring element used to find surfaces.
_SIX_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


Status = Literal["both_present", "both_empty", "pred_empty", "ref_empty"]


#: Metric names in the long CSV, in output order, with their units.
METRIC_UNITS: dict[str, str] = {
    "dice": "",
    "jaccard": "",
    "hausdorff_mm": "mm",
    "hd95_mm": "mm",
    "assd_mm": "mm",
    "abs_volume_diff_mm3": "mm³",
    "abs_volume_diff_voxels": "voxels",
    "relative_volume_diff": "",
    "volume_pred_mm3": "mm³",
    "volume_ref_mm3": "mm³",
}


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed surface distances in mm between two non-empty masks."""

    pred_to_ref_mm: NDArray[np.float64]
    ref_to_pred_mm: NDArray[np.float64]

    @property
    def hausdorff_mm(self) -> float:
        """Max of both directed maxima."""
        return float(max(self.pred_to_ref_mm.max(), self.ref_to_pred_mm.max()))

    def hausdorff_percentile_mm(self, percentile: float = 95.0) -> float:
        """Max of the two directed ``percentile``-th percentiles (HD95 for 95)."""
        return float(
            max(
                np.percentile(self.pred_to_ref_mm, percentile),
                np.percentile(self.ref_to_pred_mm, percentile),
            )
        )

    @property
    def assd_mm(self) -> float:
        """Average symmetric surface distance: mean over both surfaces pooled."""
        total = self.pred_to_ref_mm.sum() + self.ref_to_pred_mm.sum()
        return float(total / (self.pred_to_ref_mm.size + self.ref_to_pred_mm.size))


@dataclass(frozen=True)
class StructureMetrics:
    """All metrics of one structure in one case (see the module docstring for conventions)."""

    label: int
    name: str
    status: Status
    dice: float
    jaccard: float
    hausdorff_mm: float
    hd95_mm: float
    assd_mm: float
    abs_volume_diff_mm3: float
    abs_volume_diff_voxels: int
    relative_volume_diff: float
    volume_pred_mm3: float
    volume_ref_mm3: float

    def metric_values(self) -> dict[str, float]:
        """Metric name → value, in :data:`METRIC_UNITS` order (for the long CSV)."""
        values = asdict(self)
        return {name: float(values[name]) for name in METRIC_UNITS}


@dataclass(frozen=True)
class CaseMetrics:
    """Metrics of every structure of one case, plus the per-case Dice summaries."""

    case: str
    structures: tuple[StructureMetrics, ...]
    mean_dice: float = field(init=False)
    volume_weighted_dice: float = field(init=False)

    def __post_init__(self) -> None:
        dice = np.array([s.dice for s in self.structures], dtype=np.float64)
        volumes = np.array([s.volume_ref_mm3 for s in self.structures], dtype=np.float64)
        scored = ~np.isnan(dice)
        mean = float(dice[scored].mean()) if scored.any() else math.nan
        total = float(volumes[scored].sum())
        weighted = float((dice[scored] * volumes[scored]).sum() / total) if total > 0 else math.nan
        object.__setattr__(self, "mean_dice", mean)
        object.__setattr__(self, "volume_weighted_dice", weighted)

    def by_label(self) -> dict[int, StructureMetrics]:
        """Structure metrics keyed by label value."""
        return {s.label: s for s in self.structures}


def surface_mask(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Voxels of ``mask`` with at least one 6-neighbour outside it (array border = outside)."""
    mask = np.asarray(mask, dtype=bool)
    eroded = ndimage.binary_erosion(mask, structure=_SIX_NEIGHBOURS, border_value=0)
    return mask & ~eroded


def _union_bounding_box(
    pred: NDArray[np.bool_], ref: NDArray[np.bool_], margin_voxels: int = 1
) -> tuple[slice, ...]:
    union = pred | ref
    slices: list[slice] = []
    for axis in range(union.ndim):
        other_axes = tuple(a for a in range(union.ndim) if a != axis)
        present = np.flatnonzero(union.any(axis=other_axes))
        start = max(int(present[0]) - margin_voxels, 0)
        stop = min(int(present[-1]) + 1 + margin_voxels, union.shape[axis])
        slices.append(slice(start, stop))
    return tuple(slices)


def surface_distances(
    pred: NDArray[np.bool_],
    ref: NDArray[np.bool_],
    spacing_mm: Sequence[float],
    crop: tuple[slice, ...] | None = None,
) -> SurfaceDistances:
    """Directed surface distances (mm) between two non-empty boolean masks.

    Args:
        pred, ref: boolean masks on the same grid; both must contain a voxel.
        spacing_mm: voxel size along each array axis in mm.
        crop: region holding both masks with at least one voxel of margin where it
            does not reach the array border (computed when omitted). Distance
            transforms run on this crop only, which is what makes them fast.
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {ref.shape}")
    if not pred.any() or not ref.any():
        raise ValueError("surface distances need two non-empty masks")
    if crop is None:
        crop = _union_bounding_box(pred, ref)
    # Outside the crop counts as outside the mask; this equals the whole-array
    # convention because the crop has a 1-voxel margin or ends at the array border.
    pred_crop, ref_crop = pred[crop], ref[crop]
    pred_surface = surface_mask(pred_crop)
    ref_surface = surface_mask(ref_crop)
    sampling = tuple(float(s) for s in spacing_mm)
    distance_to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=sampling)
    distance_to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=sampling)
    return SurfaceDistances(
        pred_to_ref_mm=np.asarray(distance_to_ref[pred_surface], dtype=np.float64),
        ref_to_pred_mm=np.asarray(distance_to_pred[ref_surface], dtype=np.float64),
    )


def binary_metrics(
    pred: NDArray[np.bool_],
    ref: NDArray[np.bool_],
    spacing_mm: Sequence[float],
    *,
    label: int = 1,
    name: str = "structure",
    voxel_volume_mm3: float | None = None,
) -> StructureMetrics:
    """All metrics for one pair of boolean masks on the same grid.

    Args:
        pred, ref: prediction and reference masks.
        spacing_mm: voxel size along each array axis (mm).
        label, name: identify the structure in the result.
        voxel_volume_mm3: voxel volume; defaults to the product of ``spacing_mm``
            (pass ``Volume.voxel_volume_mm3`` for oblique grids: it is the same).
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {ref.shape}")
    pred_voxels = int(np.count_nonzero(pred))
    ref_voxels = int(np.count_nonzero(ref))
    overlap_voxels = int(np.count_nonzero(pred & ref))
    distances = None
    if pred_voxels and ref_voxels:
        distances = surface_distances(pred, ref, spacing_mm)
    return _assemble(
        label, name, pred_voxels, ref_voxels, overlap_voxels, distances,
        _voxel_volume(spacing_mm, voxel_volume_mm3),
    )


def _voxel_volume(spacing_mm: Sequence[float], voxel_volume_mm3: float | None) -> float:
    if voxel_volume_mm3 is not None:
        return float(voxel_volume_mm3)
    return float(np.prod(np.asarray(spacing_mm, dtype=np.float64)))


def _assemble(
    label: int,
    name: str,
    pred_voxels: int,
    ref_voxels: int,
    overlap_voxels: int,
    distances: SurfaceDistances | None,
    voxel_volume_mm3: float,
) -> StructureMetrics:
    """Combine voxel counts and surface distances into a :class:`StructureMetrics`."""
    volume_pred = pred_voxels * voxel_volume_mm3
    volume_ref = ref_voxels * voxel_volume_mm3
    abs_voxels = abs(pred_voxels - ref_voxels)
    status: Status
    if pred_voxels == 0 and ref_voxels == 0:
        status = "both_empty"
        dice = jaccard = hd = hd95 = assd = relative = math.nan
    elif pred_voxels == 0 or ref_voxels == 0:
        status = "pred_empty" if pred_voxels == 0 else "ref_empty"
        dice = jaccard = 0.0
        hd = hd95 = assd = math.inf
        relative = -1.0 if pred_voxels == 0 else math.inf
    else:
        assert distances is not None
        status = "both_present"
        dice = 2.0 * overlap_voxels / (pred_voxels + ref_voxels)
        jaccard = overlap_voxels / (pred_voxels + ref_voxels - overlap_voxels)
        hd = distances.hausdorff_mm
        hd95 = distances.hausdorff_percentile_mm(95.0)
        assd = distances.assd_mm
        relative = (pred_voxels - ref_voxels) / ref_voxels
    return StructureMetrics(
        label=label,
        name=name,
        status=status,
        dice=dice,
        jaccard=jaccard,
        hausdorff_mm=hd,
        hd95_mm=hd95,
        assd_mm=assd,
        abs_volume_diff_mm3=abs_voxels * voxel_volume_mm3,
        abs_volume_diff_voxels=abs_voxels,
        relative_volume_diff=relative,
        volume_pred_mm3=volume_pred,
        volume_ref_mm3=volume_ref,
    )


def label_map_metrics(
    pred_labels: NDArray[np.integer],
    ref_labels: NDArray[np.integer],
    spacing_mm: Sequence[float],
    structures: Mapping[int, str],
    *,
    case: str = "case",
    voxel_volume_mm3: float | None = None,
) -> CaseMetrics:
    """Metrics of every structure of two label maps on the same grid.

    Voxel counts of all labels come from one joint histogram of (pred, ref) values;
    surface distances are computed on each structure's union bounding box only, so
    17 structures on a 256³ pair take about a second (see ``docs/benchmarks.md``).

    Args:
        pred_labels, ref_labels: integer label maps of the same shape (same scheme).
        spacing_mm: voxel size along each array axis (mm).
        structures: label value → structure name; the structures to score, in order.
        case: case name stored in the result.
        voxel_volume_mm3: voxel volume (defaults to the product of the spacing).
    """
    pred = np.asarray(pred_labels)
    ref = np.asarray(ref_labels)
    if pred.shape != ref.shape:
        raise ValueError(f"label map shapes differ: {pred.shape} vs {ref.shape}")
    if pred.ndim != len(spacing_mm):
        raise ValueError(f"spacing {tuple(spacing_mm)} does not match {pred.ndim}D arrays")
    voxel_volume = _voxel_volume(spacing_mm, voxel_volume_mm3)
    labels = [int(label) for label in structures]
    # Index every structure 1..S (0 = anything else), then count all pairs at once.
    lookup = {label: index + 1 for index, label in enumerate(labels)}
    pred_index = _to_indices(pred, lookup)
    ref_index = _to_indices(ref, lookup)
    size = len(labels) + 1
    joint = np.bincount(
        (pred_index.astype(np.int64) * size + ref_index).ravel(), minlength=size * size
    ).reshape(size, size)
    pred_counts = joint.sum(axis=1)
    ref_counts = joint.sum(axis=0)
    pred_boxes = ndimage.find_objects(pred_index, max_label=size - 1)
    ref_boxes = ndimage.find_objects(ref_index, max_label=size - 1)
    results: list[StructureMetrics] = []
    for index, label in enumerate(labels, start=1):
        pred_voxels, ref_voxels = int(pred_counts[index]), int(ref_counts[index])
        distances = None
        if pred_voxels and ref_voxels:
            crop = _merge_boxes(pred_boxes[index - 1], ref_boxes[index - 1], pred.shape)
            distances = surface_distances(
                pred_index[crop] == index, ref_index[crop] == index, spacing_mm,
                crop=tuple(slice(0, s.stop - s.start) for s in crop),
            )
        results.append(
            _assemble(label, structures[label], pred_voxels, ref_voxels,
                      int(joint[index, index]), distances, voxel_volume)
        )
    return CaseMetrics(case=case, structures=tuple(results))


def _to_indices(labels: NDArray[np.integer], lookup: Mapping[int, int]) -> NDArray[np.int32]:
    """Label values → 1..S for the scored structures, 0 otherwise (lookup table)."""
    values = labels.astype(np.int64, copy=False)
    low = min(int(values.min()), 0)
    high = max(int(values.max()), max(lookup, default=0))
    table = np.zeros(high - low + 1, dtype=np.int32)
    for label, index in lookup.items():
        table[label - low] = index
    return table[values - low]


def _merge_boxes(
    first: tuple[slice, ...] | None,
    second: tuple[slice, ...] | None,
    shape: tuple[int, ...],
    margin_voxels: int = 1,
) -> tuple[slice, ...]:
    """Union of two bounding boxes grown by ``margin_voxels`` and clipped to ``shape``."""
    boxes = [box for box in (first, second) if box is not None]
    merged: list[slice] = []
    for axis, extent in enumerate(shape):
        start = min(box[axis].start for box in boxes) - margin_voxels
        stop = max(box[axis].stop for box in boxes) + margin_voxels
        merged.append(slice(max(start, 0), min(stop, extent)))
    return tuple(merged)


def summarise(values: Sequence[float]) -> tuple[float, float, int, int]:
    """Mean, sample sd (ddof=1, 0 for one value), number of finite values, number of infs.

    NaN (structure absent from both maps) is skipped; ±inf (structure missing from one
    map) is counted separately and excluded from mean and sd.
    """
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    infinite = int(np.count_nonzero(np.isinf(array)))
    if finite.size == 0:
        return math.nan, math.nan, 0, infinite
    sd = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return float(finite.mean()), sd, int(finite.size), infinite
