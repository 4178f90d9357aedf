"""Batches of ``subct segment``: many inputs, one model, resumable, on Dask if asked.

Inputs (:func:`expand_inputs`) can be volume files (NIfTI/MGZ/NRRD/MHA), DICOM series
folders, folders of volume files or of DICOM series folders, and text files listing
paths (one per line, ``#`` comments, relative paths relative to the list file).

Per case, in ``output_dir``::

    <case>_labels.nii.gz      labels on the input's grid (FreeSurfer IDs or --scheme)
    <case>_overlay.png        axial/coronal/sagittal overlay
    <case>_posteriors.nii.gz  (--posteriors) softmax on the crop grid, 4D uint8 (x/255)
    <case>_qc.json            QC, volumes, ICV, timings; written last = case complete

and for the batch ``volumes.csv`` (a row per complete case) and ``index.html``.

Every file is written to a temporary name and renamed, so a killed run leaves no
half-written output; a re-run skips cases whose ``_qc.json`` says complete and whose
files exist (``overwrite=True`` redoes them). A failing case is recorded and the
others go on; :class:`BatchSummary` lists the failures.
"""

from __future__ import annotations

import csv
import io
import json
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from subct import __version__
from subct.errors import SubctError, SubctInputError
from subct.inference import InferenceConfig, SegmentationModel, SegmentationResult
from subct.io import (
    VOLUME_SUFFIXES,
    atomic_output,
    atomic_write_text,
    case_name,
    is_volume_file,
    load_volume,
    save_volume,
)

QC_SUFFIX = "_qc.json"
LABELS_SUFFIX = "_labels.nii.gz"
OVERLAY_SUFFIX = "_overlay.png"
POSTERIORS_SUFFIX = "_posteriors.nii.gz"
LIST_SUFFIXES = (".txt", ".lst", ".list", ".csv")


@dataclass(frozen=True)
class CaseInput:
    """One case of a batch: its output name and the file or DICOM folder to read."""

    name: str
    path: Path


@dataclass(frozen=True)
class BatchConfig:
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
    """

    output_dir: Path
    model: str | Path | None = None
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    overwrite: bool = False
    write_overlay: bool = True
    write_posteriors: bool = False
    scheduler: str | None = None


@dataclass
class CaseOutcome:
    """Result of one case: ``status`` is ``done``, ``skipped`` (already complete) or
    ``failed`` (then ``error`` says why)."""

    case: CaseInput
    status: str
    labels_path: Path | None = None
    qc_path: Path | None = None
    error: str = ""
    seconds: float = 0.0


@dataclass
class BatchSummary:
    """All outcomes plus the batch files written."""

    cases: list[CaseOutcome]
    volumes_csv: Path | None
    index_html: Path | None

    @property
    def failures(self) -> list[CaseOutcome]:
        """Cases that failed."""
        return [case for case in self.cases if case.status == "failed"]


# ------------------------------------------------------------------------------- inputs


def _looks_like_dicom_file(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".ima"):
        return True
    try:
        with path.open("rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return False


def _is_dicom_folder(folder: Path) -> bool:
    return any(child.is_file() and _looks_like_dicom_file(child) for child in folder.iterdir())


def _read_list_file(path: Path) -> list[Path]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip().strip(",")
        if text:
            entry = Path(text).expanduser()
            entries.append(entry if entry.is_absolute() else path.parent / entry)
    return entries


def expand_inputs(inputs: Iterable[str | Path]) -> tuple[list[CaseInput], list[CaseOutcome]]:
    """Turn command-line inputs into cases; unusable inputs become failed outcomes.

    Case names come from file names (``case01.nii.gz`` → ``case01``) or DICOM folder
    names; repeated names get ``_2``, ``_3``... appended.
    """
    cases: list[CaseInput] = []
    problems: list[CaseOutcome] = []

    def add(path: Path, depth: int = 0) -> None:
        if not path.exists():
            problems.append(CaseOutcome(CaseInput(path.name, path), "failed",
                                        error=f"{path}: no such file or folder"))
        elif path.is_dir():
            if _is_dicom_folder(path):
                cases.append(CaseInput(path.name, path))
                return
            found = False
            for child in sorted(path.iterdir()):
                if is_volume_file(child) or (child.is_dir() and depth == 0
                                             and _is_dicom_folder(child)):
                    add(child, depth + 1)
                    found = True
            if not found:
                problems.append(CaseOutcome(CaseInput(path.name, path), "failed",
                                            error=f"{path}: folder holds no volume files "
                                                  "or DICOM series"))
        elif any(path.name.lower().endswith(s) for s in VOLUME_SUFFIXES):
            cases.append(CaseInput(case_name(path), path))
        elif path.suffix.lower() in LIST_SUFFIXES and depth == 0:
            for entry in _read_list_file(path):
                add(entry, depth + 1)
        else:
            problems.append(CaseOutcome(CaseInput(path.name, path), "failed",
                                        error=f"{path}: not a volume file, DICOM folder or "
                                              "list of paths"))

    for item in inputs:
        add(Path(item))
    seen: dict[str, int] = {}
    unique: list[CaseInput] = []
    for case in cases:
        count = seen.get(case.name, 0) + 1
        seen[case.name] = count
        unique.append(case if count == 1 else CaseInput(f"{case.name}_{count}", case.path))
    return unique, problems


# ------------------------------------------------------------------------------ outputs


def case_outputs(config: BatchConfig, name: str) -> dict[str, Path]:
    """Paths of one case's output files (only those this configuration writes)."""
    folder = Path(config.output_dir)
    outputs = {"labels": folder / f"{name}{LABELS_SUFFIX}", "qc": folder / f"{name}{QC_SUFFIX}"}
    if config.write_overlay:
        outputs["overlay"] = folder / f"{name}{OVERLAY_SUFFIX}"
    if config.write_posteriors:
        outputs["posteriors"] = folder / f"{name}{POSTERIORS_SUFFIX}"
    return outputs


