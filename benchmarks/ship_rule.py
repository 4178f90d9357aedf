"""Issue 23's ship rule: does a candidate checkpoint replace the shipped weights?

New weights replace the shipped ones only when

1. on **validation** data (SynthSeg maps 17–18, whole synthetic heads through
   :func:`subct.segment`), both the *clean* and the *clinical-pathology* figures are at
   least as good as the shipped model's, and their mean is better; the ensemble paper's
   27 validation maps (real shapes embedded in head 17, 7 merged classes; since session
   15) are at least as good too; and
2. on the **held-out** sets they are better: SynthSeg maps 19–20 (clean and clinical,
   their mean) and the ensemble paper's 27 test maps (embedded in head 19, scored on the
   paper's 7 merged classes).

A set's *figure* is the mean of its 1 mm and 5 mm mean Dice (17 structures; the paper
maps: 1 mm, 7 classes). Every case is drawn once and segmented by both models (paired:
same CT, same reference), located crop, flip TTA, **no volume calibration** for either
model (a checkpoint has none until it is tuned; the rule compares networks). Beside the
verdict the script prints, per set, the paired per-case differences (how many cases the
candidate wins) and, on the clinical sets, how many structure volumes beside a lesion
stay within 15 % — the figures a reader needs to judge whether a difference is noise.

Usage::

    python benchmarks/ship_rule.py --candidate checkpoints/model_v2/best_pipeline.safetensors \\
        [--baseline shipped] [--samples-per-map 2] [--sets validation heldout paper] \\
        [--out /tmp/ship_rule]

Writes ``ship_rule.json`` (every figure, per case) and ``ship_rule.md`` (the tables) to
``--out``. Exit status 0 either way; the verdict is the last line.

The baseline's figures are cached per set (:mod:`ship_rule_cache`: keyed on the weights'
SHA-256, the set's drawing parameters, the engine and the code), so a second candidate
against the same shipped weights costs half the time; ``--no-cache`` scores it afresh.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_paper_test_maps as paper  # noqa: E402
import bench_shipped_model as held  # noqa: E402
import ship_rule_cache as cache  # noqa: E402
from paired_models import load_models  # noqa: E402

#: (set name, SynthSeg maps, tuning flag, pathology) of the whole-head sets
HEAD_SETS = {
    "validation clean": ([17, 18], True, None),
    "validation clinical": ([17, 18], True, "clinical"),
    "held-out clean": ([19, 20], False, None),
    "held-out clinical": ([19, 20], False, "clinical"),
}
PAPER_SET = "paper test maps"
PAPER_VALIDATION_SET = "paper validation maps"
#: paper set → (the paper's split, the SynthSeg head its maps are embedded in)
PAPER_SETS = {PAPER_VALIDATION_SET: ("val", "training_seg_17.nii.gz"),
              PAPER_SET: ("test", paper.HEAD_MAP)}
RAW_NETWORK = {"calibrate_volumes": False}


@dataclass
class SetResult:
    """One model's figures on one set."""

    resolutions: dict[str, float] = field(default_factory=dict)  # mean Dice per resolution
    case_dice: dict[str, float] = field(default_factory=dict)  # per case (and resolution)
    structure_dice: dict[str, float] = field(default_factory=dict)  # mean over resolutions
    lesion_within: int = 0
    lesion_total: int = 0

    @property
    def figure(self) -> float:
        return float(np.mean(list(self.resolutions.values())))


