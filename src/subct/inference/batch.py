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

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from subct.inference.model import SegmentationModel, cached_model
from subct.inference.outputs import (
    BatchConfig,
    CaseInput,
    case_outputs,
    case_resume_key,
    check_output_dir,
    is_complete,
    normative_gaps,
    refresh_normative,
    remove_stale_temporaries,
    resume_key,
    write_batch_files,
    write_case_outputs,
)
from subct.inference.pipeline import segment_volume
from subct.io.dicom_seg import require_highdicom
from subct.io.files import discover_inputs
from subct.io.readers import load_volume
from subct.io.writers import check_output_file, folder_lock
from subct.model.graphs import file_sha256
from subct.model.registry import resolve_model_path
from subct.model.runtime import RETAIN_MEMORY_FROM_CASES, retain_freed_memory
from subct.runner import CaseOutcome, guarded, run_cases


@dataclass
class BatchSummary:
    """All outcomes plus the batch files written."""

    cases: list[CaseOutcome]
    volumes_csv: Path | None
    index_html: Path | None
    redone: list[str] = field(default_factory=list)
    #: cases of the ``--demographics`` CSV that are not in this batch (a name mismatch?)
    demographics_unmatched: list[str] = field(default_factory=list)
    #: finished cases without normative percentiles, and the first one's reason
    without_norms: list[str] = field(default_factory=list)
    norms_reason: str = ""

    @property
    def failures(self) -> list[CaseOutcome]:
        """Cases that failed."""
        return [case for case in self.cases if case.status == "failed"]


def expand_inputs(inputs: Iterable[str | Path]) -> tuple[list[CaseInput], list[CaseOutcome]]:
    """Command-line inputs as cases (:func:`subct.io.files.discover_inputs`); unusable
    inputs become failed outcomes."""
    found, problems = discover_inputs(inputs)
    return ([CaseInput(name, path) for name, path in found],
            [CaseOutcome(path.name, "failed", source=path, error=error)
             for path, error in problems])



def process_case(case: CaseInput, model: SegmentationModel, config: BatchConfig,
                 keys: dict[str, dict[str, Any]] | None = None,
                 on_step: Callable[[str, str], None] | None = None) -> CaseOutcome:
    """Segment one case and write its outputs; errors become a failed outcome.

    ``keys``: each case's resume key (:func:`case_resume_key`, computed once by the batch
    when it checked for finished cases), recorded in the QC JSON."""

    def task() -> CaseOutcome:
        start = time.perf_counter()
        inference = config.inference.replace(keep_posteriors=config.write_posteriors)
        read_clock = time.perf_counter()
        loaded = load_volume(case.path, series=config.series if case.path.is_dir() else None)
        read_seconds = time.perf_counter() - read_clock
        result = segment_volume(loaded, model, inference,
                                on_step=(lambda step: on_step(case.name, step))
                                if on_step else None)
        result.timings_s["read"] = result.timings_s.get("read", 0.0) + read_seconds
        # the input as segmented (stated orientation applied): labels and overlay agree
        volume = result.input if result.input is not None else loaded
        if on_step:
            on_step(case.name, "writing outputs")
        description = str(model.path) if model.path is not None else "in-memory model"
        outputs = write_case_outputs(case, volume, result, config, description,
                                     time.perf_counter() - start,
                                     None if keys is None else keys.get(case.name))
        warnings = [f"{flag.code}: {flag.message}" for flag in result.qc.flags
                    if flag.severity == "warning"]
        return CaseOutcome(case.name, "done", seconds=time.perf_counter() - start,
                           source=case.path, outputs=outputs,
                           details={"qc_warnings": warnings})

    return guarded(case.name, task, source=case.path)


def _process_on_worker(case: CaseInput, config: BatchConfig,
                       keys: dict[str, dict[str, Any]] | None = None) -> CaseOutcome:
    """Dask task: load the model once per worker process, then process the case.

    Without ``--threads`` the network gets the worker's own thread budget (its
    ``nthreads``), not every core of the machine: several workers on one machine would
    otherwise each start a pool of all cores and oversubscribe it.
    """

    if config.inference.threads is None:
        config = config.replace(
            inference=config.inference.replace(threads=_worker_thread_budget()))
    return process_case(case, cached_model(config.model, config.inference), config, keys)


