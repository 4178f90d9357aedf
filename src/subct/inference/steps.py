"""The ordered steps of ``subct segment``, each a small function of the case state.

:data:`SEGMENT_STEPS` is the pipeline: read → locate → crop → clean → window → predict →
MC dropout → post-process → to native → measure → QC. Each step takes the
:class:`~subct.inference.state.CaseState`, records its results on it and returns it;
:func:`subct.inference.pipeline.segment_volume` runs the list. A new step is one function
here and one entry in the list; a new QC check goes in :mod:`subct.qc.registry` instead.

Geometry: the crop is an axis-aligned RAS box (or one turned to the model's reference
pitch) at the model's spacing (mm), centred on the located intracranial centroid plus
``crop_offset_mm``; HU are Hounsfield units after removing a storage offset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from subct.image.hyperdense import hyperdense_regions, large_hyperdense_regions
from subct.image.intracranial import IntracranialLocation, locate_intracranial
from subct.image.masks import depth_inside_mm, skull_strip_mask
from subct.image.volume import Volume
from subct.inference.config import FIRST_STEP, InferenceConfig
from subct.inference.crop import crop_grid, labels_to_native, pitch_rotation, resample_to_crop
from subct.inference.denoise import denoise_for_network
from subct.inference.dense import inpaint_blood_like_regions, inpaint_dense_foci
from subct.inference.model import SegmentationModel
from subct.inference.postprocess import (
    _convert_scheme,
    apply_class_scales,
    keep_largest_components,
    remove_labels_on_bone,
    remove_labels_outside,
)
from subct.inference.predict import mc_dropout_volumes, predict_probabilities
from subct.inference.state import CaseState, need
from subct.inference.window import class_argmax
from subct.io.hounsfield import detect_hu_offset
from subct.io.readers import load_volume
from subct.labels.schemes import indices_to_labels, scheme_names
from subct.model.preprocessing import ct_window_normalise
from subct.model.registry import reference_pitch_deg
from subct.qc.checks import assess_input, build_qc_report
from subct.qc.gate import check_head_ct, check_orientation, check_size, check_slice_gaps
from subct.qc.registry import QC_CHECKS

#: Larger deviations from the model's reference pitch (degrees) are not aligned (an
#: implausible pose estimate, e.g. partial cover).
MAX_PITCH_ALIGN_DEG = 30.0
#: Labels are kept up to this far (mm) outside the intracranial mask: the mask is found on
#: a 2 mm grid and its edge against the skull base is uncertain by about one voxel.
INTRACRANIAL_MARGIN_MM = 2.0


def read_input(state: CaseState) -> CaseState:
    """Read the file (or take the Volume), apply ``--assume-orientation``, refuse inputs
    too small for a head, detect a HU+1024 storage offset."""
    config = state.config
    volume = state.source if isinstance(state.source, Volume) else load_volume(state.source)
    volume = check_orientation(volume, config.assume_orientation, config.force)
    check_size(volume, config.force)
    check_slice_gaps(volume, config.force)
    state.volume = volume
    state.hu_offset = detect_hu_offset(volume) if config.hu_offset is None \
        else config.hu_offset
    return state


def locate_brain(state: CaseState) -> CaseState:
    """Find the skull-enclosed space and check the input looks like a head CT (the gate)."""
    volume = need(state.volume, "volume")
    state.location = locate_intracranial(volume, hu_offset=state.hu_offset)
    state.input_check = assess_input(volume, state.location, hu_offset=state.hu_offset)
    check_head_ct(volume, state.input_check, state.config.force)
    return state


def crop_rotation(location: IntracranialLocation, model: SegmentationModel,
                  config: InferenceConfig) -> NDArray[np.float64] | None:
    """The rotation that turns the crop with the head's pitch to the pose of the model's
    training data (None: axis-aligned crop — no recorded pose, ``align_pitch`` off, no
    pitch estimate, or one more than :data:`MAX_PITCH_ALIGN_DEG` from the pose). The
    network then sees every head at the centre of its training augmentation."""
    reference = reference_pitch_deg(model.path, model.metadata.reference_pitch_deg)
    if not config.align_pitch or reference is None:
        return None
    head_pitch = location.pitch_deg()
    if head_pitch is None or abs(head_pitch - reference) > MAX_PITCH_ALIGN_DEG:
        return None
    return pitch_rotation(head_pitch - reference)


def crop(state: CaseState) -> CaseState:
    """Resample the deep-brain box onto the model's grid; the skull-enclosed space on it."""
    model, config, location = state.model, state.config, need(state.location, "location")
    turn = crop_rotation(location, model, config)
    offset = np.asarray(config.crop_offset_mm) if turn is None \
        else turn @ np.asarray(config.crop_offset_mm)
    # Rounded to 0.01 mm so that float noise in the centroid cannot make runs on
    # mirrored or re-ordered copies of an image sample the crop at different points.
    center = np.round(location.centroid_ras_mm + offset, 2)
    state.grid = crop_grid(center, model.spacing_mm, config.crop_size_mm, model.size_divisor,
                           turn)
    crop_hu = resample_to_crop(need(state.volume, "volume"), state.grid, state.hu_offset)
    if model.metadata.skull_strip:  # the model was trained on skull-stripped inputs
        brain = skull_strip_mask(crop_hu, model.spacing_mm)
        crop_hu = np.where(brain, crop_hu, np.float32(model.metadata.hu_window[0]))
    state.crop_hu = crop_hu
    if location.method == "skull":  # only a skull-enclosed mask is trusted
        state.inside_crop = location.mask_on(state.grid.geometry)
        state.depth_mm = depth_inside_mm(state.inside_crop, model.spacing_mm)
    return state


