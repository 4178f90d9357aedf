"""How far segmentation error moves a normative percentile (issue 26).

A percentile is only as good as the volume under it: CentileBrain's z-score divides the
volume's distance from the age- and sex-expected value by the cohort's residual spread
(RMSE, 6–20 % of the volume), so a volume error of e.g. +10 % on a thalamus moves z by
about +1. This script takes ``results_long.csv`` of ``bench_shipped_model.py`` (the
pipeline's predicted and reference volumes on synthetic CTs whose true labels are known)
and reports per structure the z-score error ``Δz = (V_pred − V_ref) / RMSE`` — the same for
any age, since the expectation cancels — with the women's and men's RMSE: the mean (bias),
the median |Δz| and the largest |Δz|, and how often the error alone would move a case
across the 2.5th or 97.5th percentile from the median (|Δz| > 1.96).

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

from subct.norms.models import centilebrain_norms


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
    args = parser.parse_args()
    source = centilebrain_norms()
    errors: dict[tuple[str, str], list[float]] = defaultdict(list)  # (resolution, name)
    for (_, resolution, name), volumes in _volumes(args.results).items():
        if name not in source.structures or len(volumes) < 2:
            continue
        for sex in ("female", "male"):
            model = source.model(sex, name)  # type: ignore[arg-type]
            assert model is not None
            errors[(resolution, name)].append(
                (volumes["volume_pred_mm3"] - volumes["volume_ref_mm3"]) / model.rmse_mm3)
    print(f"# {args.results}; z error = (V_pred - V_ref) / RMSE, women's and men's RMSE")
    for resolution in sorted({r for r, _ in errors}):
        print(f"\n## {resolution}\n")
        print("| structure | n | mean Δz (bias) | median abs Δz | max abs Δz | abs Δz > 1.96 |")
        print("|---|---|---|---|---|---|")
        pooled: list[float] = []
        for name in source.structures:
            values = errors.get((resolution, name), [])
            if not values:
                continue
            pooled += values
            sizes = [abs(v) for v in values]
            print(f"| {name} | {len(values) // 2} | {statistics.mean(values):+.2f} | "
                  f"{statistics.median(sizes):.2f} | {max(sizes):.2f} | "
                  f"{sum(s > 1.96 for s in sizes)} of {len(sizes)} |")
        sizes = [abs(v) for v in pooled]
        print(f"| **all 14** | {len(pooled) // 2} | {statistics.mean(pooled):+.2f} | "
              f"{statistics.median(sizes):.2f} | {max(sizes):.2f} | "
              f"{sum(s > 1.96 for s in sizes)} of {len(sizes)} |")


if __name__ == "__main__":
    main()