def _worker_thread_budget() -> int | None:
    """Threads of the Dask worker running this task (None outside a worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    threads = getattr(worker, "nthreads", None) or getattr(worker.state, "nthreads", None)
    return max(1, int(threads)) if threads else None


def run_batch(inputs: Iterable[str | Path], config: BatchConfig,
              model: SegmentationModel | None = None,
              progress: Callable[[CaseOutcome], None] | None = None,
              on_step: Callable[[str, str], None] | None = None) -> BatchSummary:
    """Segment every input; go on past failures; write per-case and batch outputs.

    Args:
        inputs: files, DICOM folders, folders of files, list files.
        config: batch options (output folder, model, overwrite, scheduler...).
        model: an already loaded model (else ``config.model`` is loaded once here, or
            once per Dask worker with ``config.scheduler``).
        progress: called with each case's outcome as it finishes.
        on_step: called with (case, step) as each step of a case starts (in-process
            batches only; Dask workers report outcomes only).
    """
    input_paths = [Path(item) for item in inputs]
    check_output_dir(Path(config.output_dir), input_paths)
    if config.volumes_copy is not None:
        check_output_file(Path(config.volumes_copy), input_paths, "--vol")
    if config.qc_csv is not None:
        check_output_file(Path(config.qc_csv), input_paths, "--qc")
    if config.write_dicom_seg:
        require_highdicom()  # an optional dependency: missing is known before any case
    config.demographics_options()  # a bad --demographics CSV is refused before any case
    with folder_lock(config.output_dir, "subct segment"):
        return _run_locked(input_paths, config, model, progress, on_step)


def _run_locked(inputs: list[Path], config: BatchConfig, model: SegmentationModel | None,
                progress: Callable[[CaseOutcome], None] | None,
                on_step: Callable[[str, str], None] | None = None) -> BatchSummary:
    # holding the folder lock: every temporary file here is a dead run's
    remove_stale_temporaries(Path(config.output_dir))
    cases, outcomes = expand_inputs(inputs)
    for outcome in outcomes:
        if progress:
            progress(outcome)
    key = resume_key(config, _model_sha256(config, model))
    demographics = config.demographics_options()
    todo: list[CaseInput] = []
    redone: list[str] = []
    keys = {}  # the inputs' identities, read once: for the skip check and the record
    for case in cases:
        keys[case.name] = case_resume_key(key, case.path)
        if not config.overwrite and is_complete(config, case.name, keys[case.name]):
            refresh_normative(config, case.name, demographics)  # new ages/sexes: no redo
            outcome = CaseOutcome(case.name, "skipped", source=case.path,
                                  outputs=case_outputs(config, case.name))
            outcomes.append(outcome)
            if progress:
                progress(outcome)
        else:
            if not config.overwrite and is_complete(config, case.name):
                redone.append(case.name)  # finished, but from another input, model or settings
            todo.append(case)
    if todo:
        if config.scheduler:
            process: Callable[[CaseInput], CaseOutcome] = partial(_process_on_worker,
                                                                  config=config, keys=keys)
        else:
            if len(todo) >= RETAIN_MEMORY_FROM_CASES:  # later cases reuse earlier ones' memory
                retain_freed_memory()
            process = partial(process_case, model=model or cached_model(config.model,
                                                                        config.inference),
                              config=config, keys=keys, on_step=on_step)
        outcomes.extend(run_cases(process, todo, [case.name for case in todo],
                                  scheduler=config.scheduler, on_outcome=progress))
    order = {case.name: index for index, case in enumerate(cases)}
    outcomes.sort(key=lambda o: order.get(o.case_id, -1))
    failures = [o for o in outcomes if o.status == "failed"]
    csv_path, html_path = write_batch_files(config, failures)
    unmatched = sorted(set(demographics.table or {}) - {case.name for case in cases})
    reasons = normative_gaps(config, [o.case_id for o in outcomes if o.status != "failed"])
    return BatchSummary(outcomes, csv_path, html_path, redone, unmatched, list(reasons),
                        next(iter(reasons.values()), ""))


def _model_sha256(config: BatchConfig, model: SegmentationModel | None) -> str:
    """SHA-256 of the weights the batch uses (part of the resume key)."""
    path = model.path if model is not None else resolve_model_path(config.model)
    return file_sha256(path) if path is not None else "in-memory model"
