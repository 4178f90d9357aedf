"""Build an nnU-Net v2 CT training set from paired MRI/CT scans (ensemble label transfer).

For every MRI/CT pair (paper sections 3.1–3.4): run the chosen MRI segmenters, fuse
their label maps (:mod:`subct.transfer.fusion`), register the MRI to the CT
(:mod:`subct.transfer.registration`; skipped for pre-registered pairs such as SynthRAD2023),
carry the fused labels onto the CT with nearest neighbour, bring CT and labels to the
paper's grid (1 mm isotropic, RAS, at most 256³: cropped/padded around the head), and
write them in nnU-Net v2's raw layout::

    DATASET/
      imagesTr/<case>_0000.nii.gz     CT in HU
      labelsTr/<case>.nii.gz          class indices 0..17 (nnU-Net needs consecutive ints)
      dataset.json                    channel + label names, FreeSurfer ID of each class
      splits.json                     train/val/test (70/15/15, seeded, site-aware)
      qc.csv                          per case: agreement, registration MI, volumes, flags
      cases/<case>/                   registration.json, qc.png, done.json (marker)
      failures.json                   cases that failed in the last run, with the error

Cases run in parallel on **dask.distributed** (a ``LocalCluster`` of single-threaded
worker processes by default, or an existing scheduler). The run is resumable: a
case's ``done.json`` is written last and atomically, and cases that have it are
skipped. A failing case is recorded and reported at the end; the others go on.

Sources: a SynthRAD2023-style folder (``<site>/<case>/mr.nii.gz``, ``ct.nii.gz``,
optional ``mask.nii.gz``; ``<case>/...`` without a site level also works) or a CSV
manifest with columns ``case, mri, ct`` and optional ``site``, ``mask``. Label maps that
were computed elsewhere can be supplied per case as ``seg_<tool>.nii.gz`` (or ``.mgz``)
in the case folder, or as a manifest column ``seg_<tool>``: the tool is then not run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from subct.dataset.case import _read_marker, process_case
from subct.dataset.config import DONE_MARKER, BuildConfig
from subct.dataset.nnunet import dataset_json
from subct.dataset.quality import flag_outliers, write_qc_table
from subct.dataset.sources import CaseSpec, discover_cases
from subct.dataset.splits import make_splits, write_splits
from subct.io.writers import atomic_write_text
from subct.runner import CaseOutcome, run_cases


@dataclass
class BuildReport:
    """Result of :func:`build_dataset`."""

    output: Path
    done: list[str]
    skipped: list[str]
    failed: dict[str, str]
    qc_rows: list[dict[str, Any]]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when no case failed."""
        return not self.failed


def finalise_dataset(output: Path, config: BuildConfig, cases: Sequence[CaseSpec]
                     ) -> list[dict[str, Any]]:
    """Write dataset.json, splits.json and qc.csv from every finished case."""
    rows = []
    sites = {}
    for case in cases:
        marker = output / "cases" / case.case_id / DONE_MARKER
        if marker.is_file():
            row = _read_marker(marker)
            if row:
                rows.append(row)
                sites[case.case_id] = case.site or ""
    rows = flag_outliers(rows, config.outlier_z, config.min_agreement,
                         config.min_pairwise_dice)
    atomic_write_text(output / "dataset.json",
                      json.dumps(nnunet_dataset_json(config, len(rows)), indent=2) + "\n")
    splits = make_splits(sites, config.split_fractions, config.split_seed, config.site_split)
    write_splits(output, splits, {"seed": config.split_seed,
                                  "fractions": list(config.split_fractions),
                                  "site_split": config.site_split if any(sites.values())
                                  else "none"})
    write_qc_table(rows, output / "qc.csv")
    return rows


def nnunet_dataset_json(config: BuildConfig, num_training: int) -> dict[str, Any]:
    """nnU-Net v2 ``dataset.json`` of a built dataset: the one ``dataset.json`` writer
    (:func:`subct.dataset.nnunet.dataset_json`, canonical scheme) plus how it was made."""
    meta = dataset_json("canonical", num_training, config.dataset_name,
                        "CT subcortical labels transferred from fused MRI segmentations "
                        f"({config.fusion} of {', '.join(config.tools)})")
    meta.update({"spacing_mm": [config.target_spacing_mm] * 3, "tools": list(config.tools),
                 "fusion": config.fusion})
    return meta


def check_segmenters(cases: list[Any], config: BuildConfig) -> None:
    """Raise before any work when a configured tool cannot run for some case (not
    installed, and that case has no precomputed output for it)."""
    from subct.transfer import registry  # lazy: the registry knows MeshNet (torch)

    for tool in config.tools:
        if all(tool in case.precomputed for case in cases):
            continue
        registry.get_segmenter(tool, **dict(config.segmenter_options.get(tool, {}))
                               ).check_available()


def build_dataset(
    source: str | Path,
    output: str | Path,
    config: BuildConfig,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    progress: bool = True,
    on_case: Callable[[CaseOutcome], None] | None = None,
) -> BuildReport:
    """Build the nnU-Net dataset from ``source`` into ``output`` on dask.distributed.

    Args:
        source: SynthRAD2023-style folder or CSV manifest (see module docstring).
        output: dataset folder (created; finished cases in it are skipped).
        config: what to run (:class:`BuildConfig`).
        workers: worker processes of the local cluster (1 thread each).
        scheduler: address of an existing Dask scheduler (``tcp://host:8786``) to use
            instead of a local cluster; its workers need subct installed and access to
            ``source`` and ``output``.
        progress: show a rich progress bar.
        on_case: called in this process with each case's outcome as it finishes.

    Returns:
        Which cases were done, skipped (already finished) and failed (with errors).
    """

    started = time.perf_counter()
    output = Path(output)
    cases = discover_cases(source)
    check_segmenters(cases, config)  # a missing tool is found now, not after a case
    output.mkdir(parents=True, exist_ok=True)
    for folder in ("imagesTr", "labelsTr", "cases"):
        (output / folder).mkdir(exist_ok=True)
    pending = [c for c in cases if not (output / "cases" / c.case_id / DONE_MARKER).is_file()]
    skipped = [c.case_id for c in cases if c not in pending]
    done: list[str] = []
    failed: dict[str, str] = {}
    if pending:
        with _progress(progress, len(pending)) as advance:
            def record(outcome: CaseOutcome) -> None:
                if outcome.status == "failed":
                    failed[outcome.case_id] = outcome.error
                elif outcome.status == "skipped":
                    skipped.append(outcome.case_id)
                else:
                    done.append(outcome.case_id)
                if on_case is not None:
                    on_case(outcome)
                advance(outcome)

            run_cases(partial(process_case, output=str(output), config=config), pending,
                      [case.case_id for case in pending], scheduler=scheduler,
                      local_workers=max(1, workers), threads_per_worker=1,
                      case_threads=config.threads_per_case,
                      on_outcome=record)
    rows = finalise_dataset(output, config, cases)
    atomic_write_text(output / "failures.json", json.dumps(failed, indent=2) + "\n")
    return BuildReport(output, sorted(done), sorted(skipped), dict(sorted(failed.items())), rows,
                       time.perf_counter() - started)


class _progress:
    """Context manager yielding ``advance(outcome)``; a rich bar when enabled."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[CaseOutcome], None]:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(TextColumn("build-dataset"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      TextColumn("{task.description}"))
            self._progress.start()
            self._task = self._progress.add_task("", total=self.total)
        return self._advance

    def _advance(self, outcome: CaseOutcome) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1,
                                  description=f"{outcome.case_id}: {outcome.status}")

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
