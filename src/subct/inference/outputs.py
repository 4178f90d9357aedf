"""Per-case and per-batch output files of ``subct segment``: where each case's files go,
when a case counts as finished, and the batch's ``volumes.csv`` and ``index.html``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from subct import __version__
from subct.config import StrictConfig
from subct.errors import SubctConfigError, SubctInputError
from subct.inference.config import InferenceConfig
from subct.inference.pipeline import SegmentationResult
from subct.inference.tables import qc_csv_text, statistics_csv_text, volumes_csv_text
from subct.inference.writers import (
    CASE_WRITERS,
    CaseContext,
    file_fingerprint,
)
from subct.io.writers import atomic_write_text
from subct.labels.colours import write_colour_tables
from subct.labels.schemes import get_scheme
from subct.norms.assess import normative_assessment, withheld_structures
from subct.norms.demographics import (
    Demographics,
    DemographicsOptions,
    check_age,
    from_volume_metadata,
    read_demographics_csv,
)
from subct.qc.report import render_segmentation_index
from subct.qc.viewer import install_viewer

if TYPE_CHECKING:
    from subct.runner import CaseOutcome

QC_SUFFIX = "_qc.json"

#: Inference settings that change the labels: a finished case is redone when one of
#: them (or the model's weights) differs from the run that wrote it.
LABEL_SETTINGS = ("scheme", "tta", "sliding_window_overlap", "max_single_pass_voxels",
                  "mask_below_window", "largest_component", "component_min_fraction",
                  "inpaint_dense_foci", "inpaint_blood", "denoise", "align_pitch", "crop_size_mm",
                  "crop_offset_mm", "hu_offset", "force", "assume_orientation",
                  "calibrate_volumes")

#: Bumped whenever a change of subct's own code changes the labels of the same input with
#: the same model and settings, so that a rerun recomputes cases finished by an older
#: version. 2: skull ray-casting locator, labels cut to the skull, dense-focus in-painting,
#: noise-adaptive smoothing, pitch-aligned crop. 3: blood-like regions in-painted.
#: 4: noisy crops (> 3 HU) smoothed down to 2.5 HU instead of 3. 5: the shipped model's
#: volume calibration (accumbens probability × 0.37).
PIPELINE_REVISION = 5


def resume_key(config: BatchConfig, model_sha256: str) -> dict[str, Any]:
    """What a finished case must have been computed with to be skipped on a rerun: the
    model's SHA-256 and every label-changing setting (:data:`LABEL_SETTINGS`)."""
    settings = config.inference.model_dump(mode="json", include=set(LABEL_SETTINGS))
    settings["roi_subset"] = None if config.roi_subset is None else list(config.roi_subset)
    settings["posteriors_on_input_grid"] = config.posteriors_on_input_grid
    return {"model_sha256": model_sha256, "pipeline_revision": PIPELINE_REVISION,
            **dict(sorted(settings.items()))}


#: Bytes hashed at the start, middle and end of an input file (its identity on resume).
IDENTITY_SAMPLE_BYTES = 1 << 20
#: Bytes hashed at the start of each file of a DICOM folder (the header: UIDs, position).
DICOM_HEADER_BYTES = 4096


