"""Quality control of ``subct segment``: is the input a head CT, where is the brain, and
can the segmentation be trusted?

Three kinds of checks, all reported in ``<case>_qc.json`` and the batch report:

- **Input** (:func:`assess_input`): the HU histogram of the head must show air, soft
  tissue and bone, the intracranial soft tissue must peak at brain HU (≈ 20–45 HU), the
  field of view must be head-sized, and the intracranial volume plausible.
- **Monte-Carlo dropout** (multimodal 3D UNet paper, ``../shared/papers``): N stochastic
  passes (N = 15 there) give each structure's volume N times; its coefficient of
  variation CV_s = σ_s / μ_s is flagged above :data:`MC_DROPOUT_CV_WARN_PERCENT`,
  calibrated on this model's validation heads (the paper's 2.5 % on the mean CV fired
  on every case here).
- **Volumes** (:data:`NORMAL_ADULT_RANGES_MM3`): structure volumes far outside normal
  adult ranges are flagged.

The input checks read the histogram and intracranial volume that the brain locator
(:func:`subct.image.intracranial.locate_intracranial`) measures on its skull-enclosed
mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from subct.image.intracranial import IntracranialLocation
from subct.image.volume import Volume

#: Share of intracranial soft tissue at brain density (20–50 HU) that makes a CT with a
#: CSF-dominated histogram (hydrocephalus) still a head CT.
BRAIN_DENSITY_MIN_SHARE = 0.25

#: MC-dropout warning threshold, per structure (CV of its volume over the passes, %).
#: Calibrated on the validation heads (maps 17–18, 1 mm and 5 mm, clean and with the
#: clinical pathology mix; 136 structures, 26 with true Dice < 0.7;
#: ``benchmarks/bench_reliability.py --mc 15``): above 10 % catches 19 of the 26 poor
#: structures and 7 of the 110 good ones. The 3D UNet paper's 2.5 % on the mean CV,
#: taken from another model, flagged 68 of the 110 good structures (every case).
MC_DROPOUT_CV_WARN_PERCENT = 10.0


#: Generous normal adult ranges of structure volumes (mm³, per hemisphere for paired
#: structures), FreeSurfer-style definitions. Lower/upper bounds were set so that they
#: bracket, with ≥ 25 % slack, (a) the 20 manually-curated SynthSeg training label maps
#: shipped in ``../shared/data`` (measured: e.g. thalamus 5 503–10 526, caudate
#: 2 412–4 776, putamen 3 277–6 749, pallidum 826–2 035, hippocampus 1 438–5 267,
#: amygdala 533–2 095, accumbens 267–790, brainstem 15 553–25 333, lateral ventricle
#: 2 768–48 342 mm³) and (b) published FreeSurfer normative volumes of healthy adults
#: aged 18–90 (e.g. Potvin et al., NeuroImage 2016, "Normative data for subcortical
#: regional volumes over the lifetime of the adult human brain"), from memory, not
#: re-checked here. They are not age-, sex- or ICV-adjusted: a flag means "look at
#: this case", not "abnormal". Lateral ventricles grow strongly with age, hence the
#: very wide range.
NORMAL_ADULT_RANGES_MM3: dict[str, tuple[float, float]] = {
    "Lateral-Ventricle": (1_500.0, 80_000.0),
    "Thalamus": (4_000.0, 12_000.0),
    "Caudate": (1_800.0, 6_500.0),
    "Putamen": (2_500.0, 8_500.0),
    "Pallidum": (600.0, 3_000.0),
    "Hippocampus": (1_500.0, 6_500.0),
    "Amygdala": (500.0, 2_800.0),
    "Accumbens-area": (150.0, 1_200.0),
    "Brain-Stem": (12_000.0, 35_000.0),
}


#: Intracranial volume range of adults (mm³): ≈ 1 100–1 900 cm³, widened.
NORMAL_ICV_RANGE_MM3 = (900_000.0, 2_200_000.0)


_PAPER7_TO_RANGE = {
    "Lateral-Ventricles": "Lateral-Ventricle", "Thalamus": "Thalamus", "Caudate": "Caudate",
    "Putamen": "Putamen", "Pallidum": "Pallidum", "Hippocampus": "Hippocampus",
    "Brain-Stem": "Brain-Stem",
}


def normal_range_mm3(structure: str, scheme: str) -> tuple[float, float] | None:
    """Normal adult volume range of ``structure`` (a name of ``scheme``), in mm³.

    Merged schemes add left and right, so their ranges are doubled (brainstem is single).
    """
    if scheme == "canonical":
        key = structure.removeprefix("Left-").removeprefix("Right-")
        return NORMAL_ADULT_RANGES_MM3.get(key)
    key = _PAPER7_TO_RANGE.get(structure, structure)
    bounds = NORMAL_ADULT_RANGES_MM3.get(key)
    if bounds is None:
        return None
    if key == "Brain-Stem":
        return bounds
    return (2.0 * bounds[0], 2.0 * bounds[1])


@dataclass
class QcFlag:
    """One finding: ``code`` (machine-readable), ``message`` (for people), ``severity``,
    and ``structures``: the structures whose labels or volumes it puts in doubt (empty when
    it concerns the whole case). ``statistics.csv`` lists each structure's own flags, so a
    study can drop one doubtful volume without dropping the case."""

    code: str
    message: str
    severity: str = "warning"
    structures: tuple[str, ...] = ()

    def concerns(self, structure: str) -> bool:
        """True when this flag casts doubt on ``structure``'s labels (every structure for
        a whole-case flag)."""
        return not self.structures or structure in self.structures


@dataclass
class InputCheck:
    """Result of :func:`assess_input`: flags plus the numbers they were based on."""

    looks_like_head_ct: bool
    flags: list[QcFlag]
    hu_offset: float
    facts: dict[str, Any]


#: Correlation of in-plane neighbouring voxels (HU clipped to −1024..3000) below which an
#: image is not anatomy: noise or random data. Real head CTs measure 0.93–0.996 (air,
#: soft tissue and bone form large regions; ``benchmarks/bench_noise_gate.py``);
#: uniform noise measures ≈ 0.
MIN_NEIGHBOUR_CORRELATION = 0.5


def neighbour_correlation(volume: Volume, hu_offset: float = 0.0,
                          slices: int = 12) -> float:
    """Pearson correlation between in-plane neighbouring voxels (axis 0) over up to
    ``slices`` evenly spaced slices of the last axis: near 1 for images of objects,
    near 0 for noise."""
    array = np.asarray(volume.array)
    picks = np.unique(np.linspace(0, array.shape[2] - 1, slices).round().astype(int))
    block = np.clip(array[:, :, picks].astype(np.float32) - np.float32(hu_offset),
                    -1024.0, 3000.0)
    first, second = block[:-1].ravel(), block[1:].ravel()
    if first.std() == 0 or second.std() == 0:
        return 1.0  # a constant image is not noise; other checks refuse it
    return float(np.corrcoef(first, second)[0, 1])


def assess_input(volume: Volume, location: IntracranialLocation,
                 hu_offset: float = 0.0) -> InputCheck:
    """Does the image look like a head CT? (HU histogram, field of view, ICV.)"""
    flags: list[QcFlag] = []
    hist = location.histogram
    not_ct = False
    if hu_offset:
        flags.append(QcFlag("hu_offset", f"intensities looked like HU+{hu_offset:g} (no "
                            "negative values); shifted to HU", "info"))
    if volume.metadata.get("orientation_unknown"):
        flags.append(QcFlag("orientation_unknown", "the file records no anatomical "
                            "orientation (segmented with --force): labels may be mirrored "
                            "or upside down; check the overlay"))
    if volume.metadata.get("orientation_assumed"):
        flags.append(QcFlag("orientation_assumed", "the file records no orientation; "
                            f"{volume.metadata['orientation_assumed']} was assumed as asked "
                            "(--assume-orientation)", "info"))
    gaps = volume.metadata.get("dicom_slice_gaps") or {}
    if gaps.get("missing_slices"):
        flags.append(QcFlag("missing_slices", f"about {gaps['missing_slices']} slice(s) are "
                            f"missing from the DICOM series ({gaps['largest_missing_mm']:g} mm "
                            "without a slice): structures there are interpolated across the "
                            "gap and their volumes are unreliable"))
    low = float(np.min(volume.array)) - hu_offset
    high = float(np.max(volume.array)) - hu_offset
    if low < -4000.0 or high > 40000.0:
        not_ct = True
        flags.append(QcFlag("hu_range", f"values {low:g}..{high:g} are outside any CT range "
                            "in Hounsfield units (-1024..about 30000)"))
    if low > -500.0:
        not_ct = True
        flags.append(QcFlag("no_air", f"lowest value {low:g} is far above air (-1000 HU); "
                            "this does not look like CT in Hounsfield units"))
    correlation = neighbour_correlation(volume, hu_offset)
    if correlation < MIN_NEIGHBOUR_CORRELATION:
        not_ct = True
        flags.append(QcFlag("not_anatomical", f"neighbouring voxels are uncorrelated "
                            f"(r = {correlation:.2f}; images of a head give above 0.9): "
                            "noise or random data, not an image of anatomy"))
    if hist.get("bone_fraction_of_head", 0.0) < 0.01:
        not_ct = True
        flags.append(QcFlag("no_bone", "under 1 % of the head is above 250 HU: no skull "
                            "(not a head CT, or skull-stripped)"))
    mode = hist.get("brain_hu_mode")
    brain_share = float(hist.get("brain_density_fraction", 0.0))
    # The mode alone is not enough: with hydrocephalus or severe atrophy CSF (0-15 HU)
    # outweighs the brain, yet a quarter of the intracranial tissue is still at brain
    # density (20-50 HU); an MRI or a phantom has neither.
    if mode is None or (not 10.0 <= mode <= 60.0 and brain_share < BRAIN_DENSITY_MIN_SHARE):
        not_ct = True
        flags.append(QcFlag("brain_hu", f"intracranial soft tissue peaks at {mode} HU and "
                            f"only {brain_share:.0%} of it is at brain density (20-50 HU); "
                            "brain is expected at about 20-45 HU"))
    elif not 10.0 <= mode <= 60.0:
        flags.append(QcFlag("csf_dominant", f"intracranial tissue peaks at {mode} HU (CSF), "
                            f"{brain_share:.0%} at brain density: hydrocephalus, severe "
                            "atrophy or a large CSF space; check the overlay"))
    extent = location.head_extent_mm
    if max(extent[0], extent[1]) > 300.0:
        flags.append(QcFlag("fov_large", f"head mask spans {extent[0]:.0f}x{extent[1]:.0f} mm "
                            "in-plane: larger than a head (body CT?)"))
        not_ct = True
    if extent[2] < 40.0:
        flags.append(QcFlag("fov_thin", f"only {extent[2]:.0f} mm of the head is covered "
                            "superior-inferior; the deep brain may be cut off"))
    if location.method != "skull":
        flags.append(QcFlag("no_skull_ring", "no skull-enclosed brain found; the crop was "
                            f"centred using {location.method}"))
    icv = location.intracranial_volume_mm3
    if icv is not None and not NORMAL_ICV_RANGE_MM3[0] <= icv <= NORMAL_ICV_RANGE_MM3[1]:
        flags.append(QcFlag("icv_range", f"intracranial volume {icv / 1000:.0f} cm3 is "
                            "outside the adult range 900-2200 cm3 (partial field of view?)"))
    facts: dict[str, Any] = dict(hist)
    facts["neighbour_correlation"] = round(correlation, 3)
    facts.update({"head_extent_mm": list(extent), "locator": location.method,
                  "intracranial_centroid_ras_mm": [float(v) for v in location.centroid_ras_mm],
                  "input_spacing_mm": [float(v) for v in volume.spacing],
                  "input_shape": list(volume.shape),
                  "input_orientation": volume.orientation})
    return InputCheck(not not_ct, flags, hu_offset, facts)


@dataclass
class McDropoutQc:
    """Monte-Carlo dropout result: per-structure CV of volume (%) and its mean."""

    samples: int
    cv_percent: dict[str, float]
    mean_cv_percent: float
    threshold_percent: float = MC_DROPOUT_CV_WARN_PERCENT

    @property
    def uncertain(self) -> list[str]:
        """Structures whose volume CV exceeds the calibrated threshold."""
        return [name for name, cv in self.cv_percent.items() if cv > self.threshold_percent]

    @property
    def warn(self) -> bool:
        """True when any structure's CV exceeds :data:`MC_DROPOUT_CV_WARN_PERCENT`."""
        return bool(self.uncertain)