def is_complete(config: BatchConfig, name: str) -> bool:
    """True when every output of the case exists and its QC JSON marks it complete
    with the same label scheme."""
    outputs = case_outputs(config, name)
    if not all(path.is_file() for path in outputs.values()):
        return False
    try:
        record = json.loads(outputs["qc"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(record.get("complete")) and record.get("scheme") == config.inference.scheme


def _save_posteriors(result: SegmentationResult, path: Path) -> None:
    import nibabel as nib

    assert result.posteriors is not None
    scaled = np.round(np.moveaxis(result.posteriors.probabilities, 0, -1) * 255.0)
    image = nib.Nifti1Image(scaled.astype(np.uint8), result.posteriors.grid.affine)
    image.header["descrip"] = b"subct posteriors x/255; channel 0 background"
    with atomic_output(path, suffix=".nii.gz") as temporary:
        nib.save(image, str(temporary))


def write_case_outputs(case: CaseInput, ct_hu_source: Any, result: SegmentationResult,
                       config: BatchConfig, model_description: str,
                       seconds: float) -> dict[str, Path]:
    """Write one case's files atomically; the QC JSON goes last (marks completion)."""
    from subct.overlay import OverlayConfig, save_overlay

    outputs = case_outputs(config, case.name)
    save_volume(result.labels, outputs["labels"])
    if "overlay" in outputs:
        save_overlay(ct_hu_source, result.labels, outputs["overlay"],
                     OverlayConfig(scheme=result.scheme, title=case.name),
                     hu_offset=result.qc.input.hu_offset)
    if "posteriors" in outputs:
        _save_posteriors(result, outputs["posteriors"])
    record = {
        "complete": True,
        "case": case.name,
        "input": str(case.path),
        "model": model_description,
        "scheme": result.scheme,
        "subct_version": __version__,
        "volumes_mm3": result.volumes_mm3,
        "intracranial_volume_mm3": result.intracranial_volume_mm3,
        "qc": result.qc.to_json_dict(),
        "timings_s": {**result.timings_s, "total": seconds},
        "inference": {"tta": config.inference.tta,
                      "sliding_window_overlap": config.inference.sliding_window_overlap,
                      "mc_dropout_samples": config.inference.mc_dropout_samples},
        "runtime": result.runtime,
        "outputs": {key: path.name for key, path in outputs.items()},
    }
    atomic_write_text(outputs["qc"], json.dumps(record, indent=2, allow_nan=True) + "\n")
    return outputs


def process_case(case: CaseInput, model: SegmentationModel, config: BatchConfig
                 ) -> CaseOutcome:
    """Segment one case and write its outputs; errors become a failed outcome."""
    from subct.inference import segment_volume

    start = time.perf_counter()
    inference = replace(config.inference, keep_posteriors=config.write_posteriors)
    try:
        volume = load_volume(case.path)
        result = segment_volume(volume, model, inference)
        description = str(model.path) if model.path is not None else "in-memory model"
        outputs = write_case_outputs(case, volume, result, config, description,
                                     time.perf_counter() - start)
        return CaseOutcome(case, "done", outputs["labels"], outputs["qc"],
                           seconds=time.perf_counter() - start)
    except SubctError as error:
        return CaseOutcome(case, "failed", error=str(error),
                           seconds=time.perf_counter() - start)
    except Exception as error:  # a bug or a library failure on this case: keep going
        detail = traceback.format_exception_only(type(error), error)[-1].strip()
        return CaseOutcome(case, "failed", error=f"{case.path}: unexpected error: {detail}",
                           seconds=time.perf_counter() - start)


def _process_on_worker(case: CaseInput, config: BatchConfig) -> CaseOutcome:
    """Dask task: load the model once per worker process, then process the case.

    Without ``--threads`` the network gets the worker's own thread budget (its
    ``nthreads``), not every core of the machine: several workers on one machine would
    otherwise each start a pool of all cores and oversubscribe it.
    """
    from subct.inference import cached_model

    if config.inference.threads is None:
        config = replace(config, inference=replace(config.inference,
                                                   threads=_worker_thread_budget()))
    return process_case(case, cached_model(config.model, config.inference), config)


def _worker_thread_budget() -> int | None:
    """Threads of the Dask worker running this task (None outside a worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    threads = getattr(worker, "nthreads", None) or getattr(worker.state, "nthreads", None)
    return max(1, int(threads)) if threads else None


# ------------------------------------------------------------------------- batch files


def _load_records(config: BatchConfig, names: Sequence[str]) -> list[dict[str, Any]]:
    records = []
    for name in names:
        path = case_outputs(config, name)["qc"]
        if path.is_file():
            try:
                records.append(json.loads(path.read_text(encoding="utf-8")))
            except ValueError:
                continue
    return records


def volumes_csv_text(records: Sequence[dict[str, Any]]) -> str:
    """``volumes.csv``: case, each structure's volume (mm³), ICV (mm³), QC flag."""
    from subct.qc import scheme_structure_names

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    scheme = records[0]["scheme"] if records else "canonical"
    names = scheme_structure_names(scheme)
    writer.writerow(["case", *(f"{name}_mm3" for name in names), "intracranial_volume_mm3",
                     "qc_flagged"])
    for record in records:
        volumes = record.get("volumes_mm3", {})
        icv = record.get("intracranial_volume_mm3")
        writer.writerow([record["case"], *(f"{float(volumes.get(n, 0.0)):.1f}" for n in names),
                         "" if icv is None else f"{float(icv):.0f}",
                         int(bool(record.get("qc", {}).get("flagged")))])
    return buffer.getvalue()


def write_batch_files(config: BatchConfig, names: Sequence[str],
                      failures: Sequence[CaseOutcome]) -> tuple[Path, Path]:
    """(Re)write ``volumes.csv`` and ``index.html`` from the cases' QC JSON files."""
    from subct.report import render_segmentation_index

    records = _load_records(config, names)
    folder = Path(config.output_dir)
    csv_path = atomic_write_text(folder / "volumes.csv", volumes_csv_text(records))
    failed = [(outcome.case.name, outcome.error) for outcome in failures]
    html_path = atomic_write_text(folder / "index.html",
                                  render_segmentation_index(records, failed))
    return csv_path, html_path


# -------------------------------------------------------------------------------- runner


_TEMPORARY_PATTERNS = (f".*{LABELS_SUFFIX}.*", f".*{QC_SUFFIX}.*", f".*{OVERLAY_SUFFIX}.*",
                       f".*{POSTERIORS_SUFFIX}.*", ".volumes.csv.*", ".index.html.*")


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


def run_batch(inputs: Iterable[str | Path], config: BatchConfig,
              model: SegmentationModel | None = None,
              progress: Callable[[CaseOutcome], None] | None = None) -> BatchSummary:
    """Segment every input; go on past failures; write per-case and batch outputs.

    Args:
        inputs: files, DICOM folders, folders of files, list files.
        config: batch options (output folder, model, overwrite, scheduler...).
        model: an already loaded model (else ``config.model`` is loaded once here, or
            once per Dask worker with ``config.scheduler``).
        progress: called with each case's outcome as it finishes.
    """
    from subct.inference import cached_model

    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(Path(config.output_dir))
    cases, outcomes = expand_inputs(inputs)
    for outcome in outcomes:
        if progress:
            progress(outcome)
    todo: list[CaseInput] = []
    for case in cases:
        if not config.overwrite and is_complete(config, case.name):
            outcome = CaseOutcome(case, "skipped", case_outputs(config, case.name)["labels"],
                                  case_outputs(config, case.name)["qc"])
            outcomes.append(outcome)
            if progress:
                progress(outcome)
        else:
            todo.append(case)
    if todo:
        if config.scheduler:
            outcomes.extend(_run_on_dask(todo, config, progress))
        else:
            if model is None:
                model = cached_model(config.model, config.inference)
            for case in todo:
                outcome = process_case(case, model, config)
                outcomes.append(outcome)
                if progress:
                    progress(outcome)
    order = {case.name: index for index, case in enumerate(cases)}
    outcomes.sort(key=lambda o: order.get(o.case.name, -1))
    failures = [o for o in outcomes if o.status == "failed"]
    csv_path, html_path = write_batch_files(config, [c.name for c in cases], failures)
    return BatchSummary(outcomes, csv_path, html_path)


def _run_on_dask(cases: list[CaseInput], config: BatchConfig,
                 progress: Callable[[CaseOutcome], None] | None) -> list[CaseOutcome]:
    from distributed import Client, as_completed

    try:
        client = Client(config.scheduler, timeout=30)
    except OSError as error:
        raise SubctInputError(None, f"cannot connect to Dask scheduler {config.scheduler} "
                                    f"({error})") from error
    outcomes: list[CaseOutcome] = []
    try:
        futures = {client.submit(_process_on_worker, case, config, pure=False): case
                   for case in cases}
        for future in as_completed(futures):
            case = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # worker died or the task raised outside the case
                outcome = CaseOutcome(case, "failed", error=f"{case.path}: Dask task failed: "
                                                            f"{error}")
            outcomes.append(outcome)
            if progress:
                progress(outcome)
    finally:
        client.close()
    return outcomes
