"""Benchmark: which lighter inference setting is safe enough to be ``--fast``.

``--fast`` must give labels that agree with the default run (left/right TTA, 50 %
window overlap) at mean self-Dice ≥ 0.95 with no structure below 0.90, on the real
head CTs (:mod:`real_cts`: the tilted GE series from ``../shared/data`` and Debian's
InVesalius CT). For each CT, each candidate setting is run in this process with the
shipped model and compared, structure by structure, with the default run on the same
engine; the table gives mean and worst self-Dice, the worst structure, the network
seconds and the number of network windows.

Usage::

    python benchmarks/bench_fast_mode.py [--backend onnxruntime] [--precision fp32]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from real_cts import dice_summary, real_cts, structure_dice  # noqa: E402
from subct.inference.config import InferenceConfig
from subct.inference.model import cached_model
from subct.inference.pipeline import segment  # noqa: E402
from subct.model.runtime import cpu_info  # noqa: E402

#: Candidate settings: label → InferenceConfig overrides.
CANDIDATES: dict[str, dict[str, object]] = {
    "no TTA, overlap 0.5": {"tta": False, "sliding_window_overlap": 0.5},
    "TTA, overlap 0.25": {"tta": True, "sliding_window_overlap": 0.25},
    "no TTA, overlap 0.25": {"tta": False, "sliding_window_overlap": 0.25},
    "no TTA, overlap 0 (old --fast)": {"tta": False, "sliding_window_overlap": 0.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default=None)
    parser.add_argument("--precision", default=None)
    parser.add_argument("--model", default=None, help="checkpoint (default: shipped)")
    args = parser.parse_args()
    info = cpu_info()
    base = InferenceConfig(backend=args.backend, precision=args.precision)
    model = cached_model(args.model, base)
    print(f"# CPU: {info.model}; flags: {' '.join(info.relevant_flags)}; engine "
          f"{model.backend} {model.precision}, {model.threads} threads")
    print("| CT | setting | mean self-Dice | worst structure (Dice) | network s | "
          "total s |")
    print("|---|---|---|---|---|---|")
    for name, volume in real_cts().items():
        started = time.perf_counter()
        reference = segment(volume, model, base)
        total = time.perf_counter() - started
        print(f"| {name} | default (TTA, overlap 0.5) | 1 | – | "
              f"{reference.timings_s['network']:.2f} | {total:.2f} |", flush=True)
        for label, overrides in CANDIDATES.items():
            config = InferenceConfig(backend=args.backend, precision=args.precision,
                                     **overrides)  # type: ignore[arg-type]
            started = time.perf_counter()
            result = segment(volume, model, config)
            total = time.perf_counter() - started
            mean, worst, value = dice_summary(structure_dice(
                np.asarray(reference.labels.array), np.asarray(result.labels.array)))
            print(f"| {name} | {label} | {mean:.3f} | "
                  f"{worst} ({value:.3f}) | {result.timings_s['network']:.2f} | "
                  f"{total:.2f} |", flush=True)


if __name__ == "__main__":
    main()
