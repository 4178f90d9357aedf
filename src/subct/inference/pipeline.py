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

from subct.image.volume import Volume
from subct.inference.config import InferenceConfig
from subct.inference.crop import CropGrid
from subct.inference.model import SegmentationModel, cached_model
from subct.inference.state import CaseState, need
from subct.inference.steps import SEGMENT_STEPS
from subct.labels.schemes import scheme_labels

if TYPE_CHECKING:
    from subct.qc.checks import QcReport


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
        input: the input volume as segmented (``--assume-orientation`` applied).
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
    #: the input as segmented (orientation applied): the grid of ``labels``
    input: Volume | None = None

    def normative(self, age_years: float | None = None, sex: str | None = None
                  ) -> dict[str, Any]:
        """The volumes and ICV against the normative models (:mod:`subct.norms`), as the
        ``normative`` section of ``<case>_qc.json``: the age and sex given, else the
        DICOM header's (``input.metadata``); structures a QC flag disqualifies are
        withheld with the reason. ``sex``: F/female or M/male."""
        # lazy: the norms load their parameters only when asked for
        from subct.norms.assess import normative_assessment, withheld_structures
        from subct.norms.demographics import (  # lazy, as above
            Demographics,
            DemographicsOptions,
            check_age,
            from_volume_metadata,
            parse_sex,
        )

        given = DemographicsOptions(
            None if age_years is None else check_age(float(age_years), "age_years"),
            None if sex is None else parse_sex(sex, "sex"),
            given_as=("the age_years argument", "the sex argument"))
        header = from_volume_metadata(self.input.metadata if self.input is not None else {})
        people: Demographics = given.for_case("", header)
        return normative_assessment(self.volumes_mm3, people,
                                    withheld_structures(self.qc.to_json_dict()["flags"]),
                                    self.intracranial_volume_mm3)


def segment_volume(image: str | Path | Volume, model: SegmentationModel,
                   config: InferenceConfig | None = None,
                   on_step: Callable[[str], None] | None = None) -> SegmentationResult:
    """Segment one head CT with an already loaded ``model`` (nothing written to disk):
    the steps of :data:`subct.inference.steps.SEGMENT_STEPS`, in order.

    ``on_step`` is called with the name of each announced step as it starts (``checking
    input``, ``locating the brain``, ``network``, ``MC dropout``, ``post-processing``),
    for a progress display.

    Raises:
        SubctInputError: the file cannot be read, no head could be found in it, or it
            fails the head-CT gate (:mod:`subct.qc.gate`) or a refusing QC check
            (:mod:`subct.qc.registry`); ``config.force`` overrides the refusals.
    """
    state = CaseState(source=image, model=model, config=config or InferenceConfig())
    for step in SEGMENT_STEPS:
        if not step.when(state.config):
            continue
        if step.announce and on_step:
            on_step(step.announce)
        clock = time.perf_counter()
        state = step.run(state)
        state.timings[step.timing] = state.timings.get(step.timing, 0.0) + \
            time.perf_counter() - clock
    return _result(state)


def _result(state: CaseState) -> SegmentationResult:
    """The public result of a finished case state."""
    model, grid = state.model, need(state.grid, "grid")
    posteriors = None
    if state.config.keep_posteriors:
        posteriors = Posteriors(need(state.probabilities, "probabilities").astype(
            np.float32, copy=False), grid, model.network_scheme)
    return SegmentationResult(
        labels=need(state.labels, "labels"), volumes_mm3=state.volumes_mm3,
        intracranial_volume_mm3=need(state.location, "location").intracranial_volume_mm3,
        qc=need(state.qc, "qc"), scheme=state.config.scheme, crop=grid,
        posteriors=posteriors, timings_s=state.timings, runtime=model.runtime(),
        hu_statistics=state.hu_statistics, input=need(state.volume, "volume"))


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
