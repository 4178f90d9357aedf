"""Anatomical checks of a segmentation on the network's crop (1 mm RAS grid, HU).

Each finding is a named QC flag (``<case>_qc.json``, the console, ``volumes.csv``'s
``qc_flags`` column); see ``docs/segment.md`` for what to do about each.

- **Field of view** (:func:`check_coverage`): where the scan stops inside the deep-brain
  box, a structure with no voxel is reported as *not in the field of view* (its volume is
  left empty, never 0) and one that touches the edge as *cut* (its volume is a lower
  bound). A scan in which the thalamus, caudate and putamen are all missing or cut does
  not reach the basal ganglia and is refused (``--force`` overrides).
- **Intensities** (:func:`check_intensities`): a lateral ventricle whose voxels are mostly
  denser than CSF sits on brain tissue; deep grey matter with many voxels at blood or
  calcium density holds a haemorrhage or calcification, and its volume is unreliable.
- **Left/right asymmetry** (:func:`check_asymmetry`): AI = |L − R| / mean(L, R) above
  1.5 × the 90th percentile of 20 real manual label maps
  (``benchmarks/bench_asymmetry_norms.py``) points at a lesion, atrophy, or an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.image.hyperdense import (
    HYPERDENSE_HU,
    HYPERDENSE_MIN_MM3,
    hyperdense_regions,
    large_hyperdense_regions,
)
from subct.image.masks import bounding_box
from subct.io.hounsfield import OUTSIDE_FOV_HU
from subct.labels.schemes import CANONICAL_NAMES, LEFT_RIGHT_PAIRS
from subct.qc.checks import QcFlag

#: Lateralised structures: base name → (left ID, right ID).
LEFT_RIGHT_STRUCTURES: dict[str, tuple[int, int]] = {
    CANONICAL_NAMES[left].removeprefix("Left-"): (left, right) for left, right in LEFT_RIGHT_PAIRS
}

#: Asymmetry index limits (percent): 1.5 × the 90th percentile over the 20 SynthSeg
#: label maps (medians 5–13 %, 90th percentiles 10–43 %).
ASYMMETRY_LIMIT_PERCENT: dict[str, float] = {
    "Lateral-Ventricle": 64.0, "Thalamus": 22.0, "Caudate": 15.0, "Putamen": 19.0,
    "Pallidum": 57.0, "Hippocampus": 23.0, "Amygdala": 38.0, "Accumbens-area": 40.0,
}

#: CSF is 0–15 HU, white matter 20–30 HU, grey 35–45 HU: a lateral ventricle whose
#: median is above this lies mostly on brain tissue. The median, not a share of dense
#: voxels, because 5 mm slices mix thin ventricles with tissue (on held-out heads at
#: 5 mm, 44 % of a correctly labelled ventricle's voxels were above 22 HU, its median
#: 21 HU).
DENSER_THAN_CSF_HU = 25.0
#: A ventricle label's interior (≥ 2 mm inside its edge) should be CSF: this share of it
#: more than 8 HU denser than the scan's CSF level (the lowest 10th percentile of the
#: ventricles' interiors, after 1 mm smoothing) means the label has spread over tissue.
#: Limit from the validation heads (maps 17-18, clean and with infarcts, white-matter
#: hypodensity or the clinical mix; ``bench_shipped_model.py --tuning``, the
#: ``ventricle_figures`` of summary.json): labels within 15 % of their true volume reached
#: 0.11 at 1 mm.
VENTRICLE_DENSE_INTERIOR_SHARE = 0.2
VENTRICLE_TISSUE_MARGIN_HU = 8.0
VENTRICLE_CSF_PERCENTILE = 10.0
#: Slices thicker than this (mm) blur tissue into a thin ventricle's interior: on the
#: 5 mm validation heads correct labels (volume within 15 %) reached a share of 0.36
#: (1 mm: 0.11), so thick-slice scans get the higher limit below.
VENTRICLE_INTERIOR_MAX_SLICE_MM = 3.0
VENTRICLE_DENSE_INTERIOR_SHARE_THICK = 0.45
#: Fresh blood is 50–90 HU, calcification 100–400 HU, deep grey matter 30–45 HU.
BLOOD_OR_CALCIUM_HU = 60.0
DENSE_FRACTION = 0.08
#: Deep-brain structures that show the scan reaches the basal ganglia.
BASAL_GANGLIA = ("Thalamus", "Caudate", "Putamen")
#: Voxels of the crop within this distance of the scan's edge count as at the edge.
EDGE_VOXELS = 2


@dataclass
class AnatomyReport:
    """Flags of the anatomical checks and what they were based on."""

    flags: list[QcFlag] = field(default_factory=list)
    not_in_view: list[str] = field(default_factory=list)
    cut_by_view: list[str] = field(default_factory=list)
    reaches_basal_ganglia: bool = True
    facts: dict[str, object] = field(default_factory=dict)


def check_coverage(indices: NDArray[np.integer], crop_hu: NDArray[np.float32],
                   names: list[str], report: AnatomyReport) -> None:
    """Structures outside or cut by the scanned field of view (see module docstring).

    ``names[c - 1]`` is the structure of class ``c``.
    """
    in_view = crop_hu > OUTSIDE_FOV_HU + 0.5
    fraction = float(in_view.mean())
    report.facts["crop_fraction_in_field_of_view"] = round(fraction, 4)
    if fraction > 0.999:
        return
    edge = ndimage.binary_dilation(~in_view, iterations=EDGE_VOXELS)
    counts = np.bincount(np.asarray(indices).ravel(), minlength=len(names) + 1)
    at_edge = np.bincount(np.asarray(indices)[edge], minlength=len(names) + 1)
    missing = {name for index, name in enumerate(names, start=1) if counts[index] == 0}
    for index, name in enumerate(names, start=1):
        if name in missing:
            # a lateralised structure whose mirror image is there whole was lost to the
            # segmentation (a lesion, calcification...), not to the field of view
            partner = _partner(name)
            partner_whole = (partner in names and partner not in missing
                             and at_edge[names.index(partner) + 1] == 0)
            if not partner_whole:
                report.not_in_view.append(name)
        elif at_edge[index] > 0:
            report.cut_by_view.append(name)
    if report.not_in_view:
        report.flags.append(QcFlag("not_in_field_of_view", "not in the scanned field of "
                                   f"view (volume left empty): {', '.join(report.not_in_view)}",
                                   structures=tuple(report.not_in_view)))
    if report.cut_by_view:
        report.flags.append(QcFlag("cut_by_field_of_view", "cut by the edge of the scan "
                                   "(volume is a lower bound): "
                                   f"{', '.join(report.cut_by_view)}",
                                   structures=tuple(report.cut_by_view)))
    whole = [n for n in names if n not in report.not_in_view and n not in report.cut_by_view]
    report.reaches_basal_ganglia = any(
        name.removeprefix("Left-").removeprefix("Right-") in BASAL_GANGLIA for name in whole)


def _partner(name: str) -> str:
    if name.startswith("Left-"):
        return "Right-" + name.removeprefix("Left-")
    if name.startswith("Right-"):
        return "Left-" + name.removeprefix("Right-")
    return name


def ventricle_interior_hu(ventricle: NDArray[np.bool_],
                          crop_hu: NDArray[np.float32]) -> NDArray[np.float32]:
    """HU (after 1 mm Gaussian smoothing) of a ventricle label's interior: its voxels at
    least 2 voxels (2 mm on the 1 mm crop) inside the label's edge, so that the
    partial-volume rim is left out. Runs on the label's bounding box (+3 voxels)."""
    box = bounding_box(ventricle, margin_voxels=3)
    if box is None:
        return np.zeros(0, dtype=np.float32)
    smooth = ndimage.gaussian_filter(np.asarray(crop_hu[box], dtype=np.float32), 1.0)
    depth = ndimage.distance_transform_edt(ventricle[box])
    return smooth[depth >= 2.0]


