"""Calibrate the per-structure reliability figures of ``subct segment`` (issue 11).

On the VALIDATION label maps (17–18; never the held-out 19–20), synthetic heads at 1 mm
and 5 mm, clean and with the clinical pathology mix, are segmented; for every structure
it records the true Dice and

- the TTA agreement: Dice between the labels of the plain and the left/right mirrored
  network passes (``qc.json`` → ``input.tta_agreement_dice``), free with the default TTA;
- with ``--mc N``: the MC-dropout coefficient of variation of the structure's volume.

It prints, for a range of thresholds, how many poorly segmented structures (true Dice
< ``--bad``) the figure catches and how many well segmented ones it flags falsely, so
the warning threshold can be chosen from data rather than borrowed from a paper.

Usage: ``python benchmarks/bench_reliability.py [--maps 17 18] [--mc 15] [--bad 0.7]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_shipped_model import generate_cases, held_out_map_paths  # noqa: E402
from subct.evaluation.metrics import label_map_metrics  # noqa: E402
from subct.inference.config import InferenceConfig  # noqa: E402
from subct.inference.model import load_model  # noqa: E402
from subct.inference.pipeline import segment_volume  # noqa: E402
from subct.labels.schemes import scheme_names  # noqa: E402
from subct.model.runtime import cpu_line  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--maps", type=int, nargs="+", default=[17, 18])
    parser.add_argument("--mc", type=int, default=0, help="MC-dropout passes (0: off)")
    parser.add_argument("--bad", type=float, default=0.7, help="true Dice of a bad structure")
    args = parser.parse_args()
    print(cpu_line())
    model = load_model(args.model, "cpu")
    rows: list[tuple[str, str, float, float, float | None]] = []
    paths = held_out_map_paths(args.maps, tuning=True)
    for pathology in (None, "clinical"):
        for case in generate_cases(paths, 1, 2024, (192, 240, 240), pathology):
            config = InferenceConfig(mc_dropout_samples=args.mc, force=True)
            result = segment_volume(case.ct, model, config)
            metrics = label_map_metrics(np.asarray(result.labels.array),
                                        np.asarray(case.reference.array), case.ct.spacing,
                                        scheme_names("canonical"))
            agreement = result.qc.input.facts["tta_agreement_dice"]
            mc = result.qc.mc_dropout.cv_percent if result.qc.mc_dropout else {}
            label = f"{case.name}_{case.resolution}_{pathology or 'clean'}"
            for structure in metrics.structures:
                if np.isnan(structure.dice):
                    continue
                rows.append((label, structure.name, structure.dice,
                             agreement.get(structure.name, 0.0), mc.get(structure.name)))
            print(f"{label}: mean Dice {metrics.mean_dice:.3f}", flush=True)
    dice = np.array([r[2] for r in rows])
    tta = np.array([r[3] for r in rows])
    bad = dice < args.bad
    print(f"\n{len(rows)} structures, {int(bad.sum())} with true Dice < {args.bad}")
    print("| TTA agreement below | bad structures caught | good structures flagged |")
    print("|---|---|---|")
    for threshold in (0.6, 0.7, 0.75, 0.8, 0.85, 0.9):
        flagged = tta < threshold
        print(f"| {threshold} | {int((flagged & bad).sum())} of {int(bad.sum())} | "
              f"{int((flagged & ~bad).sum())} of {int((~bad).sum())} |")
    correlation = float(np.corrcoef(tta, dice)[0, 1])
    print(f"correlation of TTA agreement with true Dice: r = {correlation:.2f}")
    if args.mc:
        cv = np.array([r[4] if r[4] is not None else np.nan for r in rows])
        ok = np.isfinite(cv)
        print(f"correlation of MC-dropout CV with true Dice: r = "
              f"{float(np.corrcoef(cv[ok], dice[ok])[0, 1]):.2f}")
        print("| MC CV above (%) | bad structures caught | good structures flagged |")
        print("|---|---|---|")
        for threshold in (2.5, 5.0, 7.5, 10.0, 15.0, 20.0):
            flagged = ok & (cv > threshold)
            print(f"| {threshold} | {int((flagged & bad).sum())} of {int(bad.sum())} | "
                  f"{int((flagged & ~bad).sum())} of {int((~bad).sum())} |")


if __name__ == "__main__":
    main()
