"""Evaluate predicted label maps against reference label maps (files or folders).

This is the Python API behind ``subct evaluate``: it loads label maps, converts both
into one label scheme, checks (or resamples) the voxel grids, computes
:mod:`subct.evaluation.metrics` per structure, and writes a long CSV (case, structure, metric,
value).

Matching in folders: a prediction matches the reference with the same case name
(file name without volume suffix, :func:`subct.io.files.case_name`). A prediction named
``<case>_labels``, ``<case>_label``, ``<case>_seg``, ``<case>_segmentation``,
``<case>_pred`` or ``<case>_prediction`` also matches ``<case>``. References without a
prediction and predictions without a reference are reported, not fatal; a case that
fails (unreadable file, grid mismatch) is recorded and the batch goes on.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from subct.config import StrictConfig
from subct.errors import SubctConfigError, SubctError, SubctInputError
from subct.evaluation.metrics import METRIC_UNITS, CaseMetrics, label_map_metrics
from subct.image.resample import resample_to_geometry
from subct.image.sitk_bridge import sitk_geometry, sitk_to_array
from subct.image.volume import Volume
from subct.io.files import FREESURFER_SUFFIXES, NIFTI_SUFFIXES, case_name, iter_volume_files
from subct.io.readers import load_volume
from subct.io.writers import atomic_write_text
from subct.labels.convert import convert_to_canonical
from subct.labels.schemes import get_scheme, remap, scheme_names, to_scheme

#: How the values of an input label map are to be read.
#: ``freesurfer``: FreeSurfer IDs (canonical, aseg, SynthSeg...; non-targets ignored);
#: ``paper7``: the 1..7 classes of the published CT subcortical dataset.
InputLabels = Literal["freesurfer", "paper7"]


INPUT_LABELS: tuple[str, ...] = ("freesurfer", "paper7")


#: Suffixes stripped from prediction case names when matching them to references.
PREDICTION_SUFFIXES: tuple[str, ...] = (
    "_labels", "_label", "_segmentation", "_seg", "_prediction", "_pred",
)


class EvaluationConfig(StrictConfig):
    """How to compare prediction and reference label maps.

    Attributes:
        scheme: label scheme the metrics are computed in: ``canonical`` (17
            structures), ``merged`` (9, left/right joined) or ``paper7`` (7 classes).
        pred_labels, ref_labels: what the input values mean (see :data:`InputLabels`).
            ``paper7`` inputs can only be scored in the ``paper7`` scheme.
        resample: when grids differ, resample the prediction onto the reference grid
            (nearest neighbour, world coordinates); otherwise differing grids are an error.
    """

    scheme: str = "canonical"
    pred_labels: str = "freesurfer"
    ref_labels: str = "freesurfer"
    resample: bool = False

    def model_post_init(self, context: Any, /) -> None:
        get_scheme(self.scheme)  # raises for an unknown name
        for option, value in (("prediction", self.pred_labels), ("reference", self.ref_labels)):
            if value not in INPUT_LABELS:
                raise SubctConfigError(
                    f"unknown {option} label values {value!r}; choose one of "
                    + ", ".join(INPUT_LABELS)
                )
            if value == "paper7" and self.scheme != "paper7":
                raise SubctConfigError(
                    f"{option} maps with paper7 values (left/right merged, no amygdala or "
                    f"accumbens) can only be scored with --scheme paper7, not {self.scheme}"
                )


@dataclass(frozen=True)
class CaseFailure:
    """A case that could not be evaluated, and why."""

    case: str
    problem: str


@dataclass
class EvaluationResult:
    """Metrics of every evaluated case plus what could not be evaluated."""

    scheme: str
    cases: list[CaseMetrics] = field(default_factory=list)
    failures: list[CaseFailure] = field(default_factory=list)
    missing_predictions: list[str] = field(default_factory=list)
    unmatched_predictions: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every reference had a prediction and every case was evaluated."""
        return not (self.failures or self.missing_predictions or self.unmatched_predictions)


#: More distinct values than this (FreeSurfer's aparc+aseg has about 110) mean an image,
#: not a label map.
MAX_LABEL_VALUES = 500