def ventricle_tissue_shares(interiors: dict[str, NDArray[np.float32]]
                            ) -> tuple[float | None, dict[str, float]]:
    """The scan's CSF level and, per ventricle, the share of its interior denser than
    that level by more than :data:`VENTRICLE_TISSUE_MARGIN_HU`.

    The CSF level is the lowest :data:`VENTRICLE_CSF_PERCENTILE` percentile over the
    ventricles with at least 50 interior voxels: a label that has spread over tissue
    still holds its true CSF, at the bottom of its histogram, and the other ventricle's
    CSF sets the level when one label is mostly tissue. Comparing with the scan's own
    CSF, not a fixed HU, cancels calibration offsets. Returns (None, {}) when no
    ventricle has an interior."""
    levels = [float(np.percentile(values, VENTRICLE_CSF_PERCENTILE))
              for values in interiors.values() if values.size >= 50]
    if not levels:
        return None, {}
    csf_level = min(levels)
    shares = {name: float(np.mean(values > csf_level + VENTRICLE_TISSUE_MARGIN_HU))
              for name, values in interiors.items() if values.size >= 50}
    return csf_level, shares


def check_intensities(indices: NDArray[np.integer], crop_hu: NDArray[np.float32],
                      names: list[str], report: AnatomyReport,
                      slice_mm: float = 1.0) -> None:
    """Ventricles on tissue; deep grey matter on blood or calcium (see module docstring).

    ``slice_mm`` is the scan's coarsest voxel side (mm): above
    :data:`VENTRICLE_INTERIOR_MAX_SLICE_MM` the ventricle-interior rule needs a larger
    share (:data:`VENTRICLE_DENSE_INTERIOR_SHARE_THICK`), because thick slices blur the
    tissue around a thin ventricle into its interior.

    One pass over the crop for the voxel counts and the dense-voxel counts of every
    structure; only the ventricles' voxels are gathered (for their median).
    """
    flat_indices = np.asarray(indices).ravel()
    flat_hu = np.asarray(crop_hu).ravel()
    size = len(names) + 1
    counts = np.bincount(flat_indices, minlength=size)
    dense_counts = np.bincount(flat_indices[flat_hu > BLOOD_OR_CALCIUM_HU], minlength=size)
    figures: dict[str, float] = {}
    interiors = {name: ventricle_interior_hu(np.asarray(indices) == index, crop_hu)
                 for index, name in enumerate(names, start=1)
                 if "Ventricle" in name and counts[index] >= 20}
    csf_level, tissue_shares = ventricle_tissue_shares(interiors)
    limit = (VENTRICLE_DENSE_INTERIOR_SHARE if slice_mm <= VENTRICLE_INTERIOR_MAX_SLICE_MM
             else VENTRICLE_DENSE_INTERIOR_SHARE_THICK)
    if csf_level is not None:
        figures["ventricle_csf_level_hu"] = round(csf_level, 1)
    for index, name in enumerate(names, start=1):
        if counts[index] < 20 or name == "Brain-Stem":
            continue
        if "Ventricle" in name:
            median = float(np.median(flat_hu[flat_indices == index]))
            figures[name] = round(median, 1)
            dense_share = tissue_shares.get(name, 0.0)
            figures[f"{name}_interior_denser_than_csf"] = round(dense_share, 3)
            if median > DENSER_THAN_CSF_HU:
                report.flags.append(QcFlag("ventricle_on_tissue", f"{name}: median "
                                           f"{median:.0f} HU, denser than CSF (0-15 HU); the "
                                           "label covers brain tissue and its volume is too "
                                           "large", structures=(name,)))
            elif dense_share > limit:
                report.flags.append(QcFlag("ventricle_on_tissue", f"{name}: "
                                           f"{dense_share:.0%} of its interior is more than "
                                           f"{VENTRICLE_TISSUE_MARGIN_HU:g} HU denser than the "
                                           "scan's CSF: the label spreads over tissue "
                                           "(white-matter disease, oedema, gliosis) and its "
                                           "volume is too large, or the ventricle holds blood",
                                           structures=(name,)))
            continue
        share = float(dense_counts[index] / counts[index])
        figures[name] = round(share, 3)
        if share > DENSE_FRACTION:
            report.flags.append(QcFlag("dense_in_structure", f"{name}: {share:.0%} of its "
                                       f"voxels are above {BLOOD_OR_CALCIUM_HU:g} HU (blood "
                                       "or calcification); its volume is unreliable",
                                       structures=(name,)))
    report.facts["ventricle_median_hu_and_dense_fraction"] = figures