def score_head_set(name: str, models: dict[str, object], samples_per_map: int, seed: int
                   ) -> dict[str, SetResult]:
    """Segment every case of a whole-head set with each model (same cases for all)."""
    maps, tuning, pathology = HEAD_SETS[name]
    cases = held.generate_cases(held.held_out_map_paths(maps, tuning=tuning), samples_per_map,
                                seed, held.DEFAULT_SHAPE, pathology, "clean")
    results = {label: SetResult() for label in models}
    metrics: dict[str, dict[str, list[object]]] = {label: {} for label in models}
    for case in cases:
        key = f"{case.name}_{case.resolution}"
        for label, model in models.items():
            held.LESION_VOLUME_ERRORS.pop(key, None)
            case_metrics, _, seconds = held.score_case(case, model, tta=True,  # type: ignore[arg-type]
                                                       options=RAW_NETWORK)
            metrics[label].setdefault(case.resolution, []).append(case_metrics)
            results[label].case_dice[key] = float(case_metrics.mean_dice)
            errors = held.LESION_VOLUME_ERRORS.get(key, {})
            results[label].lesion_total += len(errors)
            results[label].lesion_within += sum(abs(e) <= held.LESION_VOLUME_TOLERANCE
                                                for e in errors.values())
            print(f"  {name} {key} {label}: {case_metrics.mean_dice:.3f} ({seconds:.0f} s)",
                  flush=True)
    for label in models:
        for resolution, per_case in metrics[label].items():
            summary = held.summarise(per_case, resolution)  # type: ignore[arg-type]
            results[label].resolutions[resolution] = float(summary["mean_dice"])  # type: ignore[arg-type]
        per_structure: dict[str, list[float]] = {}
        for per_case in metrics[label].values():
            summary = held.summarise(per_case, "")  # type: ignore[arg-type]
            for structure, row in summary["structures"].items():  # type: ignore[union-attr]
                per_structure.setdefault(structure, []).append(float(row["dice"]))
        results[label].structure_dice = {structure: float(np.mean(values))
                                         for structure, values in per_structure.items()}
    return results


def score_paper_set(set_name: str, models: dict[str, object], limit: int, seed: int
                    ) -> dict[str, SetResult]:
    """A paper split's maps in their SynthSeg head (:data:`PAPER_SETS`), 1 mm, 7 merged
    classes (as bench_paper_test_maps)."""
    from subct.inference.pipeline import segment
    from subct.io.readers import load_volume
    from subct.paths import paper_split_maps, shared_data_dir

    split, head_map = PAPER_SETS[set_name]
    head = load_volume(shared_data_dir() / "label_maps" / "synthseg" / head_map)
    results = {label: SetResult() for label in models}
    per_class: dict[str, dict[str, list[float]]] = {label: {} for label in models}
    for number, path in enumerate(paper_split_maps(split)[:limit]):
        ct, reference = paper.synthetic_case(path, head, seed + number)
        case = path.name.split(".")[0]
        for label, model in models.items():
            result = segment(ct, model=model, force=True, **RAW_NETWORK)  # type: ignore[arg-type]
            scores = paper.paper7_dice(np.asarray(result.labels.array), reference, ct, case)
            for structure, value in scores.items():
                per_class[label].setdefault(structure, []).append(value)
            results[label].case_dice[case] = float(np.nanmean(list(scores.values())))
            print(f"  {set_name} {case} {label}: {results[label].case_dice[case]:.3f}",
                  flush=True)
    for label in models:
        results[label].resolutions["1mm"] = float(np.mean(
            [np.nanmean(values) for values in per_class[label].values()]))
        results[label].structure_dice = {structure: float(np.nanmean(values))
                                         for structure, values in per_class[label].items()}
    return results


