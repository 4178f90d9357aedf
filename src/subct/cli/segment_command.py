"""``subct segment INPUT... -o OUT``: segment the 17 subcortical structures of head CTs.

A thin layer over :func:`subct.inference.batch.run_batch` (Python: ``subct.segment`` for one image
in memory). Prints one line per case; failed cases are listed at the end and make
the exit code 1 (the other cases still finish). A missing model or bad option is a
one-line error with exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from subct.cli.console import make_console, plain
from subct.errors import SubctConfigError
from subct.inference.config import FIRST_STEP
from subct.io.files import discover_inputs
from subct.labels.schemes import get_scheme
from subct.norms.demographics import parse_sex

if TYPE_CHECKING:
    from rich.console import Console

    from subct.inference.batch import BatchSummary, CaseOutcome
    from subct.inference.outputs import BatchConfig

#: The parameters of ``subct segment`` (typer objects), one per argument of the command.
OPTIONS: dict[str, Any] = {
    "inputs": typer.Argument(
        None, help="NIfTI/MGZ/NRRD files, DICOM series folders, folders of such files, "
                   "or text files listing paths."),
    "output": typer.Option(..., "-o", "--output", help="Output folder."),
    "input_option": typer.Option(
        None, "-i", "--input", help="An input, as SynthSeg's and TotalSegmentator's -i "
                                    "(repeatable; same as a positional input)."),
    "model": typer.Option(
        None, "--model", help="Model name (see subct.model.registry) or checkpoint path from "
                              "`subct train`; default: the shipped model."),
    "scheme": typer.Option(
        "canonical", "--scheme", help="Label scheme of the written labels: canonical "
                                      "(17 FreeSurfer IDs), merged or paper7."),
    "device": typer.Option(
        "auto", "--device", help="auto, cpu, cuda, cuda:N or mps (Apple silicon)."),
    "threads": typer.Option(
        None, "--threads", help="CPU threads of the network engine (default: the cores "
                                "this process may use)."),
    "precision": typer.Option(
        None, "--precision", help="auto (bf16 only on CPUs with native bf16, AMP on "
                                  "CUDA), fp32 or bf16; default $SUBCT_PRECISION or auto."),
    "backend": typer.Option(
        None, "--backend", help="Network engine: auto (OpenVINO on CPU, PyTorch on "
                                "GPU), openvino, onnxruntime or torch; default "
                                "$SUBCT_BACKEND or auto."),
    "fast": typer.Option(False, "--fast", help="About half the network time: no "
                                               "left/right TTA (see docs/segment.md)."),
    "no_tta": typer.Option(False, "--no-tta", help="Skip left/right flip averaging."),
    "no_inpaint": typer.Option(
        False, "--no-inpaint", help="Show the network calcified foci and blood-like "
                                    "regions as they are (default: in-painted from the "
                                    "tissue around them)."),
    "no_denoise": typer.Option(
        False, "--no-denoise", help="No noise-adaptive smoothing of the network's input "
                                    "(default: only noisy scans are smoothed)."),
    "no_calibration": typer.Option(
        False, "--no-calibration", help="Raw argmax of the network: no per-structure "
                                        "volume calibration (default: the model's own, "
                                        "see docs/segment.md)."),
    "qc": typer.Option(None, "--qc", help="Write per-case QC scores to this CSV, as "
                       "SynthSeg's --qc (an integer here is the old spelling of "
                       "--mc-samples, deprecated)."),
    "mc_samples": typer.Option(0, "--mc-samples", min=0, help="Monte-Carlo dropout passes "
                               "for the uncertainty QC (15 in the 3D UNet paper; 0 = off)."),
    "posteriors_grid": typer.Option(
        "crop", "--posteriors-grid", help="Grid of --posteriors: crop (the network's "
                                          "1 mm box) or input (the labels' grid)."),
    "posteriors": typer.Option(False, "--posteriors",
                               help="Also write softmax maps (crop grid)."),
    "overwrite": typer.Option(False, "--overwrite",
                              help="Redo cases whose outputs are complete."),
    "force": typer.Option(False, "--force", help="Segment inputs that fail the "
                          "head-CT gate (not a head CT, no orientation); the QC "
                          "flags stay."),
    "assume_orientation": typer.Option(
        None, "--assume-orientation", help="Axis codes (RAS, LPS, LIA...) for files that "
                                           "record no orientation."),
    "series": typer.Option(
        None, "--series", help="For DICOM folders with several series: the series "
                               "number or part of its description (default: the "
                               "largest axial CT series)."),
    "no_overlay": typer.Option(False, "--no-overlay", help="Do not draw the overlay PNGs."),
    "dicom_seg": typer.Option(
        False, "--dicom-seg", help="For DICOM series inputs, also write a DICOM SEG "
                                   "on the original slices (<case>_seg.dcm)."),
    "masks": typer.Option(False, "--masks", help="Also write one binary mask per "
                          "structure, <case>_masks/<structure>.nii.gz."),
    "roi_subset": typer.Option(
        None, "--roi-subset", help="Comma-separated structure names to keep in the "
                                   "label map and masks (default: all)."),
    "age": typer.Option(
        None, "--age", help="Age at the scan (years) for the normative percentiles of a "
                            "single case (default: the DICOM header's, if any)."),
    "sex": typer.Option(
        None, "--sex", help="F or M, for the normative percentiles of a single case "
                            "(default: the DICOM header's, if any)."),
    "demographics": typer.Option(
        None, "--demographics", help="CSV with columns case,age,sex (case = output "
                                     "name) for a batch's normative percentiles."),
    "vol": typer.Option(
        None, "--vol", help="Also write volumes.csv to this file (SynthSeg's --vol)."),
    "quiet": typer.Option(False, "--quiet", "-q", help="No progress lines and no line per "
                          "finished case; errors and the summary only."),
    "scheduler": typer.Option(
        None, "--scheduler", help="Dask scheduler address (tcp://host:8786) to spread "
                                  "the batch over; default: in this process."),
}
_O = OPTIONS


def register(app: typer.Typer) -> None:
    """Add the ``segment`` command to ``app``."""
    app.command("segment")(segment)


def segment(
    inputs: list[Path] | None = _O["inputs"], output: Path = _O["output"],
    input_option: list[Path] | None = _O["input_option"], model: str | None = _O["model"],
    scheme: str = _O["scheme"], device: str = _O["device"], threads: int | None = _O["threads"],
    precision: str | None = _O["precision"], backend: str | None = _O["backend"],
    fast: bool = _O["fast"], no_tta: bool = _O["no_tta"], no_inpaint: bool = _O["no_inpaint"],
    no_denoise: bool = _O["no_denoise"], no_calibration: bool = _O["no_calibration"],
    qc: str | None = _O["qc"], mc_samples: int = _O["mc_samples"],
    posteriors_grid: str = _O["posteriors_grid"],
    posteriors: bool = _O["posteriors"], overwrite: bool = _O["overwrite"],
    force: bool = _O["force"], assume_orientation: str | None = _O["assume_orientation"],
    series: str | None = _O["series"], no_overlay: bool = _O["no_overlay"],
    dicom_seg: bool = _O["dicom_seg"], masks: bool = _O["masks"],
    roi_subset: str | None = _O["roi_subset"], vol: Path | None = _O["vol"],
    age: float | None = _O["age"], sex: str | None = _O["sex"],
    demographics: Path | None = _O["demographics"],
    scheduler: str | None = _O["scheduler"], quiet: bool = _O["quiet"],
) -> None:
    """Segment head CTs: labels, volumes.csv, QC JSON, overlays and index.html."""
    # torch-heavy modules are imported here, not at module import, so that
    # `subct --help` and the other commands start fast.
    from subct.inference.batch import run_batch
    from subct.inference.config import InferenceConfig
    from subct.inference.outputs import BatchConfig
    from subct.model.registry import resolve_model_path

    inputs = [*(inputs or []), *(input_option or [])]
    if not inputs:
        raise SubctConfigError("no input: give files or folders (positional or -i)")
    get_scheme(scheme)  # an unknown name is a one-line error (exit 2)
    qc_csv, mc_samples = _qc_option(qc, mc_samples)
    model_path = resolve_model_path(model)  # fail fast (exit 2) when no model exists
    settings = {"scheme": scheme, "device": device, "threads": threads,
                "mc_dropout_samples": mc_samples, "precision": precision, "backend": backend,
                "force": force, "assume_orientation": assume_orientation,
                "inpaint_dense_foci": not no_inpaint, "inpaint_blood": not no_inpaint,
                "denoise": not no_denoise, "calibrate_volumes": not no_calibration}
    inference = (InferenceConfig.fast(**settings) if fast
                 else InferenceConfig(tta=not no_tta, **settings))  # type: ignore[arg-type]
    case_count = len(discover_inputs(inputs)[0])
    if (age is not None or sex is not None) and case_count > 1:
        raise SubctConfigError(f"--age/--sex describe one person, and the inputs hold "
                               f"{case_count} cases: give a --demographics CSV instead")
    config = BatchConfig(output_dir=output, model=model_path, inference=inference,
                         overwrite=overwrite, write_posteriors=posteriors,
                         posteriors_on_input_grid=_posteriors_grid(posteriors_grid),
                         scheduler=scheduler, series=series,
                         write_overlay=not no_overlay, volumes_copy=vol, qc_csv=qc_csv,
                         write_dicom_seg=dicom_seg, write_masks=masks,
                         age_years=age, sex=None if sex is None else parse_sex(sex, "--sex"),
                         demographics_csv=demographics,
                         roi_subset=None if roi_subset is None else tuple(
                             name.strip() for name in roi_subset.split(",") if name.strip()))
    reporter = _CaseReporter(case_count, quiet)
    summary = reporter.run(lambda: run_batch(inputs, config, progress=reporter.report,
                                             on_step=reporter.step))
    _print_summary(summary, config, reporter)


class _CaseReporter:
    """One line per finished case; progress while cases run: on a terminal a live status
    line (cases done, the current case and step, the batch's ETA), otherwise one plain
    line on stdout as each case starts (logs stay short; stderr keeps only errors);
    nothing of either with ``--quiet``."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.console: Console = make_console()
        self.errors: Console = make_console(stderr=True)
        self.total, self.quiet = total, quiet
        self.finished = 0
        self.computed_seconds: list[float] = []  # of cases segmented (not skipped) so far
        self.status = self.errors.status("loading the model") \
            if self.errors.is_terminal and not quiet else None

    def eta(self) -> str:
        """Time left at the mean pace of the cases segmented so far (mm:ss)."""
        if not self.computed_seconds:
            return ""
        left = (self.total - self.finished) * sum(self.computed_seconds) / \
            len(self.computed_seconds)
        return f", about {int(left) // 60}:{int(left) % 60:02d} left"

    def step(self, case: str, name: str) -> None:
        progress = f"[{self.finished}/{self.total} done{self.eta()}] {plain(case)}"
        if self.status is not None:
            self.status.update(f"{progress}: {plain(name)}")
        elif not self.quiet and name == FIRST_STEP:
            self.console.print(f"{progress}: started")

    def report(self, outcome: CaseOutcome) -> None:
        self.finished += 1
        case = plain(outcome.case_id)
        if outcome.status == "failed":
            self.errors.print(f"[red]failed[/]  {case}: {plain(outcome.error)}")
        elif outcome.status == "skipped":
            if not self.quiet:
                self.console.print(f"skipped {case} (complete; --overwrite redoes it)")
        else:
            self.computed_seconds.append(outcome.seconds)
            warnings = outcome.details.get("qc_warnings", [])
            note = f", [yellow]{len(warnings)} QC warning(s)[/]" if warnings else ""
            if not self.quiet:
                self.console.print(f"done    {case} ({outcome.seconds:.1f} s){note}")
                for warning in warnings:
                    self.console.print(f"        [yellow]![/] {plain(warning)}")

    def run(self, batch: Any) -> BatchSummary:
        if self.status is not None:
            self.status.start()
        try:
            return batch()  # type: ignore[no-any-return]
        finally:
            if self.status is not None:
                self.status.stop()


def _print_summary(summary: BatchSummary, config: BatchConfig, reporter: _CaseReporter
                   ) -> None:
    """Redone and flagged cases, where the outputs are, failures (exit 2 or 1)."""
    console, errors = reporter.console, reporter.errors
    if summary.redone:
        console.print(f"redone {len(summary.redone)} case(s) finished earlier from another "
                      f"input, model or label settings: {plain(', '.join(summary.redone))}")
    flagged = [o.case_id for o in summary.cases if o.details.get("qc_warnings")]
    if flagged:
        console.print(f"[yellow]{len(flagged)} of {len(summary.cases)} case(s) flagged by "
                      f"QC[/] ({plain(', '.join(flagged))}): check them before using their "
                      "volumes (docs/segment.md explains each flag)")
    if summary.demographics_unmatched:
        console.print(f"[yellow]--demographics lists {len(summary.demographics_unmatched)} "
                      f"case(s) not in this batch[/] "
                      f"({plain(', '.join(summary.demographics_unmatched[:5]))}"
                      f"{', ...' if len(summary.demographics_unmatched) > 5 else ''}): "
                      "its case column must be the output names")
    if summary.without_norms:
        console.print(f"no normative percentiles for {len(summary.without_norms)} case(s) "
                      f"({plain(', '.join(summary.without_norms[:5]))}"
                      f"{', ...' if len(summary.without_norms) > 5 else ''}): "
                      f"{plain(summary.norms_reason)}")
    if summary.volumes_csv is not None:
        console.print(f"outputs in {plain(config.output_dir)} (volumes.csv, index.html)")
    if summary.failures:
        if len(summary.cases) > 1:
            errors.print(f"[red]{len(summary.failures)} of {len(summary.cases)} "
                         "case(s) failed:[/]")
            for outcome in summary.failures:
                errors.print(f"  {plain(outcome.error)}")
        # 2: every failure is the input's (fixable by the user); 1: a bug somewhere
        raise typer.Exit(1 if any(o.internal for o in summary.failures) else 2)


def _qc_option(qc: str | None, mc_samples: int) -> tuple[Path | None, int]:
    """``--qc PATH`` (the QC CSV, as SynthSeg) or the deprecated ``--qc N`` (MC samples)."""
    if qc is None:
        return None, mc_samples
    if qc.strip().lstrip("-").isdigit():
        make_console(stderr=True).print(
            f"warning: --qc {plain(qc)} as a number of Monte-Carlo passes is deprecated; use "
            f"--mc-samples {plain(qc)} (--qc now takes a CSV path, as SynthSeg's --qc)")
        return None, int(qc)
    return Path(qc), mc_samples


def _posteriors_grid(name: str) -> bool:
    """True for ``input``, False for ``crop``; anything else is a one-line error."""
    if name not in ("crop", "input"):
        raise SubctConfigError(f"--posteriors-grid {name!r}: choose crop or input")
    return name == "input"
