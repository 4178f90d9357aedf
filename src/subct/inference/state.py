"""The typed state of one case as it goes through the steps of ``subct segment``.

:func:`subct.inference.pipeline.segment_volume` creates a :class:`CaseState` from the
input, the loaded model and the options, and hands it to each step of
:data:`subct.inference.steps.SEGMENT_STEPS` in turn; each step reads what earlier steps
recorded and records its own results (arrays, QC facts). The QC checks of
:data:`subct.qc.registry.QC_CHECKS` read the finished state. Fields that a later step
fills start as ``None``; :func:`need` reads one and names the step order if it is
missing, so a step that runs too early fails with a clear message.

Grids: ``crop_*`` arrays live on the network's RAS crop grid (``grid``, voxels of the
model's spacing in mm); ``native_indices`` and ``labels`` on the input's own grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from subct.image.volume import Volume
from subct.labels.schemes import scheme_labels, scheme_names
from subct.qc.anatomy import AnatomyReport
from subct.qc.checks import QcFlag

if TYPE_CHECKING:
    from subct.image.intracranial import IntracranialLocation
    from subct.inference.config import InferenceConfig
    from subct.inference.crop import CropGrid
    from subct.inference.model import SegmentationModel
    from subct.qc.checks import InputCheck, QcReport

T = TypeVar("T")


def need(value: T | None, what: str) -> T:
    """``value``, or an error saying which earlier step should have set ``what``."""
    if value is None:
        raise RuntimeError(f"case state: {what} is not set yet (a step ran out of order)")
    return value


@dataclass
class CaseState:
    """Everything known about one case so far (see the module docstring)."""

    source: str | Path | Volume
    model: SegmentationModel
    config: InferenceConfig
    #: the input in stored units, orientation applied (the grid the labels go back to)
    volume: Volume | None = None
    #: value added to HU in storage (1024 for unsigned HU+1024 exports, else 0)
    hu_offset: float = 0.0
    location: IntracranialLocation | None = None
    input_check: InputCheck | None = None
    grid: CropGrid | None = None
    #: HU on the crop grid, as scanned (what QC measures)
    crop_hu: NDArray[np.float32] | None = None
    #: skull-enclosed space on the crop grid (None: no skull found)
    inside_crop: NDArray[np.bool_] | None = None
    #: distance (mm) from the skull-enclosed space's edge, inside it
    depth_mm: NDArray[np.float64] | None = None
    #: blood-like regions (component labels, mm³ each) found once on ``crop_hu``
    blood_regions: tuple[NDArray[np.int32], NDArray[np.float64]] | None = None
    #: HU the network sees (after in-painting and denoising)
    network_hu: NDArray[np.float32] | None = None
    #: network input: ``network_hu`` windowed to [0, 1]
    image_01: NDArray[np.float32] | None = None
    #: softmax (classes, crop grid); calibrated in place by the post-processing
    probabilities: NDArray[np.float32] | None = None
    #: class index → Dice between the plain and mirrored passes (flip TTA)
    agreement: dict[int, float] = field(default_factory=dict)
    #: structure volumes (mm³) of each MC-dropout pass, (passes, structures)
    mc_volumes: NDArray[np.float64] | None = None
    #: per-class volume calibration factors (None: calibration off)
    class_scales: NDArray[np.float32] | None = None
    #: class index → share the calibration would keep, for classes left uncalibrated
    withheld: dict[int, float] = field(default_factory=dict)
    #: class indices on the crop grid after post-processing
    indices: NDArray[np.int64] | None = None
    removed_on_bone_voxels: int = 0
    removed_outside_voxels: int = 0
    #: class indices on the input grid, and class index → output label value
    native_indices: NDArray[np.integer] | None = None
    lookup: NDArray[np.integer] | None = None
    labels: Volume | None = None
    #: structure name → volume (mm³); None once the coverage check puts it outside the scan
    volumes_mm3: dict[str, float | None] = field(default_factory=dict)
    hu_statistics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    #: findings of the anatomical checks (field of view, intensities, lesions, asymmetry)
    anatomy: AnatomyReport = field(default_factory=AnatomyReport)
    #: QC facts recorded by steps and checks (``qc.input.facts`` of the report)
    facts: dict[str, Any] = field(default_factory=dict)
    #: flags of the QC checks, in check order
    flags: list[QcFlag] = field(default_factory=list)
    #: the case's QC report (the last step)
    qc: QcReport | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def structure_names(self) -> list[str]:
        """Structure of each network class: ``structure_names[c - 1]`` for class c."""
        scheme = self.model.network_scheme
        return [scheme_names(scheme)[value] for value in scheme_labels(scheme)]

    @property
    def crop_voxel_mm3(self) -> float:
        """Volume (mm³) of one crop-grid voxel."""
        return float(np.prod(self.model.spacing_mm))
