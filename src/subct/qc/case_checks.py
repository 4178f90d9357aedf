"""The QC checks of a segmented case, each a function of the finished case state.

Every check takes the :class:`~subct.inference.state.CaseState` after the labels and
volumes are measured, records what it measured in ``state.facts`` (``qc.input.facts`` of
the report) and returns its flags; a refusal raises
:class:`~subct.errors.SubctInputError` (``--force`` lets the case through). They run in
the order of :data:`subct.qc.registry.QC_CHECKS`. ``docs/segment.md`` says what each flag
means and what to do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from subct.errors import SubctInputError
from subct.image.masks import mask_edge_areas_mm2
from subct.inference.config import NO_TTA_NOTE
from subct.inference.postprocess import MIN_CALIBRATED_SHARE
from subct.inference.state import need
from subct.norms.models import ICV_KEY
from subct.qc.anatomy import (
    check_asymmetry,
    check_coverage,
    check_hyperdense_regions,
    check_intensities,
)
from subct.qc.checks import QcFlag

if TYPE_CHECKING:
    from subct.inference.state import CaseState

#: Dice between the plain and mirrored passes' labels below which a structure is
#: flagged ``low_reliability``. On the validation heads (benchmarks/bench_reliability.py)
#: 0.75 caught 12 of 26 poorly segmented structures with no false alarm among 110; 0.8
#: caught 16 but fired on every real and held-out head (accumbens, amygdala ≈ 0.79).
TTA_AGREEMENT_WARN = 0.75
#: Volume of labels removed on bone (mm³) above which the case is flagged.
LABELS_ON_BONE_WARN_MM3 = 500.0
#: Area (mm²) of the intracranial mask on the scan's topmost slice above which the vertex
#: is cut and the ICV is a lower bound. Whole heads: 0 (GE series, InVesalius); the same
#: scans with their top 20 mm removed: 3 500–6 700 mm² (ICV 1–3.5 % low), 60 mm:
#: 15 000–16 400 mm² (ICV a third low, yet inside the adult range of ``icv_range``;
#: ``benchmarks/bench_icv_coverage.py``).
ICV_TOP_EDGE_MM2 = 500.0
#: The same on the bottom slice, where the spinal canal (up to ~250 mm² in the whole
#: heads, more where a scan ends at the foramen magnum) is part of the mask: 20 mm
#: removed gave 2 800–3 800 mm² (ICV 1.3–2 % low), 30 mm 5 000–6 800 mm² (4–5.5 % low).
ICV_BOTTOM_EDGE_MM2 = 2000.0
#: Volume of labels removed outside the intracranial mask (mm³) above which the case is
#: flagged (a few voxels at the skull base are expected; more means a mislocated brain).
LABELS_OUTSIDE_WARN_MM3 = 200.0


def tta_reliability(state: CaseState) -> list[QcFlag]:
    """``low_reliability``: structures whose plain and mirrored passes disagree."""
    names = state.structure_names
    reliability = {names[index - 1]: round(score, 3) for index, score in state.agreement.items()}
    state.facts["tta_agreement_dice"] = reliability
    unreliable = [name for name, score in reliability.items() if score < TTA_AGREEMENT_WARN]
    if not unreliable:
        return []
    listed = ", ".join(f"{name} {reliability[name]:.2f}" for name in unreliable)
    return [QcFlag("low_reliability", "the labels of the plain and left/right mirrored "
                   f"network passes disagree (Dice below {TTA_AGREEMENT_WARN:g}): {listed}; "
                   "treat these volumes with caution", structures=tuple(unreliable))]


def intracranial_coverage(state: CaseState) -> list[QcFlag]:
    """``icv_cut_by_field_of_view``: the intracranial space reaches the scan's top slice
    (the vertex is cut) or, beyond what the spinal canal explains, its bottom slice (the
    skull base is cut), so the ICV is a lower bound (its percentile is withheld)."""
    location = state.location
    if location is None or location.mask is None or location.mask_affine is None \
            or location.intracranial_volume_mm3 is None:
        return []
    top, bottom = mask_edge_areas_mm2(location.mask, location.mask_affine)
    state.facts["intracranial_top_slice_mm2"] = round(top)
    state.facts["intracranial_bottom_slice_mm2"] = round(bottom)
    edges = [name for name, area, limit in (("top (vertex)", top, ICV_TOP_EDGE_MM2),
                                            ("bottom (skull base)", bottom, ICV_BOTTOM_EDGE_MM2))
             if area > limit]
    if not edges:
        return []
    return [QcFlag("icv_cut_by_field_of_view", "the intracranial space reaches the "
                   f"{' and the '.join(edges)} of the scan ({top / 100:.0f} and "
                   f"{bottom / 100:.0f} cm2 on its top and bottom slices), so the "
                   f"intracranial volume ({location.intracranial_volume_mm3 / 1000:.0f} cm3) "
                   "is a lower bound", structures=(ICV_KEY,))]


def _anatomy_flags_after(state: CaseState, count_before: int) -> list[QcFlag]:
    return state.anatomy.flags[count_before:]


def field_of_view(state: CaseState) -> list[QcFlag]:
    """``not_in_field_of_view`` / ``cut_by_field_of_view`` (:func:`check_coverage`); the
    volume of a structure outside the scan becomes unknown (None), never 0."""
    before = len(state.anatomy.flags)
    check_coverage(need(state.indices, "indices"), need(state.crop_hu, "crop_hu"),
                   state.structure_names, state.anatomy)
    outside = set(state.anatomy.not_in_view)
    # a merged structure (no side in its name) is unknown when both its sides are
    state.volumes_mm3 = {
        name: None if name in outside or {f"Left-{name}", f"Right-{name}"} <= outside
        else value for name, value in state.volumes_mm3.items()}
    return _anatomy_flags_after(state, before)


def basal_ganglia_coverage(state: CaseState) -> list[QcFlag]:
    """Refuse a scan that does not reach the basal ganglia (``--force`` overrides)."""
    if state.anatomy.reaches_basal_ganglia or state.config.force:
        return []
    raise SubctInputError(need(state.volume, "volume").path,
                          "the scan does not reach the basal ganglia (thalamus, caudate and "
                          "putamen are outside or cut by the field of view); use --force to "
                          "segment anyway")


def structure_intensities(state: CaseState) -> list[QcFlag]:
    """Ventricles on tissue, deep grey matter at blood or calcium density."""
    before = len(state.anatomy.flags)
    slice_mm = max(float(size) for size in need(state.volume, "volume").spacing)
    check_intensities(need(state.indices, "indices"), need(state.crop_hu, "crop_hu"),
                      state.structure_names, state.anatomy, slice_mm=slice_mm)
    return _anatomy_flags_after(state, before)


def hyperdense_lesions(state: CaseState) -> list[QcFlag]:
    """``hyperdense_lesion``: blood-like regions and the structures next to them."""
    if state.inside_crop is None:
        return []
    before = len(state.anatomy.flags)
    check_hyperdense_regions(need(state.indices, "indices"), need(state.crop_hu, "crop_hu"),
                             state.inside_crop, state.structure_names, state.model.spacing_mm,
                             state.anatomy, regions=state.blood_regions)
    return _anatomy_flags_after(state, before)


def left_right_asymmetry(state: CaseState) -> list[QcFlag]:
    """``asymmetry`` beyond the limits measured on real label maps."""
    before = len(state.anatomy.flags)
    check_asymmetry(state.volumes_mm3, state.anatomy)
    return _anatomy_flags_after(state, before)


def no_tta_note(state: CaseState) -> list[QcFlag]:
    """An info note when the flip averaging was switched off."""
    return [] if state.config.tta else [QcFlag("no_tta", NO_TTA_NOTE, "info")]


def _removed_labels(state: CaseState, voxels: int, fact: str, limit_mm3: float, code: str,
                    message: str) -> list[QcFlag]:
    """Record the volume (mm³) of labels a post-processing rule removed; flag above a limit.
    ``message`` follows the removed volume in cm³."""
    removed_mm3 = voxels * state.crop_voxel_mm3
    state.facts[fact] = round(removed_mm3, 1)
    if removed_mm3 <= limit_mm3:
        return []
    return [QcFlag(code, f"{removed_mm3 / 1000:.1f} cm3 of structure labels {message}")]


def labels_on_bone(state: CaseState) -> list[QcFlag]:
    """``labels_on_bone``: much structure removed on bone (a mislocated or cut brain)."""
    return _removed_labels(state, state.removed_on_bone_voxels, "labels_removed_on_bone_mm3",
                           LABELS_ON_BONE_WARN_MM3, "labels_on_bone",
                           "lay on bone (> 600 HU) and were removed: the brain may be "
                           "mislocated or cut by the field of view; check the overlay")


def weak_structure_evidence(state: CaseState) -> list[QcFlag]:
    """``weak_structure_evidence``: the calibration would remove most of a label."""
    names, scales, withheld = state.structure_names, state.class_scales, state.withheld
    state.facts["volume_calibration"] = {} if scales is None else {
        names[index - 1]: round(float(scales[index]), 3)
        for index in np.flatnonzero(scales != 1.0) if int(index) not in withheld}
    if not withheld:
        return []
    listed = ", ".join(f"{names[index - 1]} (would keep {share:.0%})"
                       for index, share in withheld.items())
    return [QcFlag("weak_structure_evidence", f"the network's evidence for {listed} is weak: "
                   "its volume calibration would remove more than "
                   f"{1 - MIN_CALIBRATED_SHARE:.0%} of the label (16-29 % on the shipped "
                   "model's clean validation heads), so the label is left uncalibrated; a "
                   "lesion or artefact nearby? The volume is unreliable",
                   structures=tuple(names[index - 1] for index in withheld))]


def labels_outside_skull(state: CaseState) -> list[QcFlag]:
    """``labels_outside_skull``: much structure outside the skull-enclosed space."""
    return _removed_labels(state, state.removed_outside_voxels,
                           "labels_removed_outside_intracranial_mm3", LABELS_OUTSIDE_WARN_MM3,
                           "labels_outside_skull",
                           "lay outside the skull-enclosed space and were removed: the brain "
                           "may be mislocated, or the skull open (craniectomy); check the "
                           "overlay")