def mc_dropout_cv(volumes: NDArray[np.float64], names: list[str]) -> McDropoutQc:
    """CV_s = std/mean of each structure's volume over MC samples (percent), and the mean.

    Structures absent from every sample are left out of the mean (their CV is
    undefined); the paper averages over all segmented structures.
    """
    means = volumes.mean(axis=0)
    stds = volumes.std(axis=0, ddof=1) if volumes.shape[0] > 1 else np.zeros_like(means)
    cv: dict[str, float] = {}
    for name, mean, std in zip(names, means, stds, strict=True):
        if mean > 0:
            cv[name] = float(100.0 * std / mean)
    mean_cv = float(np.mean(list(cv.values()))) if cv else float("nan")
    return McDropoutQc(int(volumes.shape[0]), cv, mean_cv)


@dataclass
class QcReport:
    """Everything ``<case>_qc.json`` holds. ``flagged`` is True when any warning fired."""

    flags: list[QcFlag]
    input: InputCheck
    mc_dropout: McDropoutQc | None
    mc_dropout_note: str | None
    volume_ranges_mm3: dict[str, tuple[float, float]]

    @property
    def flagged(self) -> bool:
        """True when there is at least one warning (info notes do not count)."""
        return any(flag.severity == "warning" for flag in self.flags)

    def to_json_dict(self) -> dict[str, Any]:
        """Plain-JSON form for ``<case>_qc.json``."""
        mc = None
        if self.mc_dropout is not None:
            mc = {"samples": self.mc_dropout.samples,
                  "cv_percent": self.mc_dropout.cv_percent,
                  "mean_cv_percent": self.mc_dropout.mean_cv_percent,
                  "threshold_percent": self.mc_dropout.threshold_percent,
                  "warn": self.mc_dropout.warn,
                  "uncertain_structures": self.mc_dropout.uncertain}
        return {
            "flagged": self.flagged,
            "looks_like_head_ct": self.input.looks_like_head_ct,
            "flags": [asdict(flag) for flag in self.flags],
            "mc_dropout": mc,
            "mc_dropout_note": self.mc_dropout_note,
            "input": self.input.facts,
            "hu_offset": self.input.hu_offset,
            "normal_volume_ranges_mm3": {k: list(v) for k, v in self.volume_ranges_mm3.items()},
        }


