"""Train/validation/test splits, and the one writer of the split files.

``splits.json`` (``{"train", "val", "test"}`` lists, read by ``subct train``) and
``splits_final.json`` (nnU-Net's fold list: one fold with the same train/val cases).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from subct.errors import SubctConfigError
from subct.io.writers import atomic_write_text


def make_splits(case_sites: dict[str, str], fractions: Sequence[float] = (0.7, 0.15, 0.15),
                seed: int = 0, site_mode: str = "stratify") -> dict[str, list[str]]:
    """Seeded train/val/test split of case IDs.

    With sites: ``stratify`` splits each site by ``fractions`` (so every split holds
    every site); ``hold_out`` keeps each site whole inside one split, assigning sites
    (largest first) to the split furthest below its target size. Without sites both
    are a plain seeded shuffle. Counts are rounded so the train split gets the
    remainder.
    """
    names = ("train", "val", "test")
    splits: dict[str, list[str]] = {name: [] for name in names}
    rng = random.Random(seed)
    groups: dict[str, list[str]] = {}
    for case_id in sorted(case_sites):
        groups.setdefault(case_sites[case_id] or "", []).append(case_id)
    if site_mode == "hold_out" and len(groups) > 1:
        order = sorted(groups, key=lambda s: (-len(groups[s]), s))
        rng.shuffle(order)
        order.sort(key=lambda s: -len(groups[s]))
        total = len(case_sites)
        for site in order:
            deficits = [fractions[i] * total - len(splits[n]) for i, n in enumerate(names)]
            splits[names[int(np.argmax(deficits))]].extend(groups[site])
    elif site_mode in ("stratify", "hold_out"):
        # Shuffle each site, then order all cases by their relative rank inside their
        # site: any prefix of this order holds every site in proportion (stratified).
        ranked: list[tuple[float, float, str]] = []
        for site in sorted(groups):
            members = list(groups[site])
            rng.shuffle(members)
            ranked.extend(((rank + 0.5) / len(members), rng.random(), case_id)
                          for rank, case_id in enumerate(members))
        order = [case_id for _, _, case_id in sorted(ranked)]
        n_val = int(round(fractions[1] * len(order)))
        n_test = min(int(round(fractions[2] * len(order))), len(order) - n_val)
        splits["val"] = order[:n_val]
        splits["test"] = order[n_val:n_val + n_test]
        splits["train"] = order[n_val + n_test:]
    else:
        raise SubctConfigError(f"unknown site split mode {site_mode!r}")
    return {name: sorted(cases) for name, cases in splits.items()}


def random_validation_split(cases: Sequence[str], validation_fraction: float, seed: int
                            ) -> dict[str, list[str]]:
    """Seeded train/val split without test cases (at least one validation case when
    there are two or more cases)."""
    order = list(cases)
    np.random.default_rng(seed).shuffle(order)
    n_val = max(1, round(validation_fraction * len(order))) if len(order) > 1 else 0
    return {"train": sorted(order[n_val:]), "val": sorted(order[:n_val]), "test": []}


def write_splits(folder: Path, splits: dict[str, list[str]],
                 details: dict[str, Any] | None = None) -> None:
    """Write ``splits.json`` (with ``details`` such as seed and fractions) and nnU-Net's
    ``splits_final.json`` into ``folder``."""
    atomic_write_text(folder / "splits.json",
                      json.dumps(splits | (details or {}), indent=2) + "\n")
    atomic_write_text(folder / "splits_final.json", json.dumps(
        [{"train": splits["train"], "val": splits["val"]}], indent=2) + "\n")
