"""Dataset quality control: segmenter agreement and outlier cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from subct.io.writers import atomic_write_text
from subct.labels.schemes import (
    CANONICAL_LABELS,
    CANONICAL_NAMES,
    labels_to_indices,
)


def _pairwise_dice(maps: Sequence[NDArray[Any]]) -> float | None:
    """Mean over segmenter pairs and present structures of the Dice between two maps.

    One joint histogram (confusion matrix) per pair over the voxels labelled by any
    map, so the cost is a few passes over the labelled voxels, not one per structure.
    """
    if len(maps) < 2:
        return None
    classes = len(CANONICAL_LABELS) + 1
    indices = [labels_to_indices(np.asarray(m), "canonical").ravel() for m in maps]
    labelled = np.zeros(indices[0].shape, dtype=bool)
    for values in indices:
        labelled |= values > 0
    indices = [values[labelled] for values in indices]
    scores: list[float] = []
    for first in range(len(indices)):
        for second in range(first + 1, len(indices)):
            joint = np.bincount(indices[first] * classes + indices[second],
                                minlength=classes * classes).reshape(classes, classes)
            overlap = np.diag(joint)[1:]
            totals = joint.sum(axis=1)[1:] + joint.sum(axis=0)[1:]
            present = totals > 0
            scores.extend((2.0 * overlap[present] / totals[present]).tolist())
    return float(np.mean(scores)) if scores else 0.0


def flag_outliers(rows: list[dict[str, Any]], z_threshold: float = 3.0,
                  min_agreement: float = 0.6, min_pairwise_dice: float = 0.5
                  ) -> list[dict[str, Any]]:
    """Add ``flags`` to each QC row: volume outliers (robust z), low agreement or
    pairwise Dice between segmenters, low registration MI, empty labels.

    Robust z-score per structure: 0.6745·(v − median)/MAD over all cases (needs ≥ 3
    cases; structures with MAD 0 use 1.4826·MAD ≈ 0 → only exact outliers are skipped).
    """
    structure_names = [CANONICAL_NAMES[label] for label in CANONICAL_LABELS]
    for row in rows:
        row["flags"] = []
    if len(rows) >= 3:
        for name in structure_names:
            values = np.array([float(r["volumes_mm3"].get(name, 0.0)) for r in rows])
            median = float(np.median(values))
            mad = float(np.median(np.abs(values - median)))
            if mad == 0:
                continue
            for row, value in zip(rows, values, strict=True):
                z = 0.6745 * (value - median) / mad
                if abs(z) > z_threshold:
                    row["flags"].append(f"volume:{name}:z={z:.1f}")
        mi_after = np.array([float(r.get("mi_after", 0.0)) for r in rows])
        median = float(np.median(mi_after))
        mad = float(np.median(np.abs(mi_after - median)))
        for row, value in zip(rows, mi_after, strict=True):
            if mad > 0 and 0.6745 * (value - median) / mad < -z_threshold:
                row["flags"].append("registration:low_mi")
    for row in rows:
        agreement = row.get("mean_agreement")
        if agreement is not None and float(agreement) < min_agreement:
            row["flags"].append(f"agreement:{float(agreement):.2f}")
        pairwise = row.get("mean_pairwise_dice")
        if pairwise is not None and float(pairwise) < min_pairwise_dice:
            row["flags"].append(f"pairwise_dice:{float(pairwise):.2f}")
        if not any(v > 0 for v in row["volumes_mm3"].values()):
            row["flags"].append("labels:empty")
    return rows


def write_qc_table(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write the per-case QC table as CSV (one column per structure volume, mm³)."""
    structure_names = [CANONICAL_NAMES[label] for label in CANONICAL_LABELS]
    header = ["case", "site", "mean_agreement", "mean_pairwise_dice", "registration",
              "registration_skipped", "mi_before", "mi_after", "seconds", "outlier",
              "flags", *[f"{name}_mm3" for name in structure_names]]
    lines = [",".join(header)]
    for row in sorted(rows, key=lambda r: r["case"]):
        values = [row["case"], row.get("site", ""), row.get("mean_agreement"),
                  row.get("mean_pairwise_dice"), row.get("registration"),
                  row.get("registration_skipped"), row.get("mi_before"), row.get("mi_after"),
                  row.get("seconds"), bool(row["flags"]), ";".join(row["flags"]),
                  *[row["volumes_mm3"].get(name, 0.0) for name in structure_names]]
        lines.append(",".join("" if v is None else str(v) for v in values))
    return atomic_write_text(path, "\n".join(lines) + "\n")