def clean_input(state: CaseState) -> CaseState:
    """What the network sees: dense foci and (asked for) blood-like regions in-painted,
    noise smoothed; the blood-like regions are found once here for the QC as well."""
    config, spacing = state.config, state.model.spacing_mm
    crop_hu, inside = need(state.crop_hu, "crop_hu"), state.inside_crop
    network_hu, inpainted, blood_filled, noise_hu, smoothing_mm = crop_hu, 0, 0, None, 0.0
    if inside is not None:
        if config.inpaint_dense_foci:
            network_hu, inpainted = inpaint_dense_foci(crop_hu, inside, spacing, state.depth_mm)
        state.blood_regions = hyperdense_regions(crop_hu, inside, spacing, state.depth_mm)
        if config.inpaint_blood:
            network_hu, blood_filled = inpaint_blood_like_regions(
                network_hu, large_hyperdense_regions(state.blood_regions), inside, spacing)
        if config.denoise:
            network_hu, noise_hu, smoothing_mm = denoise_for_network(network_hu, inside,
                                                                     spacing)
    state.network_hu = network_hu
    state.facts["dense_foci_inpainted_mm3"] = round(inpainted * state.crop_voxel_mm3, 1)
    state.facts["blood_like_inpainted_mm3"] = round(blood_filled * state.crop_voxel_mm3, 1)
    state.facts["brain_noise_hu"] = None if noise_hu is None else round(noise_hu, 2)
    state.facts["network_input_smoothing_mm"] = smoothing_mm
    return state


def window(state: CaseState) -> CaseState:
    """The model's HU window mapped to [0, 1]: the network's input."""
    state.image_01 = ct_window_normalise(need(state.network_hu, "network_hu"),
                                         state.model.metadata.plan.hu_window)
    return state


def predict(state: CaseState) -> CaseState:
    """Softmax of the network (sliding windows, flip TTA) and the TTA agreement."""
    state.probabilities = predict_probabilities(state.model, need(state.image_01, "image_01"),
                                                state.config, agreement=state.agreement)
    return state


def mc_dropout(state: CaseState) -> CaseState:
    """Structure volumes of each Monte-Carlo dropout pass (``mc_dropout_samples``)."""
    state.mc_volumes = mc_dropout_volumes(state.model, need(state.image_01, "image_01"),
                                          state.config, state.crop_voxel_mm3)
    return state


def crop_class_indices(probabilities: NDArray[np.float32], image_01: NDArray[np.float32],
                       config: InferenceConfig, threads: int = 1) -> NDArray[np.int64]:
    """Class indices on the network grid from the softmax: voxels below the HU window
    forced to background (``mask_below_window``; modifies ``probabilities``), argmax,
    then the largest component of each structure (``largest_component``)."""
    num_classes = int(probabilities.shape[0])
    if config.mask_below_window:
        outside = image_01 <= 0.0
        probabilities[1:] *= ~outside  # (a boolean index over 17 channels took 0.17 s)
        probabilities[0][outside] = 1.0
    indices = class_argmax(probabilities, threads)
    if config.largest_component:
        indices = keep_largest_components(indices, num_classes, config.component_min_fraction)
    return np.asarray(indices, dtype=np.int64)


def postprocess(state: CaseState) -> CaseState:
    """Volume calibration, argmax, largest components; labels on bone and outside the
    skull-enclosed space removed (their volumes are QC facts)."""
    model, config = state.model, state.config
    probabilities = need(state.probabilities, "probabilities")
    state.class_scales = model.class_scale_vector() if config.calibrate_volumes else None
    if state.class_scales is not None:
        state.withheld = apply_class_scales(probabilities, state.class_scales)
    indices = crop_class_indices(probabilities, need(state.image_01, "image_01"), config,
                                 model.threads)
    indices, state.removed_on_bone_voxels = remove_labels_on_bone(
        indices, need(state.crop_hu, "crop_hu"))
    location = need(state.location, "location")
    if location.method == "skull":  # only a skull-enclosed mask is trusted to cut labels
        inside = location.mask_on(need(state.grid, "grid").geometry,
                                  margin_mm=INTRACRANIAL_MARGIN_MM)
        indices, state.removed_outside_voxels = remove_labels_outside(indices, inside)
    state.indices = indices
    return state