#: A structure within this distance (mm) of a blood-like region is "next to" it.
NEAR_LESION_MM = 5.0


def check_hyperdense_regions(indices: NDArray[np.integer], crop_hu: NDArray[np.float32],
                             intracranial: NDArray[np.bool_], names: list[str],
                             spacing_mm: tuple[float, float, float],
                             report: AnatomyReport,
                             regions: tuple[NDArray[np.int32], NDArray[np.float64]] | None = None
                             ) -> None:
    """Blood-like regions inside the skull, and the structures next to them.

    A region of :data:`HYPERDENSE_HU` (after smoothing; calcium excluded) of at least
    :data:`HYPERDENSE_MIN_MM3` is a likely haemorrhage. Next to a structure it is a
    ``hyperdense_lesion`` warning naming the structures, whose labels and volumes the
    network may have got wrong (held-out heads with every kind of haemorrhage, the
    regions in-painted for the network: mean Dice 0.77 / 0.73 at 1 / 5 mm, 44 of 105
    adjacent volumes off by more than 15 %); elsewhere an info note.
    ``regions``: the output of :func:`hyperdense_regions` when the caller has it (the
    pipeline finds them once, before the network, for the in-painting too).
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    components, sizes = regions if regions is not None else \
        hyperdense_regions(crop_hu, intracranial, spacing_mm)
    large = np.flatnonzero(sizes >= HYPERDENSE_MIN_MM3)
    report.facts["hyperdense_regions_mm3"] = [round(float(sizes[i]), 1) for i in large]
    if large.size == 0:
        return
    region = large_hyperdense_regions((components, sizes))
    near = ndimage.distance_transform_edt(~region, sampling=spacing) <= NEAR_LESION_MM
    present = np.unique(np.asarray(indices)[near])
    near_names = [names[int(i) - 1] for i in present if 0 < int(i) <= len(names)]
    total_cm3 = float(sizes[large].sum()) / 1000.0
    if near_names:
        report.flags.append(QcFlag("hyperdense_lesion", f"{total_cm3:.1f} cm3 of blood-like "
                                   f"density ({HYPERDENSE_HU[0]:g}-{HYPERDENSE_HU[1]:g} HU) "
                                   f"next to {', '.join(near_names)}: a haemorrhage? The labels "
                                   "and volumes of these structures are unreliable",
                                   structures=tuple(near_names)))
    else:
        report.flags.append(QcFlag("hyperdense_lesion", f"{total_cm3:.1f} cm3 of blood-like "
                                   "density inside the skull, not next to a labelled "
                                   "structure: a haemorrhage?", "info"))


def check_asymmetry(volumes_mm3: dict[str, float | None], report: AnatomyReport) -> None:
    """Left/right asymmetry beyond :data:`ASYMMETRY_LIMIT_PERCENT` (canonical names)."""
    indices: dict[str, float] = {}
    for base, limit in ASYMMETRY_LIMIT_PERCENT.items():
        left, right = volumes_mm3.get(f"Left-{base}"), volumes_mm3.get(f"Right-{base}")
        if not left or not right:
            continue
        asymmetry = 100.0 * abs(left - right) / ((left + right) / 2.0)
        indices[base] = round(asymmetry, 1)
        if asymmetry > limit:
            larger = "left" if left > right else "right"
            report.flags.append(QcFlag("asymmetry", f"{base}: left {left / 1000:.1f} vs right "
                                       f"{right / 1000:.1f} cm3 ({asymmetry:.0f} % asymmetry, "
                                       f"{larger} larger; normal up to {limit:.0f} %): a "
                                       "lesion, atrophy or a segmentation error",
                                       structures=(f"Left-{base}", f"Right-{base}")))
    report.facts["asymmetry_percent"] = indices