def load_label_map(path: str | Path) -> Volume:
    """Read an integer label map (NIfTI/MGZ/NRRD/MHA), allowing an all-background map.

    An empty prediction is a valid (bad) segmentation, so unlike
    :func:`subct.io.readers.load_volume` a constant image is accepted here.

    Raises:
        SubctInputError: missing/unreadable file, or non-integer label values.
    """
    path = Path(path)
    try:
        volume = load_volume(path)
    except SubctInputError as error:
        if "same value" not in error.problem:
            raise
        volume = _load_constant_image(path)
    array = volume.array
    if np.issubdtype(array.dtype, np.floating):
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise SubctInputError(path, "not a label map: it has non-integer values")
        array = rounded.astype(np.int32)
    elif not np.issubdtype(array.dtype, np.integer):
        raise SubctInputError(path, f"not a label map: voxel type {array.dtype}")
    low = int(array.min())
    distinct = len(np.unique(np.asarray(array).ravel()[::7]))  # a sample is enough
    if low < 0 or distinct > MAX_LABEL_VALUES:
        raise SubctInputError(path, f"not a label map: {distinct}+ distinct values from {low} "
                                    f"to {int(array.max())} (an image, e.g. a CT, given as "
                                    "labels?)")
    return Volume(array=array, affine=volume.affine, path=path, metadata=volume.metadata)


def _load_constant_image(path: Path) -> Volume:
    """Read a file that :func:`load_volume` rejected only for being constant."""
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES + FREESURFER_SUFFIXES):
        import nibabel as nib

        image = nib.load(str(path))
        array = np.asanyarray(image.dataobj)  # type: ignore[attr-defined]
        affine = np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
    else:
        import SimpleITK as sitk

        itk_image = sitk.ReadImage(str(path))
        array = sitk_to_array(itk_image, contiguous=False)
        affine = sitk_geometry(itk_image)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    return Volume(array=array, affine=affine, path=path)


def to_evaluation_scheme(
    labels: NDArray[np.integer], values: str, scheme: str
) -> NDArray[np.int16]:
    """Convert an input map whose values are ``values`` (freesurfer/paper7) into ``scheme``."""
    if values == "paper7":
        return remap(labels, {label: label for label in scheme_names("paper7")})
    return to_scheme(convert_to_canonical(labels, "freesurfer"), scheme)


def evaluate_case(
    pred: Volume, ref: Volume, config: EvaluationConfig | str, case: str | None = None
) -> CaseMetrics:
    """Metrics of one prediction against its reference, on the reference grid.

    ``config`` may be just a scheme name (``"canonical"``, ``"merged"``, ``"paper7"``)
    for FreeSurfer-ID inputs on the same grid. Distances use the reference spacing (mm).

    Raises:
        SubctInputError: the grids differ and ``config.resample`` is off (the message
            names both files and both grids).
    """
    if isinstance(config, str):
        config = EvaluationConfig(scheme=config)
    case = case or (case_name(ref.path) if ref.path is not None else "case")
    if not pred.geometry.same_grid(ref.geometry):
        if not config.resample:
            raise SubctInputError(
                pred.path,
                f"voxel grid {_describe(pred)} differs from reference {ref.path} "
                f"{_describe(ref)}; resample it first or pass --resample",
            )

        pred = resample_to_geometry(pred, ref.geometry, "nearest", fill_value=0)
    pred_labels = to_evaluation_scheme(pred.array, config.pred_labels, config.scheme)
    ref_labels = to_evaluation_scheme(ref.array, config.ref_labels, config.scheme)
    return label_map_metrics(
        pred_labels,
        ref_labels,
        ref.spacing,
        scheme_names(config.scheme),
        case=case,
        voxel_volume_mm3=ref.voxel_volume_mm3,
    )


def _describe(volume: Volume) -> str:
    spacing = "×".join(f"{s:.3g}" for s in volume.spacing)
    origin = ", ".join(f"{v:.1f}" for v in volume.affine[:3, 3])
    shape = "×".join(str(s) for s in volume.shape)
    return f"({shape} voxels of {spacing} mm, {volume.orientation}, origin {origin})"


