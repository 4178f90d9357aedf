"""Running many cases: one outcome type and one executor for every batch in subct.

``subct segment`` (many CTs) and ``subct build-dataset`` (many MRI/CT pairs) both turn a
list of cases into a list of :class:`CaseOutcome`: a case that fails is recorded with a
one-line reason and the batch goes on. :func:`run_cases` runs the cases in this process,
on a local Dask cluster (``local_workers``) or on an existing Dask scheduler, and reports
each outcome as it finishes.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from subct.errors import SubctError, SubctInputError

CaseStatus = Literal["done", "skipped", "failed"]

#: Seconds to wait for a Dask scheduler before giving up with a clear error.
SCHEDULER_CONNECT_TIMEOUT_S = 30.0
Case = TypeVar("Case")


@dataclass
class CaseOutcome:
    """What happened to one case.

    Attributes:
        case_id: the case's name (output file stem or dataset case ID).
        status: ``done``, ``skipped`` (already complete) or ``failed``.
        error: one line saying why, for a failed case (names the input file).
        seconds: wall time of the case in this run.
        source: the case's input (file or folder), when it has one.
        outputs: files written for the case (role → path).
        details: per-case figures worth keeping (e.g. the dataset QC row).
        internal: for a failed case, True when the cause was a bug or a library
            failure rather than a problem of the input the user can fix.
    """

    case_id: str
    status: CaseStatus
    error: str = ""
    seconds: float = 0.0
    source: Path | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    internal: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form (paths as strings)."""
        record = asdict(self)
        record["source"] = str(self.source) if self.source is not None else None
        record["outputs"] = {key: str(value) for key, value in self.outputs.items()}
        return record


def guarded(case_id: str, task: Callable[[], CaseOutcome], source: Path | None = None
            ) -> CaseOutcome:
    """Run ``task``; turn an exception into a ``failed`` outcome instead of raising.

    A :class:`~subct.errors.SubctError` is the user's to fix and keeps its message; any
    other exception is a bug or a library failure on this case and is reported as
    ``unexpected error`` with its type (the full traceback is not needed to go on).
    """
    started = time.perf_counter()
    internal = False
    try:
        return task()
    except SubctError as error:
        message = str(error)
    except Exception as error:  # one bad case must not stop the batch
        detail = traceback.format_exception_only(type(error), error)[-1].strip()
        where = f"{source}: " if source is not None else f"{case_id}: "
        message = f"{where}unexpected error: {detail}"
        internal = True
        if os.environ.get("SUBCT_DEBUG"):
            traceback.print_exc()
    return CaseOutcome(case_id, "failed", error=message, source=source,
                       seconds=time.perf_counter() - started, internal=internal)


def run_cases(
    process: Callable[[Case], CaseOutcome],
    cases: Sequence[Case],
    case_ids: Sequence[str],
    *,
    scheduler: str | None = None,
    local_workers: int = 0,
    threads_per_worker: int = 1,
    case_threads: int | None = None,
    on_outcome: Callable[[CaseOutcome], None] | None = None,
) -> list[CaseOutcome]:
    """Run ``process`` on every case and return the outcomes in the order they finish.

    Args:
        process: picklable callable (module-level function or ``functools.partial``)
            that handles one case and returns its outcome; it should not raise.
        cases: the cases.
        case_ids: one name per case (for outcomes of tasks that died).
        scheduler: address of a running Dask scheduler (``tcp://host:8786``): the cases
            run on its workers, which need subct and access to the files.
        local_workers: without ``scheduler``, > 0 starts a local Dask cluster of that
            many worker processes; 0 runs the cases here, one after another.
        threads_per_worker: Dask threads (concurrent cases) of each local worker.
        case_threads: numeric threads each case may use, exported to local workers as
            ``OMP``/``MKL``/``OPENBLAS``/``ITK`` thread counts (default
            ``threads_per_worker``); a variable the user set is kept.
        on_outcome: called in this process with each outcome as it arrives.
    """
    if not cases:
        return []
    if scheduler is None and local_workers <= 0:
        outcomes = []
        for case in cases:
            outcome = process(case)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        return outcomes
    return _run_on_dask(process, cases, case_ids, scheduler, local_workers,
                        threads_per_worker, case_threads or threads_per_worker, on_outcome)


def _run_on_dask(process: Callable[[Case], CaseOutcome], cases: Sequence[Case],
                 case_ids: Sequence[str], scheduler: str | None, local_workers: int,
                 threads_per_worker: int, case_threads: int,
                 on_outcome: Callable[[CaseOutcome], None] | None) -> list[CaseOutcome]:
    # dask.distributed costs about a second to import: only batches that use it pay
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    try:
        if scheduler is not None:
            client = Client(scheduler, timeout=SCHEDULER_CONNECT_TIMEOUT_S)
        else:
            for name in ("OMP", "MKL", "OPENBLAS", "ITK_GLOBAL_DEFAULT"):
                os.environ.setdefault(f"{name}_NUM_THREADS", str(case_threads))
            cluster = LocalCluster(n_workers=max(1, local_workers),
                                   threads_per_worker=threads_per_worker, processes=True,
                                   dashboard_address=None, silence_logs=40)
            client = Client(cluster)
    except OSError as error:
        raise SubctInputError(None, f"cannot connect to Dask scheduler {scheduler} "
                                    f"({error})") from error
    outcomes: list[CaseOutcome] = []
    try:
        futures = {client.submit(process, case, pure=False,
                                 key=f"subct-case-{case_id}-{time.time_ns()}"): case_id
                   for case, case_id in zip(cases, case_ids, strict=True)}
        for future in as_completed(futures):
            try:
                outcome: CaseOutcome = future.result()
            except Exception as error:  # the worker died (memory, killed...)
                outcome = CaseOutcome(futures[future], "failed",
                                      error=f"{futures[future]}: Dask task failed "
                                            f"({type(error).__name__}: {error})",
                                      internal=True)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return outcomes
