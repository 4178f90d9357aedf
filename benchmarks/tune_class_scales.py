"""Tune per-structure probability scales (volume calibration) on the validation maps.

On the clean validation heads (maps 17-18) the shipped network labels some small
structures too large: the accumbens by +29…+63 % on both maps at 1 and 5 mm
(``bench_shipped_model.py --tuning``; docs/benchmarks.md, "Volume calibration"). A bias
that every head shows is a calibration error of the network, not noise. This script
chooses a factor ``s_c`` per structure such that the label is ``argmax_c s_c · p_c``
(``s_background`` = 1), then prints the factors (for ``class_scales`` in
:mod:`subct.model.registry` or a checkpoint's metadata) and the volume errors before
and after. Three rules keep it from fitting two label maps' own styles:

- one factor per structure, shared by its left and right sides (the network runs with
  left/right flip averaging);
- only structures whose median volume error has one sign and exceeds
  :data:`MIN_CONSISTENT_BIAS` on every (map, resolution) group of heads are searched;
- coordinate ascent on the mean Dice of the 17 structures, keeping a factor only if no
  map's mean Dice falls.

Each head is segmented once through :func:`subct.segment` (flip TTA, the located crop)
keeping the softmax on the network's crop grid; candidates are scored there against the
1 mm reference labels resampled onto that grid (nearest neighbour; the 5 mm heads are
scored against the true 1 mm anatomy too). The largest-component step is left out of
the search (it removes specks, not boundary voxels). The held-out maps 19-20 are never
read: ``bench_shipped_model.py`` measures the chosen factors on them afterwards.

Usage::

    python benchmarks/tune_class_scales.py [--model CKPT] [--samples-per-map 5] [--seed 7100]
        [--pathology clinical] [--cache /tmp/crop_clean.npz] [--out /tmp/class_scales.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Candidate log-scales per structure (natural log; 0 = unchanged).
LOG_SCALE_STEPS = np.round(np.arange(-1.6, 0.81, 0.1), 2)


@dataclass
class CropCase:
    """Softmax on the crop grid and the reference class indices on the same grid."""

    name: str
    probabilities: NDArray[np.float32]
    reference: NDArray[np.int64]


def crop_cases(samples_per_map: int, seed: int, pathology: str | None,
               threads: int, cache: Path | None = None,
               model_path: str | None = None) -> list[CropCase]:
    """Segment the validation heads once and keep what the search needs (in ``cache``,
    an .npz file, when given: later runs with the same heads read it back)."""
    if cache is not None and cache.is_file():
        with np.load(cache) as stored:
            names = [str(name) for name in stored["names"]]
            return [CropCase(name, stored[f"p_{i}"].astype(np.float32), stored[f"r_{i}"])
                    for i, name in enumerate(names)]
    from bench_shipped_model import generate_cases, held_out_map_paths
    from subct.image.resample import resample_to_geometry
    from subct.inference.model import load_model
    from subct.inference.pipeline import segment
    from subct.labels.schemes import scheme_labels

    model = load_model(model_path, "cpu", None, None, threads)
    labels = scheme_labels(model.network_scheme)
    lookup = np.zeros(max(labels) + 1, dtype=np.int64)
    lookup[list(labels)] = np.arange(1, len(labels) + 1)
    cases = generate_cases(held_out_map_paths([17, 18], tuning=True), samples_per_map, seed,
                           (192, 240, 240), pathology)
    references = {case.name: case.reference for case in cases if case.resolution == "1mm"}
    out: list[CropCase] = []
    for case in cases:
        start = time.perf_counter()
        # the raw softmax: factors are searched from scratch, not on top of the model's own
        result = segment(case.ct, model=model, keep_posteriors=True, force=True,
                         calibrate_volumes=False)
        assert result.posteriors is not None
        grid = result.posteriors.grid
        reference = resample_to_geometry(references[case.name], grid.geometry, "nearest",
                                         fill_value=0)
        ref_values = np.asarray(reference.array).astype(np.int64)
        ref_values[(ref_values < 0) | (ref_values >= lookup.size)] = 0
        out.append(CropCase(f"{case.name}_{case.resolution}",
                            np.ascontiguousarray(result.posteriors.probabilities),
                            lookup[ref_values]))
        print(f"{out[-1].name}: segmented in {time.perf_counter() - start:.1f} s", flush=True)
    if cache is not None:
        arrays: dict[str, NDArray[np.generic]] = {"names": np.array([c.name for c in out])}
        for i, case in enumerate(out):
            arrays[f"p_{i}"] = case.probabilities.astype(np.float16)
            arrays[f"r_{i}"] = case.reference.astype(np.int8)
        np.savez(cache, **arrays)  # type: ignore[arg-type]
    return out


class Counts:
    """Per-case, per-class overlap counts of the current labelling (for fast updates)."""

    def __init__(self, cases: list[CropCase], log_scales: NDArray[np.float64]) -> None:
        self.cases = cases
        self.log_scales = log_scales.copy()
        self.labels = [self._labels(case, log_scales) for case in cases]
        classes = cases[0].probabilities.shape[0]
        self.classes = classes
        self.tables = [self._table(lab, case.reference, classes)
                       for lab, case in zip(self.labels, cases, strict=True)]

    @staticmethod
    def _labels(case: CropCase, log_scales: NDArray[np.float64]) -> NDArray[np.int64]:
        scales = np.exp(log_scales).astype(np.float32)[:, None, None, None]
        return np.asarray((case.probabilities * scales).argmax(axis=0), dtype=np.int64)

    @staticmethod
    def _table(labels: NDArray[np.int64], reference: NDArray[np.int64],
               classes: int) -> NDArray[np.int64]:
        """(classes, 3): predicted count, reference count, overlap count."""
        predicted = np.bincount(labels.ravel(), minlength=classes)
        ref = np.bincount(reference.ravel(), minlength=classes)
        both = np.bincount(labels[labels == reference].ravel(), minlength=classes)
        return np.stack([predicted, ref, both], axis=1)

    def map_dice(self, tables: list[NDArray[np.int64]] | None = None) -> dict[str, float]:
        """Mean Dice per label map (the case names' ``mapNN`` prefix)."""
        tables = self.tables if tables is None else tables
        maps = sorted({case.name.split("_")[0] for case in self.cases})
        return {name: self.mean_dice([t for t, case in zip(tables, self.cases, strict=True)
                                      if case.name.startswith(name + "_")])
                for name in maps}

    def mean_dice(self, tables: list[NDArray[np.int64]] | None = None) -> float:
        tables = self.tables if tables is None else tables
        scores = []
        for table in tables:
            p, r, b = table[1:, 0], table[1:, 1], table[1:, 2]
            present = r > 0
            scores.extend((2.0 * b[present] / (p[present] + r[present])).tolist())
        return float(np.mean(scores))

    def trials(self, channels: tuple[int, ...], log_steps: NDArray[np.float64]
               ) -> list[list[NDArray[np.int64]]]:
        """Tables for each candidate log-scale shared by ``channels`` (a structure, or
        its left and right sides), the other channels fixed.

        Only voxels where one of the channels' probabilities exceeds 0.02 can change;
        there the best of the other classes (scaled) is found once, and each candidate is
        a comparison against it."""
        scales = np.exp(self.log_scales).astype(np.float32)
        group = list(channels)
        per_step: list[list[NDArray[np.int64]]] = [[] for _ in log_steps]
        for case, labels, table in zip(self.cases, self.labels, self.tables, strict=True):
            flat = case.probabilities.reshape(self.classes, -1)
            where = np.flatnonzero((flat[group] > 0.02).any(axis=0))
            if where.size == 0:
                for tables in per_step:
                    tables.append(table)
                continue
            scaled = flat[:, where] * scales[:, None]
            scaled[group] = -1.0
            other_label = scaled.argmax(axis=0)
            other_value = scaled[other_label, np.arange(where.size)]
            own_probabilities = flat[group][:, where]
            own_label = np.asarray(group)[own_probabilities.argmax(axis=0)]
            own = own_probabilities.max(axis=0)
            old = labels.reshape(-1)[where]
            reference = case.reference.reshape(-1)[where]
            base = table - self._table(old, reference, self.classes)
            for tables, step in zip(per_step, log_steps, strict=True):
                new = np.where(own * np.float32(np.exp(step)) > other_value, own_label,
                               other_label)
                tables.append(base + self._table(new, reference, self.classes))
        return per_step

    def accept(self, channels: tuple[int, ...], log_scale: float) -> None:
        self.log_scales[list(channels)] = log_scale
        self.labels = [self._labels(case, self.log_scales) for case in self.cases]
        self.tables = [self._table(lab, case.reference, self.classes)
                       for lab, case in zip(self.labels, self.cases, strict=True)]


def volume_errors(counts: Counts) -> NDArray[np.float64]:
    """(cases, structures) relative volume error (predicted / reference − 1)."""
    return np.array([table[1:, 0] / np.maximum(table[1:, 1], 1) - 1.0
                     for table in counts.tables])


#: Smallest median volume error (fraction) that counts as the network's own bias.
MIN_CONSISTENT_BIAS = 0.15


def consistent_bias_groups(cases: list[CropCase], errors: NDArray[np.float64],
                           groups: dict[str, tuple[int, ...]],
                           min_bias: float = MIN_CONSISTENT_BIAS) -> dict[str, float]:
    """Structures (left/right groups) whose median volume error over the heads of each
    (map, resolution) has the same sign and is larger than :data:`MIN_CONSISTENT_BIAS`
    for every such group and both sides; value: the smallest such median (signed)."""
    keys = sorted({(case.name.split("_")[0], case.name.split("_")[-1]) for case in cases})
    found: dict[str, float] = {}
    for base, channels in groups.items():
        medians = [float(np.median([errors[i, channel - 1] for i, case in enumerate(cases)
                                    if case.name.startswith(map_name + "_")
                                    and case.name.endswith("_" + resolution)]))
                   for map_name, resolution in keys for channel in channels]
        if all(m > min_bias for m in medians):
            found[base] = min(medians)
        elif all(m < -min_bias for m in medians):
            found[base] = max(medians)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None,
                        help="checkpoint to calibrate (default: the shipped model)")
    parser.add_argument("--samples-per-map", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7100)
    parser.add_argument("--pathology", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sweeps", type=int, default=2)
    parser.add_argument("--min-bias", type=float, default=MIN_CONSISTENT_BIAS,
                        help="smallest consistent median volume error searched (fraction); "
                             "session 15 tried 0.05 for model v2: not shipped")
    parser.add_argument("--out", type=Path, default=Path("/tmp/class_scales.json"))
    parser.add_argument("--cache", type=Path, default=None,
                        help="an .npz of the segmented heads (written on the first run)")
    args = parser.parse_args()

    from subct.labels.schemes import scheme_labels, scheme_names

    cases = crop_cases(args.samples_per_map, args.seed, args.pathology, args.threads,
                       args.cache, args.model)
    names = [scheme_names("canonical")[v] for v in scheme_labels("canonical")]
    counts = Counts(cases, np.zeros(len(names) + 1))
    before = volume_errors(counts)
    start_dice = counts.mean_dice()
    print(f"mean Dice on the crop grid, unscaled: {start_dice:.4f}")
    # one factor per structure, shared by its left and right sides: the network is run
    # with left/right flip averaging, so a side-specific bias would be the validation
    # maps' own labelling, not the network's
    groups: dict[str, tuple[int, ...]] = {}
    for channel, name in enumerate(names, start=1):
        base = name.removeprefix("Left-").removeprefix("Right-")
        groups[base] = (*groups.get(base, ()), channel)
    # only a bias that every validation map shows at every resolution, on both sides,
    # is the network's: a structure is calibrated when its median volume error has one
    # sign and exceeds MIN_CONSISTENT_BIAS on every (map, resolution) group of heads
    consistent = consistent_bias_groups(cases, before, groups, args.min_bias)
    print("structures with a consistent volume bias: " + (", ".join(
        f"{base} {bias:+.0%}" for base, bias in consistent.items()) or "none"))
    groups = {base: channels for base, channels in groups.items() if base in consistent}
    for sweep in range(args.sweeps):
        for base, channels in groups.items():
            # a factor is kept only if it lowers no map's mean Dice: with two validation
            # maps, a change that helps one and hurts the other fits that map's labelling
            current = counts.map_dice()
            scores: dict[float, float] = {}
            for step, tables in zip(LOG_SCALE_STEPS, counts.trials(channels, LOG_SCALE_STEPS),
                                    strict=True):
                per_map = counts.map_dice(tables)
                if all(per_map[name] >= current[name] - 1e-9 for name in current):
                    scores[float(step)] = counts.mean_dice(tables)
            best = max(scores, key=lambda step: (scores[step], -abs(step)),
                       default=float(counts.log_scales[channels[0]]))
            counts.accept(channels, best)
            print(f"sweep {sweep + 1} {base:24s} log-scale {best:+.1f} mean Dice "
                  f"{counts.mean_dice():.4f} " + " ".join(
                      f"{name} {value:.4f}" for name, value in counts.map_dice().items()),
                  flush=True)
    after = volume_errors(counts)
    print(f"\nmean Dice {start_dice:.4f} -> {counts.mean_dice():.4f}")
    print(f"{'structure':24s} {'scale':>6s} {'vol err before':>15s} {'after':>8s}  "
          "(median over heads)")
    for index, name in enumerate(names):
        print(f"{name:24s} {np.exp(counts.log_scales[index + 1]):6.2f} "
              f"{np.median(before[:, index]):+15.0%} {np.median(after[:, index]):+8.0%}")
    within_before = float(np.mean(np.abs(before) <= 0.15))
    within_after = float(np.mean(np.abs(after) <= 0.15))
    print(f"volumes within 15 %: {within_before:.0%} -> {within_after:.0%}")
    scales = {name: round(float(np.exp(counts.log_scales[i + 1])), 3)
              for i, name in enumerate(names)}
    args.out.write_text(json.dumps({"scales": scales, "mean_dice_before": start_dice,
                                    "mean_dice_after": counts.mean_dice(),
                                    "cases": [case.name for case in cases]}, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