def prediction_case_name(path: str | Path) -> str:
    """Case name of a prediction file, without a known suffix such as ``_labels``."""
    name = case_name(path)
    for suffix in PREDICTION_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def match_cases(
    pred_folder: Path, ref_folder: Path
) -> tuple[list[tuple[str, Path, Path]], list[str], list[Path]]:
    """Pair predictions with references by case name.

    Returns:
        (case, prediction, reference) triples sorted by case; case names of references
        with no prediction; predictions with no reference.
    """
    references = {case_name(path): path for path in iter_volume_files(ref_folder)}
    predictions = list(iter_volume_files(pred_folder))
    matched: dict[str, Path] = {}
    unmatched: list[Path] = []
    for path in predictions:  # exact names win over stripped ones
        if case_name(path) in references:
            matched[case_name(path)] = path
    for path in predictions:
        if path in matched.values():
            continue
        stripped = prediction_case_name(path)
        if stripped in references and stripped not in matched:
            matched[stripped] = path
        else:
            unmatched.append(path)
    pairs = [(case, matched[case], references[case]) for case in sorted(matched)]
    missing = sorted(set(references) - set(matched))
    return pairs, missing, unmatched


def evaluate_paths(
    pred_path: str | Path, ref_path: str | Path, config: EvaluationConfig
) -> EvaluationResult:
    """Evaluate a prediction file against a reference file, or folder against folder.

    Cases that fail are recorded in :attr:`EvaluationResult.failures` and the batch
    goes on.

    Raises:
        SubctInputError: a path is missing, or one is a file and the other a folder.
    """
    pred_path, ref_path = Path(pred_path), Path(ref_path)
    for path in (pred_path, ref_path):
        if not path.exists():
            raise SubctInputError(path, "no such file or folder")
    result = EvaluationResult(scheme=config.scheme)
    if pred_path.is_dir() != ref_path.is_dir():
        raise SubctInputError(
            pred_path, f"prediction and reference {ref_path} must both be files or both folders"
        )
    if pred_path.is_dir():
        pairs, result.missing_predictions, result.unmatched_predictions = match_cases(
            pred_path, ref_path
        )
        if not pairs:
            raise SubctInputError(
                pred_path, f"no prediction matches a label map in {ref_path} by file name"
            )
    else:
        pairs = [(case_name(ref_path), pred_path, ref_path)]
    for case, pred_file, ref_file in pairs:
        try:
            reference = load_label_map(ref_file)
            prediction = load_label_map(pred_file)
            result.cases.append(evaluate_case(prediction, reference, config, case))
        except SubctError as error:  # the user's to fix: record it, go on with the batch
            result.failures.append(CaseFailure(case, str(error)))
    return result


def evaluate_folders(
    pred_folder: str | Path, ref_folder: str | Path, config: EvaluationConfig
) -> EvaluationResult:
    """Evaluate every prediction in ``pred_folder`` against its reference in ``ref_folder``.

    Same as :func:`evaluate_paths`, but both paths must be folders.
    """
    for folder in (Path(pred_folder), Path(ref_folder)):
        if not folder.is_dir():
            raise SubctInputError(folder, "expected a folder of label maps")
    return evaluate_paths(pred_folder, ref_folder, config)


def long_rows(cases: Iterable[CaseMetrics]) -> list[tuple[str, str, str, float]]:
    """(case, structure, metric, value) rows: every structure metric, then per-case Dice.

    Per-case rows use the structure name ``ALL`` (metrics ``mean_dice`` and
    ``volume_weighted_dice``).
    """
    rows: list[tuple[str, str, str, float]] = []
    for case in cases:
        for structure in case.structures:
            for metric, value in structure.metric_values().items():
                rows.append((case.case, structure.name, metric, value))
        rows.append((case.case, "ALL", "mean_dice", case.mean_dice))
        rows.append((case.case, "ALL", "volume_weighted_dice", case.volume_weighted_dice))
    return rows


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(float(value))


def write_long_csv(cases: Iterable[CaseMetrics], path: str | Path) -> Path:
    """Write the long CSV (case, structure, metric, value) atomically.

    NaN (structure absent from both maps) is written ``nan``; a structure missing
    from one map has distances ``inf``. Units: see :data:`subct.evaluation.metrics.METRIC_UNITS`
    (metric names carry their unit: ``_mm``, ``_mm3``, ``_voxels``).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("case", "structure", "metric", "value"))
    for case, structure, metric, value in long_rows(cases):
        writer.writerow((case, structure, metric, _format_value(value)))
    return atomic_write_text(path, buffer.getvalue())


__all__ = [
    "METRIC_UNITS",
    "CaseFailure",
    "EvaluationConfig",
    "EvaluationResult",
    "evaluate_case",
    "evaluate_folders",
    "evaluate_paths",
    "load_label_map",
    "long_rows",
    "match_cases",
    "prediction_case_name",
    "to_evaluation_scheme",
    "write_long_csv",
]
