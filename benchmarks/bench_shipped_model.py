"""Acceptance evaluation of a CT segmentation model on held-out synthetic head CTs.

Issue 6 ("The shipped model") asks for the accuracy of the shipped network on CTs it
never saw, at 1 mm isotropic and at 5 mm axial slices, through the public pipeline.
This script:

1. draws whole-head synthetic CTs with :class:`subct.synth.SynthGenerator` (CT mode,
   default tissue priors, default spatial augmentation, fixed seeds) from the
   HELD-OUT SynthSeg label maps 19 and 20 (``--maps``; the shipped model is trained on
   01–16 and validated on 17–18). The generator's own resolution simulation is off; the
   grid (``--shape``, default 192 × 240 × 240 mm, centred on the subcortical structures
   ± 10 mm) holds the whole head from the skull top to below the skull base even at the
   generator's largest scaling (1.2), so the pipeline must find the brain itself;
2. **1 mm**: the synthetic 1 mm RAS CT as it comes out of the generator;
   **5 mm**: the same 1 mm CT averaged over 5 consecutive axial slices (a boxcar slice
   profile of 5 mm thickness, 5 mm spacing, no gap) onto a 1 × 1 × 5 mm grid, then
   stored in scanner LPS voxel order (:meth:`subct.image.volume.Volume.reoriented`). Its reference
   labels are the 1 mm labels of each slab's central slice. This tests the full
   native-geometry path of ``subct segment`` (anisotropic, non-RAS input);
3. segments each CT with :func:`subct.segment` (brain location, crop, flip TTA,
   largest component, labels back on the input grid), twice: ``located`` — the
   pipeline exactly as shipped (the acceptance figure) — and ``oracle`` — the same
   pipeline with its crop moved onto the true intracranial centroid (from the labels)
   through ``crop_offset_mm``, which separates network errors from brain-location errors;
4. scores the prediction against the deformed label map (converted to canonical IDs)
   on the CT's own grid with :func:`subct.evaluation.metrics.label_map_metrics`: per-structure
   Dice, HD95 (mm), absolute volume difference (mm³) and ASSD (mm).

Prints one table per resolution (mean over cases) plus mean Dice and worst structure,
and writes ``results_long.csv`` (case, resolution, structure, metric, value),
``summary.json``, ``results.md`` (the Markdown tables of the model card) and, with
``--save-images``, the CTs and label maps to ``--out``.

Usage::

    python benchmarks/bench_shipped_model.py --model runs/shipped_phase2/best.safetensors \
        [--maps 19 20] [--samples-per-map 2] [--seed 2024] [--out /tmp/shipped_eval]

Acceptance target (issue 6): mean Dice ≥ 0.80 over the 17 structures, none below 0.60.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from subct.evaluation.metrics import CaseMetrics
from subct.image.volume import Volume
from subct.inference.model import SegmentationModel
from subct.synth.evaluation import CLINICAL_SLAB_MM

DEFAULT_SHAPE = (192, 240, 240)
SLICE_THICKNESS_MM = CLINICAL_SLAB_MM  # subct.synth.evaluation's thick-slice protocol
TARGET_MEAN_DICE = 0.80
TARGET_MIN_DICE = 0.60


@dataclass
class EvaluationCase:
    """One synthetic CT (HU) and its reference labels (canonical IDs) on the same grid."""

    name: str
    resolution: str
    ct: Volume
    reference: Volume
    intracranial_centroid_mm: NDArray[np.float64]
    #: True intracranial space (brain + CSF labels, FreeSurfer IDs 1-499) on ``ct``'s grid
    intracranial: NDArray[np.bool_] | None = None
    #: Voxels a drawn lesion changed (pathology runs), on ``ct``'s grid
    lesion: NDArray[np.bool_] | None = None


def held_out_map_paths(map_numbers: list[int], tuning: bool = False) -> list[Path]:
    """Paths of the SynthSeg label maps ``training_seg_NN``; refuses the training maps.

    With ``tuning``, only the validation maps 17–18 are accepted: inference settings
    (window overlap, TTA, ...) are chosen on them, never on the held-out 19–20.
    """
    from subct.paths import shared_data_dir

    if tuning and any(number not in (17, 18) for number in map_numbers):
        raise SystemExit("--tuning evaluates on the validation maps 17 and 18 only")
    if not tuning and any(number <= 18 for number in map_numbers):
        raise SystemExit("maps 01-18 are training/validation maps of the shipped model; "
                         "evaluate on 19-20 only (or tune on 17-18 with --tuning)")
    folder = shared_data_dir() / "label_maps" / "synthseg"
    paths = [folder / f"training_seg_{number:02d}.nii.gz" for number in map_numbers]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"label maps not found: {', '.join(missing)}")
    return paths


def axial_slab_average(ct_1mm: Volume, reference_1mm: Volume,
                       thickness: int) -> tuple[Volume, Volume]:
    """1 mm RAS CT → axial slabs (:func:`subct.synth.evaluation.axial_slabs`)."""
    from subct.synth.evaluation import axial_slabs

    return axial_slabs(ct_1mm, reference_1mm, thickness)


#: Scan conditions of the held-out benchmark (issue 12): ``low_dose`` adds correlated noise
#: of σ 15 HU (the top of the clinical 3–15 HU range) to the 1 mm CT before any slab
#: averaging; ``pitch15`` pitches the head 15° about the left-right axis (chin down),
#: the CT and its reference together (same voxels, rotated world).
CONDITIONS = ("clean", "low_dose", "pitch15")
LOW_DOSE_SIGMA_HU = 15.0
PITCH_DEG = 15.0


def _low_dose(hu: NDArray[np.int16], seed: int) -> NDArray[np.int16]:
    from scipy import ndimage

    noise = np.random.default_rng(seed).normal(0.0, 1.0, hu.shape).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, 0.7)  # reconstruction-kernel correlation
    noise *= np.float32(LOW_DOSE_SIGMA_HU / float(noise.std()))
    return np.round(hu.astype(np.float32) + noise).astype(np.int16)


def generate_cases(map_paths: list[Path], samples_per_map: int, seed: int,
                   shape: tuple[int, int, int], pathology: str | None = None,
                   condition: str = "clean") -> list[EvaluationCase]:
    """Whole-head synthetic CTs at 1 mm and 5 mm from each held-out map (fixed seeds).

    ``pathology``: comma-separated kinds of :class:`subct.synth.config.PathologyConfig`
    drawn in every case, or ``clinical`` for the training mix (labels follow the
    generator's rule: anatomy underneath, except the CSF core of an infarct).
    ``condition``: one of :data:`CONDITIONS`.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")
    # the real-CT robustness benchmark's pitch (same voxels, rotated world), one helper
    from bench_real_ct_robustness import pitched
    from subct.labels.convert import convert_to_canonical
    from subct.synth import SynthGenerator
    from subct.synth.config import PathologyConfig
    from subct.synth.evaluation import evaluation_synth_config

    # slice thickness is applied explicitly below
    config = evaluation_synth_config(shape)
    if pathology:
        kinds = [kind.strip() for kind in pathology.split(",") if kind.strip()]
        clinical = PathologyConfig.clinical()
        # haemorrhage:<type> draws one type of bleed only (intraparenchymal,
        # intraventricular, subdural or subarachnoid)
        bleeds = [kind.split(":", 1)[1] for kind in kinds if kind.startswith("haemorrhage:")]
        kinds = [kind.split(":", 1)[0] for kind in kinds]
        config.pathology = clinical if kinds == ["clinical"] else clinical.only(kinds)
        if bleeds:
            config.pathology.haemorrhage = config.pathology.haemorrhage.model_copy(update={
                name: float(name.split("_")[0] in bleeds)
                for name in type(config.pathology.haemorrhage).model_fields
                if name.endswith("probability")})
    cases: list[EvaluationCase] = []
    for map_number, path in enumerate(map_paths):
        generator = SynthGenerator([path], config, seed=seed + 1000 * map_number)
        for sample_number in range(samples_per_map):
            sample = generator.sample(0)
            name = f"{path.name.split('.')[0].replace('training_seg_', 'map')}_s{sample_number}"
            assert sample.hu is not None
            hu = np.round(sample.hu.numpy()).astype(np.int16)
            if condition == "low_dose":
                hu = _low_dose(hu, seed + 1000 * map_number + sample_number)
            ct = Volume(hu, sample.affine.copy(), description="synthetic CT, 1 mm")
            labels = convert_to_canonical(sample.labels_fs.numpy(), "freesurfer")
            reference = Volume(np.asarray(labels, dtype=np.int16), sample.affine.copy())
            # true intracranial centroid: brain + CSF labels (FreeSurfer IDs 1-499)
            brain_labels = sample.labels_fs.numpy()
            inside = np.argwhere((brain_labels > 0) & (brain_labels < 500)).mean(axis=0)
            centroid = sample.affine[:3, :3] @ inside + sample.affine[:3, 3]
            inside_mask = (brain_labels > 0) & (brain_labels < 500)
            lesion = None if sample.lesion_mask is None else sample.lesion_mask.numpy()
            ct_thick, ref_thick = axial_slab_average(ct, reference, SLICE_THICKNESS_MM)
            extra_thick: list[NDArray[np.bool_] | None] = []
            for mask in (inside_mask, lesion):
                if mask is None:
                    extra_thick.append(None)
                    continue
                # a slab is "inside"/"lesion" where its central 1 mm slice is
                _, thick = axial_slab_average(ct, Volume(mask.astype(np.int16),
                                                         ct.affine.copy()), SLICE_THICKNESS_MM)
                extra_thick.append(np.asarray(thick.array) > 0)
            if condition == "pitch15":
                ct, reference = pitched(ct, PITCH_DEG), pitched(reference, PITCH_DEG)
                ct_thick, ref_thick = (pitched(ct_thick, PITCH_DEG),
                                       pitched(ref_thick, PITCH_DEG))
                centroid = ct.affine[:3, :3] @ inside + ct.affine[:3, 3]
            cases.append(EvaluationCase(name, "1mm", ct, reference, centroid, inside_mask,
                                        lesion))
            cases.append(EvaluationCase(name, f"{SLICE_THICKNESS_MM}mm", ct_thick, ref_thick,
                                        centroid, extra_thick[0], extra_thick[1]))
    return cases


def locator_error_mm(case: EvaluationCase) -> float:
    """Distance (mm) between the located and the true intracranial centroid."""
    from subct.inference.config import DEFAULT_CROP_OFFSET_MM

    offset = np.asarray(oracle_crop_offset_mm(case)) - np.asarray(DEFAULT_CROP_OFFSET_MM)
    return float(np.linalg.norm(offset))


def oracle_crop_offset_mm(case: EvaluationCase) -> tuple[float, float, float]:
    """``crop_offset_mm`` that puts the pipeline's crop where the true brain is.

    :func:`subct.segment` centres its crop on the located intracranial centroid plus
    ``crop_offset_mm``; adding (true centroid − located centroid) to the default
    offset moves the crop onto the true intracranial centroid from the labels. This
    isolates the network from brain-location errors.
    """
    from subct.image.intracranial import locate_intracranial
    from subct.inference.config import DEFAULT_CROP_OFFSET_MM
    from subct.io.hounsfield import detect_hu_offset

    located = locate_intracranial(case.ct, hu_offset=detect_hu_offset(case.ct))
    offset = (np.asarray(DEFAULT_CROP_OFFSET_MM) + case.intracranial_centroid_mm
              - located.centroid_ras_mm)
    return (float(offset[0]), float(offset[1]), float(offset[2]))


def score_case(case: EvaluationCase, model: SegmentationModel, tta: bool,
               oracle_crop: bool = False, single_pass: bool = False,
               options: dict[str, object] | None = None,
               ) -> tuple[CaseMetrics, Volume, float]:
    """Segment one case through :func:`subct.segment` and score it on the CT's grid.

    With ``oracle_crop`` the crop is centred on the true intracranial centroid
    (:func:`oracle_crop_offset_mm`) instead of the located one. With ``single_pass``
    the whole crop box goes through the network at once instead of the default
    training-patch windows (a diagnostic). ``options`` are further
    :class:`subct.inference.config.InferenceConfig` fields (window overlap, component rule).
    """
    from subct.evaluation.metrics import label_map_metrics
    from subct.inference.config import DEFAULT_CROP_OFFSET_MM, InferenceConfig
    from subct.inference.pipeline import segment
    from subct.labels.schemes import scheme_names

    offset = oracle_crop_offset_mm(case) if oracle_crop else DEFAULT_CROP_OFFSET_MM
    start = time.perf_counter()
    single_pass_limit = 160**3 if single_pass else InferenceConfig().max_single_pass_voxels
    # force: the benchmark scores the network on every head; the gate's verdict is kept
    # in the QC warnings it prints
    result = segment(case.ct, model=model, tta=tta, crop_offset_mm=offset,
                     max_single_pass_voxels=single_pass_limit, force=True, **(options or {}))
    seconds = time.perf_counter() - start
    ct = case.ct
    if not result.labels.geometry.same_grid(ct.geometry):
        raise RuntimeError(f"{case.name}: labels are not on the input grid")
    metrics = label_map_metrics(
        np.asarray(result.labels.array), np.asarray(case.reference.array),
        ct.spacing, scheme_names("canonical"),
        case=f"{case.name}_{case.resolution}",
        voxel_volume_mm3=ct.voxel_volume_mm3,
    )
    warnings = sorted({flag.code for flag in result.qc.flags if flag.severity == "warning"})
    QC_WARNINGS[f"{case.name}_{case.resolution}"] = warnings
    VENTRICLE_FIGURES[f"{case.name}_{case.resolution}"] = result.qc.input.facts.get(
        "anatomy", {}).get("ventricle_median_hu_and_dense_fraction", {})
    names = scheme_names("canonical").values()
    FLAGGED_STRUCTURES[f"{case.name}_{case.resolution}"] = {
        name for flag in result.qc.flags if flag.severity == "warning"
        for name in names if flag.concerns(name)}
    NAMED_STRUCTURES[f"{case.name}_{case.resolution}"] = {
        name for flag in result.qc.flags if flag.severity == "warning"
        for name in flag.structures}
    if case.lesion is not None and case.lesion.any():
        LESION_VOLUME_ERRORS[f"{case.name}_{case.resolution}"] = lesion_volume_errors(
            np.asarray(result.labels.array), np.asarray(case.reference.array), case.lesion,
            ct.spacing)
    return metrics, result.labels, seconds


#: Structures within this distance (mm) of a lesion count as "beside a lesion".
LESION_NEIGHBOURHOOD_MM = 5.0
#: Issue 12's target: every structure beside a lesion within 15 % of its true volume.
LESION_VOLUME_TOLERANCE = 0.15


def lesion_volume_errors(predicted: NDArray[np.integer], reference: NDArray[np.integer],
                         lesion: NDArray[np.bool_], spacing: tuple[float, float, float]
                         ) -> dict[str, float]:
    """Relative volume error (predicted − true) / true of every structure whose true
    mask lies within :data:`LESION_NEIGHBOURHOOD_MM` of a lesion voxel."""
    from scipy import ndimage

    from subct.labels.schemes import scheme_names

    distance = ndimage.distance_transform_edt(~lesion, sampling=spacing)
    near = distance <= LESION_NEIGHBOURHOOD_MM
    errors: dict[str, float] = {}
    for value, name in scheme_names("canonical").items():
        true = reference == value
        if not (true & near).any():
            continue
        true_count = int(true.sum())
        errors[name] = (int((predicted == value).sum()) - true_count) / true_count
    return errors


#: Per case: relative volume error of each structure beside a lesion (pathology runs).
LESION_VOLUME_ERRORS: dict[str, dict[str, float]] = {}
#: Per case: the structures a QC warning puts in doubt (all of them for a whole-case one).
FLAGGED_STRUCTURES: dict[str, set[str]] = {}
#: Per case: the structures a warning names itself (what ``statistics.csv``'s
#: ``structure_flags`` column lists; whole-case warnings name none).
NAMED_STRUCTURES: dict[str, set[str]] = {}


def print_lesion_volume_errors() -> None:
    """Structures beside a lesion: relative volume error per case, and the target count."""
    if not LESION_VOLUME_ERRORS:
        return
    print(f"\n## Structures within {LESION_NEIGHBOURHOOD_MM:g} mm of a lesion: volume error "
          f"(target: within {100 * LESION_VOLUME_TOLERANCE:.0f} %)")
    print("| case | structure: error |")
    print("|---|---|")
    total = within = flagged = named = 0
    for case, errors in LESION_VOLUME_ERRORS.items():
        total += len(errors)
        within += sum(abs(e) <= LESION_VOLUME_TOLERANCE for e in errors.values())
        doubted = FLAGGED_STRUCTURES.get(case, set())
        flagged += sum(abs(e) > LESION_VOLUME_TOLERANCE and name in doubted
                       for name, e in errors.items())
        named += sum(abs(e) > LESION_VOLUME_TOLERANCE and name in NAMED_STRUCTURES.get(case, ())
                     for name, e in errors.items())
        text = ", ".join(f"{name} {100 * error:+.0f} %" + ("*" if name in doubted else "")
                         for name, error in
                         sorted(errors.items(), key=lambda item: -abs(item[1])))
        print(f"| {case} | {text} |")
    print(f"{within} of {total} structure volumes beside a lesion within "
          f"{100 * LESION_VOLUME_TOLERANCE:.0f} %; of the {total - within} others, "
          f"{flagged} named by a QC warning (* above; a whole-case warning counts for "
          f"every structure), {named} by a warning about that structure itself (the "
          "structure_flags column of statistics.csv)")
    LESION_FLAG_SUMMARY.update(beside_lesion=total, within_tolerance=within,
                               outside_tolerance_flagged=flagged,
                               outside_tolerance_named=named)


#: Per case: the intensity figures of the ventricle checks (``subct.qc.anatomy``).
VENTRICLE_FIGURES: dict[str, dict[str, float]] = {}
#: Totals of :func:`print_lesion_volume_errors` (for ``summary.json``).
LESION_FLAG_SUMMARY: dict[str, int] = {}


#: QC warning codes of every segmented case (printed at the end: false alarms on heads
#: without pathology, caught problems on heads with it).
QC_WARNINGS: dict[str, list[str]] = {}


def summarise(all_metrics: list[CaseMetrics], resolution: str) -> dict[str, object]:
    """Per-structure means over the cases of one resolution, mean Dice, worst structure."""
    table: dict[str, dict[str, float]] = {}
    for case_metrics in all_metrics:
        for structure in case_metrics.structures:
            if not np.isfinite(structure.dice):
                continue  # absent from the reference (an infarct's CSF core took it all)
            row = table.setdefault(structure.name, {"dice": 0.0, "hd95_mm": 0.0,
                                                    "abs_volume_diff_mm3": 0.0,
                                                    "assd_mm": 0.0, "n": 0.0})
            row["dice"] += structure.dice
            row["hd95_mm"] += structure.hd95_mm
            row["abs_volume_diff_mm3"] += structure.abs_volume_diff_mm3
            row["assd_mm"] += structure.assd_mm
            row["n"] += 1
    for row in table.values():
        count = row.pop("n")
        for key in row:
            row[key] /= count
    dice = {name: row["dice"] for name, row in table.items()}
    worst = min(dice, key=lambda name: dice[name])
    mean_dice = float(np.mean(list(dice.values())))
    return {
        "resolution": resolution,
        "cases": len(all_metrics),
        "case_mean_dice": [float(m.mean_dice) for m in all_metrics],
        "mean_dice": mean_dice,
        "worst_structure": worst,
        "worst_dice": dice[worst],
        "meets_target": bool(mean_dice >= TARGET_MEAN_DICE and dice[worst] >= TARGET_MIN_DICE),
        "structures": table,
    }


def print_table(summary: dict[str, object]) -> None:
    table = summary["structures"]
    case_means = summary["case_mean_dice"]
    assert isinstance(table, dict) and isinstance(case_means, list)
    print(f"\n## {summary['resolution']}  ({summary['cases']} cases)")
    print(f"| {'structure':<28} | Dice  | HD95 mm | AVD mm³ | ASSD mm |")
    print(f"|{'-' * 30}|-------|---------|---------|---------|")
    for name, row in table.items():
        print(f"| {name:<28} | {row['dice']:.3f} | {row['hd95_mm']:7.2f} | "
              f"{row['abs_volume_diff_mm3']:7.0f} | {row['assd_mm']:7.2f} |")
    print(f"mean Dice {summary['mean_dice']:.3f}; worst {summary['worst_structure']} "
          f"{summary['worst_dice']:.3f}; per case "
          + ", ".join(f"{v:.3f}" for v in case_means)
          + f"; target (mean ≥ {TARGET_MEAN_DICE}, all ≥ {TARGET_MIN_DICE}) "
          + ("MET" if summary["meets_target"] else "NOT met"))


def markdown_tables(summaries: list[dict[str, object]]) -> str:
    """Per-structure tables (mean over cases) in Markdown, one per resolution/crop mode."""
    lines: list[str] = []
    for summary in summaries:
        table = summary["structures"]
        assert isinstance(table, dict)
        lines += [f"**{summary['resolution']}** ({summary['cases']} cases): mean Dice "
                  f"**{summary['mean_dice']:.3f}**, worst {summary['worst_structure']} "
                  f"{summary['worst_dice']:.3f}", "",
                  "| structure | Dice | HD95 (mm) | AVD (mm³) | ASSD (mm) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {name} | {row['dice']:.3f} | {row['hd95_mm']:.1f} | "
                  f"{row['abs_volume_diff_mm3']:.0f} | {row['assd_mm']:.2f} |"
                  for name, row in table.items()]
        lines.append("")
    return "\n".join(lines)


def write_outputs(out: Path, all_metrics: dict[str, list[CaseMetrics]],
                  summaries: list[dict[str, object]], info: dict[str, object]) -> None:
    from subct.io.writers import atomic_write_text

    lines = ["case,resolution,structure,metric,value"]
    for resolution, case_list in all_metrics.items():
        for case_metrics in case_list:
            for structure in case_metrics.structures:
                for metric in ("dice", "hd95_mm", "abs_volume_diff_mm3", "assd_mm",
                               "volume_pred_mm3", "volume_ref_mm3"):
                    value = float(getattr(structure, metric))
                    text = "nan" if math.isnan(value) else f"{value:.6g}"
                    lines.append(f"{case_metrics.case},{resolution},{structure.name},"
                                 f"{metric},{text}")
    atomic_write_text(out / "results_long.csv", "\n".join(lines) + "\n")
    atomic_write_text(out / "results.md", markdown_tables(summaries))
    atomic_write_text(out / "summary.json",
                      json.dumps({**info, "summaries": summaries}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint (.safetensors) or 'shipped'")
    parser.add_argument("--maps", type=int, nargs="+", default=[19, 20])
    parser.add_argument("--samples-per-map", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE),
                        help="synthetic grid (voxels of 1 mm, RAS)")
    parser.add_argument("--no-tta", action="store_true", help="segment without flip TTA")
    parser.add_argument("--tuning", action="store_true",
                        help="evaluate on the validation maps (--maps 17 18) to choose "
                             "inference settings without touching the held-out maps")
    parser.add_argument("--component-fraction", type=float, default=None,
                        help="keep components >= this fraction of the largest (default: "
                             "the pipeline's)")
    parser.add_argument("--overlap", type=float, default=None,
                        help="sliding-window overlap (default: the pipeline's default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default=None,
                        help="engine (default: subct's; openvino, onnxruntime or torch)")
    parser.add_argument("--precision", default=None, help="auto, fp32 or bf16")
    parser.add_argument("--pathology", default=None,
                        help="draw pathology in every case: comma-separated kinds "
                             "(infarct, haemorrhage, calcification, ...) or 'clinical'; "
                             "haemorrhage:<type> for one type of bleed (intraparenchymal, "
                             "intraventricular, subdural, subarachnoid)")
    parser.add_argument("--denoise", choices=["on", "off"], default=None,
                        help="noise-adaptive smoothing of the network input (default: "
                             "the pipeline's)")
    parser.add_argument("--noise-target", type=float, default=None,
                        help="NOISE_TARGET_HU for --denoise on (a tuning knob)")
    parser.add_argument("--noise-start", type=float, default=None,
                        help="NOISE_START_HU for --denoise on (a tuning knob)")
    parser.add_argument("--no-inpaint", action="store_true",
                        help="show the network dense foci as they are (no in-painting)")
    parser.add_argument("--no-blood-inpaint", action="store_true",
                        help="show the network blood-like regions as they are")
    parser.add_argument("--no-calibration", action="store_true",
                        help="raw argmax: no per-structure volume calibration")
    parser.add_argument("--condition", choices=CONDITIONS, default="clean",
                        help="scan condition: low_dose (σ 15 HU correlated noise) or "
                             "pitch15 (head pitched 15°)")
    parser.add_argument("--single-pass", action="store_true",
                        help="run the whole crop box in one pass (diagnostic; default: "
                             "training-patch windows)")
    parser.add_argument("--crop", nargs="+", choices=["located", "oracle"],
                        default=["located", "oracle"],
                        help="located: the pipeline's own brain location (the acceptance "
                             "figure); oracle: crop centred on the true brain (network only)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/subct_shipped_eval"))
    parser.add_argument("--save-images", action="store_true",
                        help="also write each CT, reference and prediction as NIfTI")
    args = parser.parse_args()

    from subct.inference.model import load_model
    from subct.model.runtime import cpu_info

    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(None if args.model == "shipped" else args.model, "cpu",
                       args.precision, args.backend, args.threads)
    info = cpu_info()
    print(f"# CPU: {info.model}; flags: {' '.join(info.relevant_flags) or 'none'}; engine "
          f"{model.backend} {model.precision}, {model.threads} threads")
    # a checkpoint file has no calibration unless its metadata holds one, while the
    # shipped weights have the registry's: compare checkpoints with --no-calibration
    from subct.model.registry import class_scales

    calibration = {} if args.no_calibration else class_scales(model.path,
                                                               model.metadata.class_scales)
    print("# volume calibration: " + (", ".join(f"{name} x{factor:g}" for name, factor
                                                in calibration.items()) or "none"))
    paths = held_out_map_paths(args.maps, tuning=args.tuning)
    # InferenceConfig fields to change from the pipeline's defaults (None: keep default)
    options: dict[str, object] = {name: value for name, value in (
        ("sliding_window_overlap", args.overlap),
        ("component_min_fraction", args.component_fraction)) if value is not None}
    if args.no_inpaint:
        options["inpaint_dense_foci"] = False
    if args.no_blood_inpaint:
        options["inpaint_blood"] = False
    if args.no_calibration:
        options["calibrate_volumes"] = False
    if args.denoise is not None:
        options["denoise"] = args.denoise == "on"
    if args.noise_target is not None or args.noise_start is not None:
        import subct.inference.denoise as denoise

        if args.noise_target is not None:  # alone, it moves both (the session-5 tuning)
            denoise.NOISE_TARGET_HU = denoise.NOISE_START_HU = args.noise_target
        if args.noise_start is not None:
            denoise.NOISE_START_HU = args.noise_start
    start = time.perf_counter()
    cases = generate_cases(paths, args.samples_per_map, args.seed, tuple(args.shape),
                           args.pathology, args.condition)
    synth_seconds = time.perf_counter() - start
    print(f"generated {len(cases)} cases in {synth_seconds:.1f} s")
    by_resolution: dict[str, list[CaseMetrics]] = {}
    seconds: dict[str, list[float]] = {}
    locator_errors: dict[str, float] = {}
    for case in cases:
        locator_errors[f"{case.name}_{case.resolution}"] = error = locator_error_mm(case)
        print(f"{case.name} {case.resolution}: located intracranial centroid is "
              f"{error:.1f} mm from the true one")
        for crop_mode in args.crop:
            metrics, predicted, elapsed = score_case(case, model, tta=not args.no_tta,
                                                     oracle_crop=crop_mode == "oracle",
                                                     single_pass=args.single_pass,
                                                     options=options)
            key = f"{case.resolution} {crop_mode}-crop"
            by_resolution.setdefault(key, []).append(metrics)
            seconds.setdefault(key, []).append(elapsed)
            print(f"{case.name} {key:>17} grid {case.ct.shape} {case.ct.orientation}: "
                  f"mean Dice {metrics.mean_dice:.3f} ({elapsed:.1f} s)", flush=True)
            if args.save_images:
                from subct.io.writers import save_volume

                stem = args.out / f"{case.name}_{case.resolution}"
                save_volume(case.ct, f"{stem}_ct.nii.gz")
                save_volume(case.reference, f"{stem}_ref.nii.gz")
                save_volume(predicted, f"{stem}_{crop_mode}_pred.nii.gz")
                if case.lesion is not None:
                    save_volume(case.reference.with_array(case.lesion.astype(np.uint8)),
                                f"{stem}_lesion.nii.gz")
    summaries = [summarise(metrics, resolution) for resolution, metrics in by_resolution.items()]
    for summary in summaries:
        print_table(summary)
    print_lesion_volume_errors()
    info = {
        "model": str(args.model),
        "model_epoch": model.metadata.epoch,
        "maps": args.maps,
        "samples_per_map": args.samples_per_map,
        "seed": args.seed,
        "shape": args.shape,
        "tta": not args.no_tta,
        "single_pass": args.single_pass,
        "inpaint_dense_foci": not args.no_inpaint,
        "inpaint_blood": not args.no_blood_inpaint,
        "calibrate_volumes": not args.no_calibration,
        "volume_calibration": calibration,
        "condition": args.condition,
        "pathology": args.pathology,
        "lesion_volume_errors": LESION_VOLUME_ERRORS,
        "lesion_volume_flagging": LESION_FLAG_SUMMARY,
        "ventricle_figures": VENTRICLE_FIGURES,
        "flagged_structures": {case: sorted(names)
                               for case, names in FLAGGED_STRUCTURES.items()},
        "overlap": args.overlap,
        "component_fraction": args.component_fraction,
        "segment_seconds_mean": {k: float(np.mean(v)) for k, v in seconds.items()},
        "synthesis_seconds": synth_seconds,
        "locator_error_mm": locator_errors,
        "load_average": os.getloadavg(),
        "qc_warnings": QC_WARNINGS,
    }
    write_outputs(args.out, by_resolution, summaries, info)
    flagged = {case: codes for case, codes in QC_WARNINGS.items() if codes}
    print(f"\nQC: {len(flagged)} of {len(QC_WARNINGS)} segmentations flagged")
    for case, codes in flagged.items():
        print(f"  {case}: {' '.join(codes)}")
    print(f"\nsegment mean s: {info['segment_seconds_mean']}; load average "
          f"{os.getloadavg()[0]:.1f}; results in {args.out}")


if __name__ == "__main__":
    main()
