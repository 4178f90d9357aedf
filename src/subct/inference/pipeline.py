"""The segmentation pipeline behind ``subct segment`` and :func:`subct.segment`.

Steps, for one head CT (a :class:`~subct.image.volume.Volume` in Hounsfield units):

1. **Intensities.** CT stored as HU+1024 (unsigned, e.g. old VTK/NRRD exports) is
   detected and shifted back to HU.
2. **Locate the brain** (:func:`subct.image.intracranial.locate_intracranial`): soft
   tissue that the skull surrounds (rays cast from it meet bone before outside air) is
   the intracranial space; its centroid places a fixed deep-brain box
   (:data:`DEFAULT_CROP_SIZE_MM`), its volume is the intracranial volume (ICV) reported
   for normalisation, and no structure label is kept outside it.
3. **Resample** only that box, from the input's native grid through the full affines
   (oblique and tilted grids included), onto an axis-aligned RAS grid at the model's
   spacing, with Gaussian anti-aliasing when downsampling. The network never sees
   the rest of the field of view.
4. **Network**: Gaussian-blended sliding windows of the training patch size
   (:func:`subct.inference.window.sliding_window_logits`, MONAI's placement and weights), or
   one pass when the box fits the patch or ``max_single_pass_voxels``. The engine
   and precision follow :mod:`subct.model.runtime`: OpenVINO fp32 on CPU by default,
   PyTorch (bf16 autocast + channels-last on CPUs with native bf16) when asked for,
   PyTorch AMP on CUDA. Voxels below the HU window (air, fat) are forced to background.
5. **Left/right flip TTA**: the box is mirrored along x, the output mirrored back and
   its left/right channels swapped, and the two softmax maps averaged. The plain and
   mirrored windows at each place run as one batch of two.
6. **Largest connected component** per structure.
7. **Back to the native grid**: each structure's mask is linearly interpolated onto the
   input's own voxel grid (≥ 0.5 wins, ties to the strongest), so the label map has
   the input's exact shape and affine and overlays it in any viewer.

The optional Monte-Carlo dropout QC (:class:`InferenceConfig.mc_dropout_samples`)
reruns the network with dropout active, as in the multimodal 3D UNet paper (N = 15).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctInputError
from subct.image.intracranial import IntracranialLocation, locate_intracranial
from subct.image.masks import depth_inside_mm, skull_strip_mask
from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.labels.schemes import (
    indices_to_labels,
    scheme_labels,
    scheme_names,
)
from subct.model.preprocessing import ct_window_normalise
from subct.qc.anatomy import (
    AnatomyReport,
    check_asymmetry,
    check_coverage,
    check_hyperdense_regions,
    check_intensities,
    hyperdense_regions,
    large_hyperdense_regions,
)
from subct.qc.checks import QcFlag, assess_input, build_qc_report
from subct.qc.gate import check_head_ct, check_orientation, check_size

if TYPE_CHECKING:

    from subct.qc.checks import QcReport
from subct.inference.config import NO_TTA_NOTE, InferenceConfig
from subct.inference.crop import (
    CropGrid,
    crop_grid,
    labels_to_native,
    pitch_rotation,
    resample_to_crop,
)
from subct.inference.denoise import denoise_for_network
from subct.inference.dense import inpaint_blood_like_regions, inpaint_dense_foci
from subct.inference.model import SegmentationModel, cached_model
from subct.inference.postprocess import (
    MIN_CALIBRATED_SHARE,
    _convert_scheme,
    apply_class_scales,
    keep_largest_components,
    remove_labels_on_bone,
    remove_labels_outside,
)
from subct.inference.predict import mc_dropout_volumes, predict_probabilities
from subct.inference.window import class_argmax
from subct.io.hounsfield import detect_hu_offset
from subct.model.registry import reference_pitch_deg


@dataclass
class Posteriors:
    """Softmax probabilities on the crop grid: ``probabilities[c]`` for class index c."""

    probabilities: NDArray[np.float32]
    grid: CropGrid
    scheme: str

    def class_labels(self) -> tuple[int, ...]:
        """Label value of each channel (0 = background first)."""
        return (0,) + scheme_labels(self.scheme)


@dataclass
class SegmentationResult:
    """What :func:`segment` returns; nothing is written to disk.

    Attributes:
        labels: label map on the input's own grid (same shape and affine), values in
            ``scheme`` (FreeSurfer IDs for ``canonical``).
        volumes_mm3: structure name → volume in mm³, measured on ``labels``; None for a
            structure outside the scanned field of view (``not_in_field_of_view``).
        intracranial_volume_mm3: ICV estimated from the CT (None when not found).
        qc: quality report (MC-dropout CV, volume plausibility, input checks).
        scheme: label scheme of ``labels``.
        crop: the RAS grid the network ran on.
        posteriors: softmax maps on ``crop`` when asked for.
        timings_s: seconds spent per step.
        runtime: what ran the network (CPU model and flags, precision, engine, threads).
        hu_statistics: structure name → mean and standard deviation of its voxels' HU
            on the input grid (TotalSegmentator's ``--statistics`` intensities).
    """

    labels: Volume
    volumes_mm3: dict[str, float | None]
    intracranial_volume_mm3: float | None
    qc: QcReport
    scheme: str
    crop: CropGrid
    posteriors: Posteriors | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    hu_statistics: dict[str, dict[str, float | None]] = field(default_factory=dict)


def _as_volume(image: str | Path | Volume) -> Volume:
    if isinstance(image, Volume):
        return image
    return load_volume(image)


#: Dice between the plain and mirrored passes' labels below which a structure is
#: flagged ``low_reliability``. On the validation heads (benchmarks/bench_reliability.py)
#: 0.75 caught 12 of 26 poorly segmented structures with no false alarm among 110; 0.8
#: caught 16 but fired on every real and held-out head (accumbens, amygdala ≈ 0.79).
TTA_AGREEMENT_WARN = 0.75

#: Larger deviations are not aligned (an implausible pose estimate, e.g. partial cover).
MAX_PITCH_ALIGN_DEG = 30.0
#: Volume of labels removed on bone (mm³) above which the case is flagged.
LABELS_ON_BONE_WARN_MM3 = 500.0
#: Labels are kept up to this far (mm) outside the intracranial mask: the mask is found on
#: a 2 mm grid and its edge against the skull base is uncertain by about one voxel.
INTRACRANIAL_MARGIN_MM = 2.0
#: Volume of labels removed outside the intracranial mask (mm³) above which the case is
#: flagged (a few voxels at the skull base are expected; more means a mislocated brain).
LABELS_OUTSIDE_WARN_MM3 = 200.0


def crop_class_indices(probabilities: NDArray[np.float32], image_01: NDArray[np.float32],
                       config: InferenceConfig, threads: int = 1) -> NDArray[np.int64]:
    """Class indices on the network grid from the softmax: voxels below the HU window
    forced to background (``mask_below_window``; modifies ``probabilities``), argmax,
    then the largest component of each structure (``largest_component``).

    The one post-processing of the network output, used by :func:`segment_volume` (after
    the volume calibration, :func:`subct.inference.postprocess.apply_class_scales`) and
    by the test evaluation after training.
    """
    num_classes = int(probabilities.shape[0])
    if config.mask_below_window:
        outside = image_01 <= 0.0
        probabilities[1:] *= ~outside  # (a boolean index over 17 channels took 0.17 s)
        probabilities[0][outside] = 1.0
    indices = class_argmax(probabilities, threads)
    if config.largest_component:
        indices = keep_largest_components(indices, num_classes, config.component_min_fraction)
    return np.asarray(indices, dtype=np.int64)


def _mean_sd(count: float, total: float, squares: float) -> dict[str, float | None]:
    """Mean and standard deviation (HU) from a voxel count, sum and sum of squares."""
    if count < 1:
        return {"mean_hu": None, "sd_hu": None}
    mean = total / count
    variance = max(squares / count - mean * mean, 0.0)
    return {"mean_hu": round(mean, 1), "sd_hu": round(float(np.sqrt(variance)), 1)}


def _blank_outside_view(volumes: dict[str, float], not_in_view: list[str]
                        ) -> dict[str, float | None]:
    """Volumes with None (unknown, not 0) for structures outside the field of view; a
    merged structure is unknown when both its sides are."""
    outside = set(not_in_view)
    return {name: None if name in outside or {f"Left-{name}", f"Right-{name}"} <= outside
            else value for name, value in volumes.items()}


def _crop_rotation(location: IntracranialLocation, model: SegmentationModel,
                   config: InferenceConfig) -> NDArray[np.float64] | None:
    """The rotation that turns the crop with the head's pitch to the pose of the model's
    training data (None: axis-aligned crop — no recorded pose, ``align_pitch`` off, no
    pitch estimate, or one more than :data:`MAX_PITCH_ALIGN_DEG` from the pose). The
    network then sees every head at the centre of its training augmentation, and a
    pitched rescan the same way."""
    reference = reference_pitch_deg(model.path, model.metadata.reference_pitch_deg)
    if not config.align_pitch or reference is None:
        return None
    head_pitch = location.pitch_deg()
    if head_pitch is None or abs(head_pitch - reference) > MAX_PITCH_ALIGN_DEG:
        return None
    return pitch_rotation(head_pitch - reference)


def segment_volume(image: str | Path | Volume, model: SegmentationModel,
                   config: InferenceConfig | None = None,
                   on_step: Callable[[str], None] | None = None) -> SegmentationResult:
    """Segment one head CT with an already loaded ``model`` (nothing written to disk).

    ``on_step`` is called with the name of each step as it starts (``checking input``,
    ``locating the brain``, ``network``, ``MC dropout``, ``post-processing``), for a
    progress display.

    Raises:
        SubctInputError: the file cannot be read, no head could be found in it, or it
            fails the head-CT gate (:mod:`subct.qc.gate`; ``config.force`` overrides).
    """
    step = on_step or (lambda name: None)
    config = config or InferenceConfig()
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    step("checking input")
    volume = _as_volume(image)
    volume = check_orientation(volume, config.assume_orientation, config.force)
    check_size(volume, config.force)
    hu_offset = detect_hu_offset(volume) if config.hu_offset is None else config.hu_offset
    timings["read"] = time.perf_counter() - clock

    clock = time.perf_counter()
    step("locating the brain")
    location = locate_intracranial(volume, hu_offset=hu_offset)
    input_check = assess_input(volume, location, hu_offset=hu_offset)
    check_head_ct(volume, input_check, config.force)
    turn = _crop_rotation(location, model, config)
    offset = np.asarray(config.crop_offset_mm) if turn is None \
        else turn @ np.asarray(config.crop_offset_mm)
    # Rounded to 0.01 mm so that float noise in the centroid cannot make runs on
    # mirrored or re-ordered copies of an image sample the crop at different points.
    center = np.round(location.centroid_ras_mm + offset, 2)
    grid = crop_grid(center, model.spacing_mm, config.crop_size_mm, model.size_divisor, turn)
    crop_hu = resample_to_crop(volume, grid, hu_offset)
    if model.metadata.skull_strip:  # the model was trained on skull-stripped inputs
        brain = skull_strip_mask(crop_hu, model.spacing_mm)
        crop_hu = np.where(brain, crop_hu, np.float32(model.metadata.hu_window[0]))
    # the skull-enclosed space on the crop grid (None: no skull found, nothing relies on it)
    inside_crop = location.mask_on(grid.geometry) if location.method == "skull" else None
    # distance (mm) from the skull-enclosed space's edge: computed once, used by the
    # in-painting and the hyperdense-region check
    depth_mm = None if inside_crop is None else depth_inside_mm(inside_crop, model.spacing_mm)
    network_hu, inpainted_voxels, blood_filled_voxels = crop_hu, 0, 0
    if config.inpaint_dense_foci and inside_crop is not None:
        network_hu, inpainted_voxels = inpaint_dense_foci(crop_hu, inside_crop,
                                                          model.spacing_mm, depth_mm)
    # blood-like regions: found once on the original HU, filled for the network when
    # asked, named by the hyperdense-lesion warning either way
    blood_regions = None if inside_crop is None else \
        hyperdense_regions(crop_hu, inside_crop, model.spacing_mm, depth_mm)
    if config.inpaint_blood and blood_regions is not None and inside_crop is not None:
        network_hu, blood_filled_voxels = inpaint_blood_like_regions(
            network_hu, large_hyperdense_regions(blood_regions), inside_crop,
            model.spacing_mm)
    noise_hu, smoothing_mm = None, 0.0
    if config.denoise and inside_crop is not None:
        network_hu, noise_hu, smoothing_mm = denoise_for_network(network_hu, inside_crop,
                                                                 model.spacing_mm)
    image_01 = ct_window_normalise(network_hu, tuple(model.metadata.hu_window))  # type: ignore[arg-type]
    timings["locate_and_resample"] = time.perf_counter() - clock

    clock = time.perf_counter()
    step("network")
    agreement: dict[int, float] = {}
    probabilities = predict_probabilities(model, image_01, config, agreement=agreement)
    timings["network"] = time.perf_counter() - clock

    clock = time.perf_counter()
    if config.mc_dropout_samples >= 2:
        step("MC dropout")
    crop_voxel_mm3 = float(np.prod(model.spacing_mm))
    mc_volumes = mc_dropout_volumes(model, image_01, config, crop_voxel_mm3)
    if config.mc_dropout_samples >= 2:
        timings["mc_dropout"] = time.perf_counter() - clock

    clock = time.perf_counter()
    step("post-processing")
    num_classes = int(probabilities.shape[0])
    class_scales = model.class_scale_vector() if config.calibrate_volumes else None
    withheld = {} if class_scales is None else apply_class_scales(probabilities, class_scales)
    indices = crop_class_indices(probabilities, image_01, config, model.threads)
    indices, removed_voxels = remove_labels_on_bone(indices, crop_hu)
    outside_voxels = 0
    if location.method == "skull":  # only a skull-enclosed mask is trusted to cut labels
        inside = location.mask_on(grid.geometry, margin_mm=INTRACRANIAL_MARGIN_MM)
        indices, outside_voxels = remove_labels_outside(indices, inside)
    native_indices = labels_to_native(indices, grid, volume.geometry, num_classes,
                                      probabilities)
    # Class index → output label through a tiny look-up table (one pass over the
    # native grid, no int64 copies of it); volumes from the labelled voxels only.
    class_values = indices_to_labels(np.arange(num_classes), model.network_scheme)
    lookup = _convert_scheme(class_values, model.network_scheme, config.scheme, volume)
    output = lookup[native_indices]
    labels = volume.with_array(output, description="subct segment labels")
    names = scheme_names(config.scheme)
    labelled = native_indices > 0
    classes_here = native_indices[labelled]
    class_counts = np.bincount(classes_here, minlength=num_classes)
    hu_here = np.asarray(volume.array)[labelled].astype(np.float64) - hu_offset
    hu_sums = np.bincount(classes_here, weights=hu_here, minlength=num_classes)
    hu_squares = np.bincount(classes_here, weights=hu_here * hu_here, minlength=num_classes)
    volumes: dict[str, float] = {name: 0.0 for name in names.values()}
    sums: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in names.values()}
    for index in range(1, num_classes):
        value = int(lookup[index])
        if value in names:
            volumes[names[value]] += float(class_counts[index]) * volume.voxel_volume_mm3
            totals = sums[names[value]]
            totals[0] += float(class_counts[index])
            totals[1] += float(hu_sums[index])
            totals[2] += float(hu_squares[index])
    hu_statistics = {name: _mean_sd(*totals) for name, totals in sums.items()}
    timings["postprocess"] = time.perf_counter() - clock

    mc_names = [scheme_names(model.network_scheme)[v] for v in scheme_labels(model.network_scheme)]
    anatomy = AnatomyReport()
    check_coverage(indices, crop_hu, mc_names, anatomy)
    if not anatomy.reaches_basal_ganglia and not config.force:
        raise SubctInputError(volume.path, "the scan does not reach the basal ganglia "
                                           "(thalamus, caudate and putamen are outside or cut "
                                           "by the field of view); use --force to segment "
                                           "anyway")
    check_intensities(indices, crop_hu, mc_names, anatomy,
                      slice_mm=max(float(size) for size in volume.spacing))
    if inside_crop is not None:
        check_hyperdense_regions(indices, crop_hu, inside_crop, mc_names, model.spacing_mm,
                                 anatomy, regions=blood_regions)
    volumes_mm3 = _blank_outside_view(volumes, anatomy.not_in_view)
    check_asymmetry(volumes_mm3, anatomy)
    qc = build_qc_report(volumes_mm3, config.scheme, input_check, location,
                         mc_volumes=mc_volumes, mc_structure_names=mc_names,
                         mc_requested=config.mc_dropout_samples)
    reliability = {mc_names[index - 1]: round(score, 3) for index, score in agreement.items()}
    qc.input.facts["tta_agreement_dice"] = reliability
    unreliable = [name for name, score in reliability.items() if score < TTA_AGREEMENT_WARN]
    if unreliable:
        listed = ", ".join(f"{name} {reliability[name]:.2f}" for name in unreliable)
        qc.flags.append(QcFlag("low_reliability", "the labels of the plain and left/right "
                               "mirrored network passes disagree (Dice below "
                               f"{TTA_AGREEMENT_WARN:g}): {listed}; treat these volumes "
                               "with caution", structures=tuple(unreliable)))
    qc.flags.extend(anatomy.flags)
    qc.input.facts["anatomy"] = anatomy.facts
    if not config.tta:
        qc.flags.append(QcFlag("no_tta", NO_TTA_NOTE, "info"))
    removed_mm3 = removed_voxels * crop_voxel_mm3
    qc.input.facts["labels_removed_on_bone_mm3"] = round(removed_mm3, 1)
    if removed_mm3 > LABELS_ON_BONE_WARN_MM3:
        qc.flags.append(QcFlag("labels_on_bone", f"{removed_mm3 / 1000:.1f} cm3 of structure "
                               "labels lay on bone (> 600 HU) and were removed: the brain may "
                               "be mislocated or cut by the field of view; check the overlay"))
    qc.input.facts["volume_calibration"] = (
        {} if class_scales is None else
        {mc_names[index - 1]: round(float(class_scales[index]), 3)
         for index in np.flatnonzero(class_scales != 1.0) if int(index) not in withheld})
    if withheld:
        listed = ", ".join(f"{mc_names[index - 1]} (would keep {share:.0%})"
                           for index, share in withheld.items())
        qc.flags.append(QcFlag("weak_structure_evidence", "the network's evidence for "
                               f"{listed} is weak: its volume calibration would remove "
                               f"more than {1 - MIN_CALIBRATED_SHARE:.0%} of the label "
                               "(16-29 % on the shipped model's clean validation heads), "
                               "so the label is left uncalibrated; a lesion or artefact "
                               "nearby? The volume is unreliable",
                               structures=tuple(mc_names[index - 1] for index in withheld)))
    qc.input.facts["dense_foci_inpainted_mm3"] = round(inpainted_voxels * crop_voxel_mm3, 1)
    qc.input.facts["blood_like_inpainted_mm3"] = round(blood_filled_voxels * crop_voxel_mm3, 1)
    qc.input.facts["brain_noise_hu"] = None if noise_hu is None else round(noise_hu, 2)
    qc.input.facts["network_input_smoothing_mm"] = smoothing_mm
    outside_mm3 = outside_voxels * crop_voxel_mm3
    qc.input.facts["labels_removed_outside_intracranial_mm3"] = round(outside_mm3, 1)
    if outside_mm3 > LABELS_OUTSIDE_WARN_MM3:
        qc.flags.append(QcFlag("labels_outside_skull", f"{outside_mm3 / 1000:.1f} cm3 of "
                               "structure labels lay outside the skull-enclosed space and "
                               "were removed: the brain may be mislocated, or the skull "
                               "open (craniectomy); check the overlay"))
    posteriors = None
    if config.keep_posteriors:
        posteriors = Posteriors(probabilities.astype(np.float32, copy=False), grid,
                                model.network_scheme)
    return SegmentationResult(
        labels=labels,
        volumes_mm3=volumes_mm3,
        intracranial_volume_mm3=location.intracranial_volume_mm3,
        qc=qc,
        scheme=config.scheme,
        crop=grid,
        posteriors=posteriors,
        timings_s=timings,
        runtime=model.runtime(),
        hu_statistics=hu_statistics,
    )


def segment(image: str | Path | Volume, model: str | Path | SegmentationModel | None = None,
            config: InferenceConfig | None = None, **options: Any) -> SegmentationResult:
    """Segment the 17 subcortical structures of a head CT, without touching the disk.

    Args:
        image: a path (NIfTI/MGZ/NRRD/DICOM folder) or a :class:`~subct.image.volume.Volume` in HU.
        model: a loaded :class:`SegmentationModel`, a checkpoint path, a registry name,
            or None for the shipped model. Loaded models are cached per process.
        config: inference options; alternatively pass them as keywords
            (``tta=False``, ``mc_dropout_samples=15``, ``scheme="merged"``, ...).

    Returns:
        labels on the input's grid, volumes (mm³), intracranial volume and QC.
    """
    if config is None:
        config = InferenceConfig(**options)
    elif options:
        config = config.replace(**options)
    if not isinstance(model, SegmentationModel):
        model = cached_model(model, config)
    return segment_volume(image, model, config)
