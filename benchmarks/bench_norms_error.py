"""How far segmentation error moves a normative percentile (issue 26).

A percentile is only as good as the volume under it: CentileBrain's z-score divides the
volume's distance from the age- and sex-expected value by the cohort's residual spread
(RMSE, 6–20 % of the volume), so a volume error of e.g. +10 % on a thalamus moves z by
about +1. This script takes ``results_long.csv`` of ``bench_shipped_model.py`` (the
pipeline's predicted and reference volumes on synthetic CTs whose true labels are known)
and reports per structure the z-score error ``Δz = z(V_pred) − z(V_ref)`` at age
``--age`` for a woman and for a man (for CentileBrain's structures this is
``(V_pred − V_ref) / RMSE`` at any age; for the braincharts ones — ventricles, brainstem —
it depends a little on age): the mean (bias), the median |Δz| and the largest |Δz|, and
how often the error alone would move a case across the 2.5th or 97.5th percentile from
the median (|Δz| > 1.96).

Usage::

    python benchmarks/bench_shipped_model.py --model shipped --crop located \\
        --out /tmp/norms_eval_clean
    python benchmarks/bench_norms_error.py /tmp/norms_eval_clean/results_long.csv
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

from subct.labels.schemes import scheme_structure_names
from subct.norms.models import find_model


def _volumes(path: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    """(case, resolution, structure) → {volume_pred_mm3, volume_ref_mm3}."""
    table: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    with open(path, newline="") as stream:
        for row in csv.DictReader(stream):
            if row["metric"] in ("volume_pred_mm3", "volume_ref_mm3"):
                key = (row["case"], row["resolution"], row["structure"])
                table[key][row["metric"]] = float(row["value"])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results_long.csv of bench_shipped_model")
    parser.add_argument("--age", type=float, default=70.0, help="age of the z-scores (years)")
    args = parser.parse_args()
    names = scheme_structure_names("canonical")
    errors: dict[tuple[str, str], list[float]] = defaultdict(list)  # (resolution, name)
    for (_, resolution, name), volumes in _volumes(args.results).items():
        if name not in names or len(volumes) < 2:
            continue
        for sex in ("female", "male"):
            found = find_model(sex, name)  # type: ignore[arg-type]
            assert found is not None, name
            model = found[0]
            errors[(resolution, name)].append(
                model.z_score(volumes["volume_pred_mm3"], args.age)
                - model.z_score(volumes["volume_ref_mm3"], args.age))
    print(f"# {args.results}; z error = z(V_pred) - z(V_ref) at {args.age:g} years, "
          "for a woman and a man")
    for resolution in sorted({r for r, _ in errors}):
        print(f"\n## {resolution}\n")
        print("| structure | n | mean Δz (bias) | median abs Δz | max abs Δz | abs Δz > 1.96 |")
        print("|---|---|---|---|---|---|")
        pooled: list[float] = []
        for name in names:
            values = errors.get((resolution, name), [])
            if not values:
                continue
            pooled += values
            sizes = [abs(v) for v in values]
            print(f"| {name} | {len(values) // 2} | {statistics.mean(values):+.2f} | "
                  f"{statistics.median(sizes):.2f} | {max(sizes):.2f} | "
                  f"{sum(s > 1.96 for s in sizes)} of {len(sizes)} |")
        sizes = [abs(v) for v in pooled]
        print(f"| **all {len(names)}** | {len(pooled) // 2} | {statistics.mean(pooled):+.2f} | "
              f"{statistics.median(sizes):.2f} | {max(sizes):.2f} | "
              f"{sum(s > 1.96 for s in sizes)} of {len(sizes)} |")


if __name__ == "__main__":
    main()