def verdict(results: dict[str, dict[str, SetResult]], baseline: str, candidate: str
            ) -> tuple[bool, list[str]]:
    """Apply the rule to the sets that were run; returns (ship?, reasons)."""
    def figure(set_name: str, label: str) -> float:
        return results[set_name][label].figure

    reasons: list[str] = []
    ship = True
    validation = [s for s in ("validation clean", "validation clinical") if s in results]
    for set_name in [*validation, PAPER_VALIDATION_SET]:
        if set_name not in results:
            continue
        if figure(set_name, candidate) < figure(set_name, baseline):
            ship = False
            reasons.append(f"{set_name}: worse ({figure(set_name, candidate):.4f} < "
                           f"{figure(set_name, baseline):.4f})")
    if validation:
        mean_c = np.mean([figure(s, candidate) for s in validation])
        mean_b = np.mean([figure(s, baseline) for s in validation])
        if mean_c <= mean_b:
            ship = False
            reasons.append(f"validation mean not better ({mean_c:.4f} <= {mean_b:.4f})")
    held_out = [s for s in ("held-out clean", "held-out clinical") if s in results]
    if held_out:
        mean_c = np.mean([figure(s, candidate) for s in held_out])
        mean_b = np.mean([figure(s, baseline) for s in held_out])
        if mean_c <= mean_b:
            ship = False
            reasons.append(f"held-out 19-20 not better ({mean_c:.4f} <= {mean_b:.4f})")
    if PAPER_SET in results and figure(PAPER_SET, candidate) <= figure(PAPER_SET, baseline):
        ship = False
        reasons.append(f"paper test maps not better ({figure(PAPER_SET, candidate):.4f} <= "
                       f"{figure(PAPER_SET, baseline):.4f})")
    missing = [s for s in (*HEAD_SETS, *PAPER_SETS) if s not in results]
    if missing:
        ship = False
        reasons.append("not run: " + ", ".join(missing))
    return ship, reasons


def markdown(results: dict[str, dict[str, SetResult]], baseline: str, candidate: str) -> str:
    lines = [f"| set | {baseline} | {candidate} | difference | cases won | lesion-adjacent "
             "volumes within 15 % (baseline vs candidate) |", "|---|---|---|---|---|---|"]
    for set_name, by_model in results.items():
        base, cand = by_model[baseline], by_model[candidate]

        def cells(result: SetResult) -> str:
            return " / ".join(f"{value:.3f}" for value in result.resolutions.values())

        won = sum(cand.case_dice[k] > base.case_dice[k] for k in base.case_dice)
        lesions = (f"{base.lesion_within} vs {cand.lesion_within} of {base.lesion_total}"
                   if base.lesion_total else "—")
        lines.append(f"| {set_name} ({' / '.join(base.resolutions)}) | {cells(base)} | "
                     f"{cells(cand)} | {cand.figure - base.figure:+.4f} | "
                     f"{won} of {len(base.case_dice)} | {lesions} |")
    return "\n".join(lines)