def check_volumes(volumes_mm3: dict[str, float | None], scheme: str
                  ) -> tuple[list[QcFlag], dict[str, tuple[float, float]]]:
    """Flag structures whose volume is outside :data:`NORMAL_ADULT_RANGES_MM3`."""
    flags: list[QcFlag] = []
    ranges: dict[str, tuple[float, float]] = {}
    for name, value in volumes_mm3.items():
        bounds = normal_range_mm3(name, scheme)
        if bounds is None:
            continue
        ranges[name] = bounds
        if value is None:  # outside the field of view: flagged by the coverage check
            continue
        if value == 0.0:
            flags.append(QcFlag("structure_missing", f"{name}: not found",
                                structures=(name,)))
        elif not bounds[0] <= value <= bounds[1]:
            flags.append(QcFlag("volume_range", f"{name}: {value:.0f} mm3 is outside the "
                                f"normal adult range {bounds[0]:.0f}-{bounds[1]:.0f} mm3",
                                structures=(name,)))
    return flags, ranges


def build_qc_report(volumes_mm3: dict[str, float | None], scheme: str, input_check: InputCheck,
                    location: IntracranialLocation, *, mc_volumes: NDArray[np.float64] | None,
                    mc_structure_names: list[str], mc_requested: int) -> QcReport:
    """Combine input checks, volume plausibility and MC-dropout CV into one report."""
    flags = list(input_check.flags)
    volume_flags, ranges = check_volumes(volumes_mm3, scheme)
    flags.extend(volume_flags)
    mc = None
    note = None
    if mc_volumes is not None:
        mc = mc_dropout_cv(mc_volumes, mc_structure_names)
        if mc.warn:
            listed = ", ".join(f"{name} {mc.cv_percent[name]:.0f} %" for name in mc.uncertain)
            flags.append(QcFlag("mc_dropout_cv", "MC-dropout variation of the volume above "
                                f"{mc.threshold_percent:g} %: {listed}; these volumes are "
                                "uncertain", structures=tuple(mc.uncertain)))
    elif mc_requested >= 2:
        note = "the model has no dropout layers; Monte-Carlo dropout QC is not available"
        flags.append(QcFlag("mc_dropout_unavailable", note, "info"))
    return QcReport(flags, input_check, mc, note, ranges)