def input_identity(path: Path) -> dict[str, Any]:
    """What identifies an input's content for resume, cheaply: a file's size and a
    SHA-256 of 1 MiB at its start, middle and end; a folder's file count and a SHA-256
    of every file's name, size and first 4 KiB (DICOM headers carry the series and
    instance UIDs and slice positions). A replaced scan with the same name differs."""
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            digest.update(f"{file.relative_to(path)}\0{file.stat().st_size}\0".encode())
            with open(file, "rb") as stream:
                digest.update(stream.read(DICOM_HEADER_BYTES))
        return {"files": len(files), "sha256_sample": digest.hexdigest()}
    size = path.stat().st_size
    with open(path, "rb") as stream:
        for start in sorted({0, max(0, size // 2 - IDENTITY_SAMPLE_BYTES // 2),
                             max(0, size - IDENTITY_SAMPLE_BYTES)}):
            stream.seek(start)
            digest.update(stream.read(IDENTITY_SAMPLE_BYTES))
    return {"size": size, "sha256_sample": digest.hexdigest()}


def case_resume_key(key: dict[str, Any], source: Path) -> dict[str, Any]:
    """The batch's :func:`resume_key` plus the identity of this case's input."""
    return {**key, "input": input_identity(source)}


def read_qc_record(path: Path) -> dict[str, Any] | None:
    """A case's ``<case>_qc.json`` record, or None when it is missing, unreadable or not
    a JSON object (a case without a readable record is not finished)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_complete(config: BatchConfig, name: str, key: dict[str, Any] | None = None) -> bool:
    """True when every output of the case exists, its QC JSON marks it complete, and it
    was computed with the same label scheme (and, given ``key``, the same
    :func:`resume_key`: model weights and label-changing settings)."""
    outputs = case_outputs(config, name)
    if not all(path.is_file() for path in outputs.values()):
        return False
    record = read_qc_record(outputs["qc"])
    if record is None:
        return False
    if not record.get("complete") or record.get("scheme") != config.inference.scheme:
        return False
    if key is not None and record.get("resume_key") != key:
        return False
    recorded = record.get("output_files") or {}
    for role, path in outputs.items():  # a truncated or replaced output is redone
        if role != "qc" and (role not in recorded or file_fingerprint(path) != recorded[role]):
            return False
    return True


def check_output_dir(output_dir: Path, inputs: Sequence[Path]) -> None:
    """Refuse output folders that would overwrite or re-read inputs, or cannot be written.

    Raises:
        SubctInputError: ``-o`` names a volume file, an existing file, an input or a
            folder inside an input folder, or a folder that cannot be created/written.
    """
    output = Path(output_dir).expanduser().resolve()
    if output.suffix.lower() in (".nii", ".gz", ".mgz", ".mgh", ".nrrd", ".nhdr", ".mha",
                                 ".mhd", ".csv", ".json", ".png", ".html"):
        raise SubctInputError(output_dir, "-o names the output folder, but this looks like "
                                          "a file name; give a folder (e.g. results/)")
    if output.exists() and not output.is_dir():
        raise SubctInputError(output_dir, "-o must be a folder, and this is an existing file")
    for item in inputs:
        source = Path(item).expanduser().resolve()
        if output == source or (source.is_dir() and source in output.parents):
            raise SubctInputError(output_dir, f"-o is the input {item} or inside it: the "
                                              "outputs would be read as inputs on a rerun; "
                                              "choose another folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SubctInputError(output_dir, f"cannot create the output folder ({error.strerror})"
                              ) from error
    if not os.access(output, os.W_OK | os.X_OK):
        raise SubctInputError(output_dir, "the output folder is not writable")


def case_outputs(config: BatchConfig, name: str) -> dict[str, Path]:
    """Paths of the outputs a case is complete only with, for this configuration: the
    required writers' files (:data:`subct.inference.writers.CASE_WRITERS`) and the QC JSON."""
    folder = Path(config.output_dir)
    required = [w for w in CASE_WRITERS if w.required and w.wanted(config, None)]
    outputs = {required[0].role: required[0].path(folder, name),
               "qc": folder / f"{name}{QC_SUFFIX}"}
    outputs.update({w.role: w.path(folder, name) for w in required[1:]})
    return outputs


class BatchConfig(StrictConfig):
    """Options of a ``subct segment`` batch.

    Attributes:
        output_dir: folder for all outputs (created).
        model: ``--model NAME|PATH`` or None for the shipped model.
        inference: per-case inference options.
        overwrite: redo cases whose outputs are already complete.
        write_overlay: write ``<case>_overlay.png``.
        write_posteriors: write ``<case>_posteriors.nii.gz`` (crop grid).
        scheduler: address of a running Dask scheduler (``tcp://host:8786``); None runs
            in this process.
        series: for DICOM folders holding several series, the one to read (number or
            part of its description); default: the largest axial CT series.
        volumes_copy: also write ``volumes.csv`` to this path (SynthSeg's ``--vol``).
        qc_csv: write per-case QC scores to this CSV (SynthSeg's ``--qc``;
            :func:`qc_csv_text`).
        write_dicom_seg: for DICOM series inputs, also write ``<case>_seg.dcm``, a DICOM
            SEG on the original slices (:mod:`subct.io.dicom_seg`).
        posteriors_on_input_grid: write the posteriors on the label map's grid (the
            input's) instead of the network's crop grid.
        write_masks: also write one binary mask per structure,
            ``<case>_masks/<structure>.nii.gz`` (as TotalSegmentator does).
        roi_subset: structure names of the scheme to keep in the label map and masks
            (``None``: all); volumes and QC still cover every structure.
        age_years: the person's age at the scan (years; ``--age``), for the normative
            percentiles (:mod:`subct.norms`); a CSV row or nothing else overrides it.
        sex: ``"female"``/``"male"`` (``--sex``), likewise.
        demographics_csv: CSV of ``case,age,sex`` (``--demographics``); its rows come
            first, then ``age_years``/``sex``, then the DICOM header.
    """

    output_dir: Path
    model: str | Path | None = None
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    overwrite: bool = False
    write_overlay: bool = True
    write_posteriors: bool = False
    scheduler: str | None = None
    series: str | None = None
    volumes_copy: Path | None = None
    qc_csv: Path | None = None
    write_dicom_seg: bool = False
    write_masks: bool = False
    posteriors_on_input_grid: bool = False
    roi_subset: tuple[str, ...] | None = None
    age_years: float | None = None
    sex: Literal["female", "male"] | None = None
    demographics_csv: Path | None = None

    def demographics_options(self) -> DemographicsOptions:
        """The user's ages and sexes (the CSV read once per content; a bad one raises
        naming it)."""
        table = (None if self.demographics_csv is None
                 else read_demographics_csv(self.demographics_csv))
        return DemographicsOptions(self.age_years, self.sex, table)

    def model_post_init(self, context: Any, /) -> None:
        if self.age_years is not None:
            check_age(self.age_years, "--age")
        if self.roi_subset is not None:
            names = set(get_scheme(self.inference.scheme).names.values())
            unknown = [name for name in self.roi_subset if name not in names]
            if unknown:
                raise SubctConfigError(f"--roi-subset: unknown structure(s) "
                                       f"{', '.join(unknown)}; choose from "
                                       f"{', '.join(sorted(names))}")


@dataclass(frozen=True)
class CaseInput:
    """One case of a batch: its output name and the file or DICOM folder to read."""

    name: str
    path: Path

def _subset(labels: Any, scheme: str, roi_subset: tuple[str, ...] | None) -> Any:
    """The label map with only the ``roi_subset`` structures (all when None)."""
    if roi_subset is None:
        return labels
    keep = [value for value, name in get_scheme(scheme).names.items() if name in roi_subset]
    array = np.asarray(labels.array)
    return labels.with_array(np.where(np.isin(array, keep), array, 0).astype(array.dtype))


def write_case_outputs(case: CaseInput, ct_hu_source: Any, result: SegmentationResult,
                       config: BatchConfig, model_description: str,
                       seconds: float, key: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write one case's outputs (:data:`~subct.inference.writers.CASE_WRITERS`, each
    atomically); the QC JSON goes last (marks completion, with the size and SHA-256 of
    every required output for verification on reuse)."""
    outputs = case_outputs(config, case.name)
    required = set(outputs) - {"qc"}  # verified on reuse
    context = CaseContext(case, ct_hu_source, result, config,
                          _subset(result.labels, result.scheme, config.roi_subset))
    folder = Path(config.output_dir)
    for writer in CASE_WRITERS:
        if writer.wanted(config, case):
            outputs[writer.role] = writer.write(context, writer.path(folder, case.name))
    fingerprints = {role: file_fingerprint(outputs[role]) for role in required}
    header = from_volume_metadata(getattr(ct_hu_source, "metadata", None) or {})
    record = {
        "complete": True,
        "case": case.name,
        "input": str(case.path),
        "model": model_description,
        "scheme": result.scheme,
        "subct_version": __version__,
        "volumes_mm3": result.volumes_mm3,
        "statistics": {name: {"volume_mm3": None if volume is None else round(volume, 1),
                              **result.hu_statistics.get(name, {}),
                              "tta_agreement_dice": result.qc.input.facts.get(
                                  "tta_agreement_dice", {}).get(name)}
                       for name, volume in result.volumes_mm3.items()},
        "intracranial_volume_mm3": result.intracranial_volume_mm3,
        "header_demographics": header.to_json_dict(),
        "qc": result.qc.to_json_dict(),
        "timings_s": {**result.timings_s, "total": seconds},
        "inference": {"tta": config.inference.tta,
                      "sliding_window_overlap": config.inference.sliding_window_overlap,
                      "mc_dropout_samples": config.inference.mc_dropout_samples},
        "runtime": result.runtime,
        "outputs": {role: path.name for role, path in outputs.items()},
        "resume_key": key,
        "output_files": fingerprints,
    }
    record["normative"] = case_normative(record, config.demographics_options())
    atomic_write_text(outputs["qc"], json.dumps(record, indent=2, allow_nan=True) + "\n")
    return outputs


def case_normative(record: dict[str, Any], options: DemographicsOptions) -> dict[str, Any]:
    """The ``normative`` section of a case's QC record from its volumes, the DICOM header
    facts it kept, its QC flags and the user's ages and sexes (:mod:`subct.norms`)."""
    header = Demographics.from_json_dict(record.get("header_demographics"))
    return normative_assessment(
        record.get("volumes_mm3") or {}, options.for_case(str(record["case"]), header),
        withheld_structures((record.get("qc") or {}).get("flags") or []),
        record.get("intracranial_volume_mm3"))


def refresh_normative(config: BatchConfig, name: str, options: DemographicsOptions) -> bool:
    """Recompute a finished case's ``normative`` section with this run's ages and sexes
    (CSV, ``--age``/``--sex``, and the DICOM header facts its record kept) and rewrite
    its QC JSON when that changed: the percentiles need no new segmentation. True when
    rewritten."""
    path = case_outputs(config, name)["qc"]
    record = read_qc_record(path)
    if record is None:
        return False
    normative = case_normative(record, options)
    if record.get("normative") == normative:
        return False
    record["normative"] = normative
    atomic_write_text(path, json.dumps(record, indent=2, allow_nan=True) + "\n")
    return True


def normative_gaps(config: BatchConfig, names: Sequence[str]) -> dict[str, str]:
    """The finished cases among ``names`` whose QC JSON has no normative percentiles,
    with the reason each gives (age or sex unknown, age out of range)."""
    gaps = {}
    for name in names:
        record = read_qc_record(case_outputs(config, name)["qc"])
        if record is None:
            continue
        normative = record.get("normative") or {}
        if not normative.get("available"):
            gaps[name] = str(normative.get("reason") or "not computed")
    return gaps


def _load_records(config: BatchConfig) -> list[dict[str, Any]]:
    """QC records of every complete case in the output folder (whichever run wrote them)
    in this batch's label scheme, sorted by case name."""
    records = []
    for path in sorted(Path(config.output_dir).glob(f"*{QC_SUFFIX}")):
        if path.name.startswith("."):
            continue
        record = read_qc_record(path)
        if (record is not None and record.get("complete")
                and record.get("scheme") == config.inference.scheme):
            records.append(record)
    return sorted(records, key=lambda record: str(record.get("case", "")))


def write_batch_files(config: BatchConfig,
                      failures: Sequence[CaseOutcome]) -> tuple[Path | None, Path | None]:
    """(Re)write ``volumes.csv`` and ``index.html`` from the QC JSON files of every
    complete case in the output folder, so that several runs into one folder add up.
    Nothing is written while the folder holds no complete case (no empty tables)."""
    records = _load_records(config)
    if not records:
        return None, None
    folder = Path(config.output_dir)
    write_colour_tables(folder, config.inference.scheme)  # names + colours for viewers
    csv_path = atomic_write_text(folder / "volumes.csv", volumes_csv_text(records))
    atomic_write_text(folder / "statistics.csv", statistics_csv_text(records))
    if config.volumes_copy is not None:
        atomic_write_text(config.volumes_copy, csv_path.read_text(encoding="utf-8"))
    if config.qc_csv is not None:
        atomic_write_text(config.qc_csv, qc_csv_text(records))
    failed = [(outcome.case_id, outcome.error) for outcome in failures]
    install_viewer(folder)
    html_path = atomic_write_text(folder / "index.html",
                                  render_segmentation_index(records, failed))
    return csv_path, html_path


#: Hidden temporary names a killed run may leave: every writer's, the QC JSON's and the
#: batch files'.
_TEMPORARY_PATTERNS = (*(writer.temporary_pattern() for writer in CASE_WRITERS),
                       f".*{QC_SUFFIX}.*", ".volumes.csv.*", ".statistics.csv.*",
                       ".index.html.*")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files a killed run left (``.<output name>.<random>``).

    Outputs are written to such hidden names and renamed when complete; a process
    killed with SIGKILL cannot remove them itself, so the next run does.
    """
    removed = []
    for pattern in _TEMPORARY_PATTERNS:
        for path in folder.glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