def structure_table(results: dict[str, dict[str, SetResult]], baseline: str,
                    candidate: str) -> str:
    """Candidate minus baseline Dice per structure and set (where a set lost or won)."""
    sets = list(results)
    lines = ["| structure | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    structures: list[str] = []
    for by_model in results.values():
        structures += [s for s in by_model[baseline].structure_dice if s not in structures]
    for structure in structures:
        cells = []
        for set_name in sets:
            base = results[set_name][baseline].structure_dice.get(structure)
            cand = results[set_name][candidate].structure_dice.get(structure)
            cells.append("—" if base is None or cand is None else f"{cand - base:+.3f}")
        lines.append(f"| {structure} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def selected_sets(groups: list[str]) -> list[str]:
    """The sets a run scores, in order, from ``--sets`` (validation, heldout, paper)."""
    names = [name for name in HEAD_SETS
             if ("validation" if name.startswith("validation") else "heldout") in groups]
    if "validation" in groups:
        names.append(PAPER_VALIDATION_SET)
    if "paper" in groups:
        names.append(PAPER_SET)
    return names


def score_set(set_name: str, models: dict[str, object], args: argparse.Namespace
              ) -> dict[str, SetResult]:
    """Every model's figures on one set (the paper's validation maps draw with seed + 1000)."""
    if set_name in HEAD_SETS:
        return score_head_set(set_name, models, args.samples_per_map, args.seed)
    seed = args.paper_seed + (1000 if set_name == PAPER_VALIDATION_SET else 0)
    return score_paper_set(set_name, models, args.paper_limit, seed)


def score_set_cached(set_name: str, models: dict[str, Any], args: argparse.Namespace
                     ) -> dict[str, SetResult]:
    """:func:`score_set`, reading the baseline's figures from :mod:`ship_rule_cache` when
    they are there (and storing them when they were computed): the candidate alone is run."""
    baseline = models["baseline"]
    parameters = ({"samples_per_map": args.samples_per_map, "seed": args.seed}
                  if set_name in HEAD_SETS
                  else {"paper_limit": args.paper_limit, "paper_seed": args.paper_seed})
    key = None if args.no_cache else cache.entry_key(
        Path(baseline.path), set_name, parameters, f"{baseline.backend} {baseline.precision}")
    entry = cache.load_entry(key) if key else None
    if entry is not None:
        print(f"  {set_name}: baseline figures from the cache ({key[:12]})", flush=True)
        scored = score_set(set_name, {"candidate": models["candidate"]}, args)
        return {"baseline": SetResult(**entry), "candidate": scored["candidate"]}
    scored = score_set(set_name, models, args)
    if key:
        cache.save_entry(key, scored["baseline"])
    return scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", required=True, help="checkpoint (.safetensors)")
    parser.add_argument("--baseline", default="shipped",
                        help="checkpoint, or 'shipped' (the shipped weights)")
    parser.add_argument("--sets", nargs="+", choices=["validation", "heldout", "paper"],
                        default=["validation", "heldout", "paper"])
    parser.add_argument("--samples-per-map", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2024, help="whole-head sets' seed")
    parser.add_argument("--paper-limit", type=int, default=27,
                        help="first N maps of each paper split (all: 27)")
    parser.add_argument("--paper-seed", type=int, default=2312)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ship_rule"))
    parser.add_argument("--no-cache", action="store_true",
                        help="score the baseline afresh (do not read or write the cache)")
    args = parser.parse_args()

    from subct.model.registry import reference_pitch_deg
    from subct.model.runtime import cpu_line

    labels = {"baseline": args.baseline, "candidate": args.candidate}
    models = load_models(labels, args.threads)
    print(f"{cpu_line()}; baseline {args.baseline} (epoch {models['baseline'].metadata.epoch}), "
          f"candidate {args.candidate} (epoch {models['candidate'].metadata.epoch}); "
          "raw networks (no calibration), flip TTA, located crop", flush=True)
    # the pipeline turns its crop to a model's recorded training pose: two models that do
    # not both record one are run through different pipelines (sessions 12-14 compared so)
    poses = {label: reference_pitch_deg(model.path, model.metadata.reference_pitch_deg)
             for label, model in models.items()}
    pose_mismatch = (None in poses.values()) and len(set(poses.values())) > 1
    if pose_mismatch:
        print(f"# WARNING: training pose baseline {poses['baseline']}, candidate "
              f"{poses['candidate']} (reference_pitch_deg): the crops are turned for one "
              "model only", flush=True)
    start = time.perf_counter()
    results: dict[str, dict[str, SetResult]] = {}
    for set_name in selected_sets(args.sets):
        results[set_name] = score_set_cached(set_name, models, args)
    table = markdown(results, "baseline", "candidate")
    ship, reasons = verdict(results, "baseline", "candidate")
    if pose_mismatch:
        ship = False
        reasons.append("the models ran with different crop poses (reference_pitch_deg "
                       f"{poses['baseline']} vs {poses['candidate']})")
    line = ("SHIP: the candidate meets the rule" if ship
            else "KEEP the baseline: " + "; ".join(reasons))
    table += "\n\nCandidate − baseline Dice per structure:\n\n" + structure_table(
        results, "baseline", "candidate")
    print("\n" + table + "\n\n" + line)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ship_rule.md").write_text(table + "\n\n" + line + "\n")
    (args.out / "ship_rule.json").write_text(json.dumps({
        "baseline": args.baseline, "candidate": args.candidate, "ship": ship,
        "reasons": reasons, "samples_per_map": args.samples_per_map, "seed": args.seed,
        "reference_pitch_deg": poses,
        "minutes": (time.perf_counter() - start) / 60, "load_average": os.getloadavg(),
        "sets": {name: {label: {"figure": r.figure, "resolutions": r.resolutions,
                                "case_dice": r.case_dice, "structure_dice": r.structure_dice,
                                "lesion_within": r.lesion_within,
                                "lesion_total": r.lesion_total}
                        for label, r in by_model.items()}
                 for name, by_model in results.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
