"""The ventricle-interior QC rule (``subct.qc.anatomy``): calibration and real CTs.

A lateral-ventricle label that has spread over hypodense tissue (white-matter disease,
oedema, gliosis) has an interior denser than the scan's CSF. This script shows the
figure the rule uses, the share of the label's interior (≥ 2 mm inside) more than 8 HU
above the scan's CSF level, next to how wrong the label's volume is:

* ``--runs DIR ...``: output folders of ``bench_shipped_model.py`` (their summary.json
  holds each case's ventricle figures, results_long.csv the true and predicted
  volumes). Prints every ventricle and, per slice thickness, the largest share of a
  label within 15 % of its true volume (what a limit must stay above) and how many
  labels more than 15 % too large are caught at the shipped limits.
* with no ``--runs``: segments the real head CTs (``real_cts.py``) and prints their
  ventricle figures and QC warnings.

    python benchmarks/bench_shipped_model.py --model shipped --tuning --maps 17 18 \\
        --samples-per-map 4 --seed 77 --crop located [--pathology KIND] --out /tmp/v_KIND
    python benchmarks/bench_ventricle_check.py --runs /tmp/v_clean /tmp/v_KIND ...
    python benchmarks/bench_ventricle_check.py            # the real CTs
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from subct.qc.anatomy import (
    VENTRICLE_DENSE_INTERIOR_SHARE,
    VENTRICLE_DENSE_INTERIOR_SHARE_THICK,
)

VENTRICLES = ("Left-Lateral-Ventricle", "Right-Lateral-Ventricle")
TOLERANCE = 0.15


def ventricle_rows(run: Path) -> list[tuple[str, str, float, float, float]]:
    """(case, ventricle, median HU, interior share, relative volume error) of one run."""
    summary = json.loads((run / "summary.json").read_text())
    volumes: dict[tuple[str, str], dict[str, float]] = {}
    with open(run / "results_long.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["structure"] in VENTRICLES and row["metric"].startswith("volume_"):
                volumes.setdefault((row["case"], row["structure"]), {})[row["metric"]] = \
                    float(row["value"])
    rows = []
    for case, figures in summary.get("ventricle_figures", {}).items():
        for name in VENTRICLES:
            share = figures.get(f"{name}_interior_denser_than_csf")
            volume = volumes.get((case, name), {})
            if share is None or not volume.get("volume_ref_mm3"):
                continue
            error = volume["volume_pred_mm3"] / volume["volume_ref_mm3"] - 1.0
            rows.append((case, name, float(figures.get(name, float("nan"))), float(share),
                         error))
    return rows


def calibrate(runs: list[Path]) -> None:
    """Print each ventricle and the limits' margins per slice thickness."""
    print("| run | case | ventricle | median HU | interior share | volume error |")
    print("|---|---|---|---|---|---|")
    by_thickness: dict[str, list[tuple[float, float]]] = {"1mm": [], "5mm": []}
    for run in runs:
        for case, name, median, share, error in ventricle_rows(run):
            print(f"| {run.name} | {case} | {name} | {median:.1f} | {share:.3f} | "
                  f"{100 * error:+.0f} % |")
            by_thickness["5mm" if case.endswith("5mm") else "1mm"].append((share, error))
    for thickness, pairs in by_thickness.items():
        limit = VENTRICLE_DENSE_INTERIOR_SHARE_THICK if thickness == "5mm" \
            else VENTRICLE_DENSE_INTERIOR_SHARE
        good = [share for share, error in pairs if abs(error) <= TOLERANCE]
        inflated = [share for share, error in pairs if error > TOLERANCE]
        caught = sum(share > limit for share in inflated)
        false = sum(share > limit for share in good)
        print(f"{thickness}: {len(pairs)} labels; within 15 %: {len(good)}, largest share "
              f"{max(good, default=0.0):.3f} (limit {limit:g}: {false} flagged); more than "
              f"15 % too large: {len(inflated)}, {caught} caught")


def real_ct_figures() -> None:
    """Segment the real CTs and print their ventricle figures and warnings."""
    from real_cts import real_cts
    from subct.inference.pipeline import segment

    for name, volume in real_cts().items():
        result = segment(volume, force=True)
        figures = result.qc.input.facts["anatomy"]["ventricle_median_hu_and_dense_fraction"]
        shown = {key: value for key, value in figures.items()
                 if "Ventricle" in key or "csf" in key}
        warnings = sorted({flag.code for flag in result.qc.flags
                           if flag.severity == "warning"})
        print(f"{name} (slices {max(volume.spacing):.2f} mm): {shown}; warnings: {warnings}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", type=Path, default=[],
                        help="bench_shipped_model.py output folders")
    args = parser.parse_args()
    if args.runs:
        calibrate(args.runs)
    else:
        real_ct_figures()


if __name__ == "__main__":
    main()
