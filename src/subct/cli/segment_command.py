"""``subct segment INPUT... -o OUT``: segment the 17 subcortical structures of head CTs.

A thin layer over :func:`subct.inference.batch.run_batch` (Python: ``subct.segment`` for one image
in memory). Prints one line per case; failed cases are listed at the end and make
the exit code 1 (the other cases still finish). A missing model or bad option is a
one-line error with exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from subct.errors import SubctConfigError
from subct.labels.schemes import get_scheme

if TYPE_CHECKING:
    from subct.inference.batch import CaseOutcome


def register(app: typer.Typer) -> None:
    """Add the ``segment`` command to ``app``."""

    @app.command("segment")
    def segment(
        inputs: list[Path] | None = typer.Argument(  # noqa: B008
            None, help="NIfTI/MGZ/NRRD files, DICOM series folders, folders of such files, "
                       "or text files listing paths."),
        output: Path = typer.Option(..., "-o", "--output", help="Output folder."),  # noqa: B008
        input_option: list[Path] | None = typer.Option(  # noqa: B008
            None, "-i", "--input", help="An input, as SynthSeg's and TotalSegmentator's -i "
                                        "(repeatable; same as a positional input)."),
        model: str | None = typer.Option(
            None, "--model", help="Model name (see subct.model.registry) or checkpoint path from "
                                  "`subct train`; default: the shipped model."),
        scheme: str = typer.Option(
            "canonical", "--scheme", help="Label scheme of the written labels: canonical "
                                          "(17 FreeSurfer IDs), merged or paper7."),
        device: str = typer.Option(
            "auto", "--device", help="auto, cpu, cuda, cuda:N or mps (Apple silicon)."),
        threads: int | None = typer.Option(
            None, "--threads", help="CPU threads of the network engine (default: the cores "
                                    "this process may use)."),
        precision: str | None = typer.Option(
            None, "--precision", help="auto (bf16 only on CPUs with native bf16, AMP on "
                                      "CUDA), fp32 or bf16; default $SUBCT_PRECISION or auto."),
        backend: str | None = typer.Option(
            None, "--backend", help="Network engine: auto (OpenVINO on CPU, PyTorch on "
                                    "GPU), openvino, onnxruntime or torch; default "
                                    "$SUBCT_BACKEND or auto."),
        fast: bool = typer.Option(False, "--fast", help="About half the network time: no "
                                                        "left/right TTA (see docs/segment.md)."),
        no_tta: bool = typer.Option(False, "--no-tta", help="Skip left/right flip averaging."),
        no_inpaint: bool = typer.Option(
            False, "--no-inpaint", help="Show the network calcified foci and blood-like "
                                        "regions as they are (default: in-painted from the "
                                        "tissue around them)."),
        no_denoise: bool = typer.Option(
            False, "--no-denoise", help="No noise-adaptive smoothing of the network's input "
                                        "(default: only noisy scans are smoothed)."),
        no_calibration: bool = typer.Option(
            False, "--no-calibration", help="Raw argmax of the network: no per-structure "
                                            "volume calibration (default: the model's own, "
                                            "see docs/segment.md)."),
        qc: int = typer.Option(0, "--qc", help="Monte-Carlo dropout passes for QC "
                                               "(15 in the 3D UNet paper; 0 = off)."),
        posteriors_grid: str = typer.Option(
            "crop", "--posteriors-grid", help="Grid of --posteriors: crop (the network's "
                                              "1 mm box) or input (the labels' grid)."),
        posteriors: bool = typer.Option(False, "--posteriors",
                                        help="Also write softmax maps (crop grid)."),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="Redo cases whose outputs are complete."),
        force: bool = typer.Option(False, "--force", help="Segment inputs that fail the "
                                   "head-CT gate (not a head CT, no orientation); the QC "
                                   "flags stay."),
        assume_orientation: str | None = typer.Option(
            None, "--assume-orientation", help="Axis codes (RAS, LPS, LIA...) for files that "
                                               "record no orientation."),
        series: str | None = typer.Option(
            None, "--series", help="For DICOM folders with several series: the series "
                                   "number or part of its description (default: the "
                                   "largest axial CT series)."),
        no_overlay: bool = typer.Option(False, "--no-overlay",
                                        help="Do not draw the overlay PNGs."),
        dicom_seg: bool = typer.Option(
            False, "--dicom-seg", help="For DICOM series inputs, also write a DICOM SEG "
                                       "on the original slices (<case>_seg.dcm)."),
        masks: bool = typer.Option(False, "--masks", help="Also write one binary mask per "
                                   "structure, <case>_masks/<structure>.nii.gz."),
        roi_subset: str | None = typer.Option(
            None, "--roi-subset", help="Comma-separated structure names to keep in the "
                                       "label map and masks (default: all)."),
        vol: Path | None = typer.Option(  # noqa: B008
            None, "--vol", help="Also write volumes.csv to this file (SynthSeg's --vol)."),
        scheduler: str | None = typer.Option(
            None, "--scheduler", help="Dask scheduler address (tcp://host:8786) to spread "
                                      "the batch over; default: in this process."),
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
        model_path = resolve_model_path(model)  # fail fast (exit 2) when no model exists
        settings = {"scheme": scheme, "device": device, "threads": threads,
                    "mc_dropout_samples": qc, "precision": precision, "backend": backend,
                    "force": force, "assume_orientation": assume_orientation,
                    "inpaint_dense_foci": not no_inpaint, "inpaint_blood": not no_inpaint,
                    "denoise": not no_denoise, "calibrate_volumes": not no_calibration}
        inference = (InferenceConfig.fast(**settings) if fast
                     else InferenceConfig(tta=not no_tta, **settings))  # type: ignore[arg-type]
        config = BatchConfig(output_dir=output, model=model_path, inference=inference,
                             overwrite=overwrite, write_posteriors=posteriors,
                             posteriors_on_input_grid=_posteriors_grid(posteriors_grid),
                             scheduler=scheduler, series=series,
                             write_overlay=not no_overlay, volumes_copy=vol,
                             write_dicom_seg=dicom_seg, write_masks=masks,
                             roi_subset=None if roi_subset is None else tuple(
                                 name.strip() for name in roi_subset.split(",")
                                 if name.strip()))
        console = Console(highlight=False, soft_wrap=True)
        errors = Console(stderr=True, highlight=False, soft_wrap=True)

        def report(outcome: CaseOutcome) -> None:
            if outcome.status == "failed":
                errors.print(f"[red]failed[/]  {outcome.case_id}: {outcome.error}")
            elif outcome.status == "skipped":
                console.print(f"skipped {outcome.case_id} (complete; --overwrite redoes it)")
            else:
                warnings = outcome.details.get("qc_warnings", [])
                note = f", [yellow]{len(warnings)} QC warning(s)[/]" if warnings else ""
                console.print(f"done    {outcome.case_id} ({outcome.seconds:.1f} s){note}")
                for warning in warnings:
                    console.print(f"        [yellow]![/] {warning}")

        # a live status line on a terminal: which case, which step, how many done
        status = errors.status("loading the model") if errors.is_terminal else None
        finished = [0]

        def step(case: str, name: str) -> None:
            if status is not None:
                status.update(f"[{finished[0]} done] {case}: {name}")

        def report_and_count(outcome: CaseOutcome) -> None:
            finished[0] += 1
            report(outcome)

        if status is not None:
            status.start()
        try:
            summary = run_batch(inputs, config, progress=report_and_count, on_step=step)
        finally:
            if status is not None:
                status.stop()
        if summary.redone:
            console.print(f"redone {len(summary.redone)} case(s) finished earlier with another "
                          f"model or label settings: {', '.join(summary.redone)}")
        flagged = [o.case_id for o in summary.cases if o.details.get("qc_warnings")]
        if flagged:
            console.print(f"[yellow]{len(flagged)} of {len(summary.cases)} case(s) flagged by "
                          f"QC[/] ({', '.join(flagged)}): check them before using their "
                          "volumes (docs/segment.md explains each flag)")
        if summary.volumes_csv is not None:
            console.print(f"outputs in {output} (volumes.csv, index.html)")
        if summary.failures:
            if len(summary.cases) > 1:
                errors.print(f"[red]{len(summary.failures)} of {len(summary.cases)} "
                             "case(s) failed:[/]")
                for outcome in summary.failures:
                    errors.print(f"  {outcome.error}")
            # 2: every failure is the input's (fixable by the user); 1: a bug somewhere
            raise typer.Exit(1 if any(o.internal for o in summary.failures) else 2)


def _posteriors_grid(name: str) -> bool:
    """True for ``input``, False for ``crop``; anything else is a one-line error."""
    if name not in ("crop", "input"):
        raise SubctConfigError(f"--posteriors-grid {name!r}: choose crop or input")
    return name == "input"