def to_native(state: CaseState) -> CaseState:
    """Labels on the input's own grid, in the requested label scheme."""
    volume = need(state.volume, "volume")
    probabilities = need(state.probabilities, "probabilities")
    num_classes = int(probabilities.shape[0])
    state.native_indices = labels_to_native(need(state.indices, "indices"),
                                            need(state.grid, "grid"), volume.geometry,
                                            num_classes, probabilities)
    # class index → output label through a tiny look-up table (one pass over the grid)
    class_values = indices_to_labels(np.arange(num_classes), state.model.network_scheme)
    state.lookup = _convert_scheme(class_values, state.model.network_scheme,
                                   state.config.scheme, volume)
    state.labels = volume.with_array(state.lookup[state.native_indices],
                                     description="subct segment labels")
    return state


def _mean_sd(count: float, total: float, squares: float) -> dict[str, float | None]:
    """Mean and standard deviation (HU) from a voxel count, sum and sum of squares."""
    if count < 1:
        return {"mean_hu": None, "sd_hu": None}
    mean = total / count
    variance = max(squares / count - mean * mean, 0.0)
    return {"mean_hu": round(mean, 1), "sd_hu": round(float(np.sqrt(variance)), 1)}


def measure(state: CaseState) -> CaseState:
    """Volume (mm³) and HU mean/SD of each structure, from its labelled input voxels."""
    volume, lookup = need(state.volume, "volume"), need(state.lookup, "lookup")
    native = need(state.native_indices, "native_indices")
    num_classes = len(lookup)
    labelled = native > 0
    classes_here = native[labelled]
    counts = np.bincount(classes_here, minlength=num_classes)
    hu_here = np.asarray(volume.array)[labelled].astype(np.float64) - state.hu_offset
    hu_sums = np.bincount(classes_here, weights=hu_here, minlength=num_classes)
    hu_squares = np.bincount(classes_here, weights=hu_here * hu_here, minlength=num_classes)
    names = scheme_names(state.config.scheme)
    volumes: dict[str, float | None] = {name: 0.0 for name in names.values()}
    sums: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in names.values()}
    for index in range(1, num_classes):
        value = int(lookup[index])
        if value in names:
            name = names[value]
            volumes[name] = float(volumes[name] or 0.0) + \
                float(counts[index]) * volume.voxel_volume_mm3
            totals = sums[name]
            totals[0] += float(counts[index])
            totals[1] += float(hu_sums[index])
            totals[2] += float(hu_squares[index])
    state.volumes_mm3 = volumes
    state.hu_statistics = {name: _mean_sd(*totals) for name, totals in sums.items()}
    return state


def quality_control(state: CaseState) -> CaseState:
    """Run every check of :data:`subct.qc.registry.QC_CHECKS` (a check may refuse the case)."""
    for check in QC_CHECKS:
        state.flags.extend(check(state))
    return state


def qc_report(state: CaseState) -> CaseState:
    """The case's QC report: input checks, volume plausibility, MC dropout, then the
    checks' flags and the facts every step recorded."""
    report = build_qc_report(state.volumes_mm3, state.config.scheme,
                             need(state.input_check, "input_check"),
                             need(state.location, "location"), mc_volumes=state.mc_volumes,
                             mc_structure_names=state.structure_names,
                             mc_requested=state.config.mc_dropout_samples)
    report.flags.extend(state.flags)
    report.input.facts.update(state.facts)
    report.input.facts["anatomy"] = state.anatomy.facts
    state.qc = report
    return state


def _always(config: InferenceConfig) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    """One step: its function, the progress line it shows (None: none), the
    ``timings_s`` key its seconds add to, and when it runs."""

    run: Callable[[CaseState], CaseState]
    announce: str | None
    timing: str
    when: Callable[[InferenceConfig], bool] = _always


#: The pipeline of ``subct segment``, in order.
SEGMENT_STEPS: tuple[Step, ...] = (
    Step(read_input, FIRST_STEP, "read"),
    Step(locate_brain, "locating the brain", "locate_and_resample"),
    Step(crop, None, "locate_and_resample"),
    Step(clean_input, None, "locate_and_resample"),
    Step(window, None, "locate_and_resample"),
    Step(predict, "network", "network"),
    Step(mc_dropout, "MC dropout", "mc_dropout", lambda c: c.mc_dropout_samples >= 2),
    Step(postprocess, "post-processing", "postprocess"),
    Step(to_native, None, "postprocess"),
    Step(measure, None, "postprocess"),
    Step(quality_control, None, "qc"),
    Step(qc_report, None, "qc"),
)
