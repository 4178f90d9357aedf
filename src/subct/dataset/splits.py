"""Train/validation/test splits that keep a site's cases together.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from subct.errors import SubctConfigError


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
