"""Benchmark: do the CPU engines give the labels PyTorch fp32 gives, on real head CTs?

Each real head CT (:mod:`real_cts`) is segmented with the default settings by every
engine at fp32 (OpenVINO, ONNX Runtime, PyTorch); the table gives, against PyTorch fp32,
the number of voxels whose label differs, the labelled voxels, and the mean self-Dice.
(The numpy sliding window itself is tested equal to MONAI's ``sliding_window_inference``
in ``tests/test_engine.py``.)

Usage::

    python benchmarks/bench_engine_agreement.py [--model PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from real_cts import dice_summary, real_cts, structure_dice  # noqa: E402
from subct.inference.config import InferenceConfig
from subct.inference.model import cached_model
from subct.inference.pipeline import segment  # noqa: E402
from subct.model.runtime import cpu_line  # noqa: E402

ENGINES = ("torch", "openvino", "onnxruntime")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: shipped)")
    args = parser.parse_args()
    print(cpu_line())
    print("| CT | engine | voxels differing from PyTorch fp32 | labelled voxels | "
          "mean self-Dice |")
    print("|---|---|---|---|---|")
    for name, volume in real_cts().items():
        labels = {}
        for engine in ENGINES:
            config = InferenceConfig(backend=engine, precision="fp32")
            result = segment(volume, cached_model(args.model, config), config)
            labels[engine] = np.asarray(result.labels.array)
        reference = labels["torch"]
        for engine in ENGINES[1:]:
            differing = int((labels[engine] != reference).sum())
            mean, _, _ = dice_summary(structure_dice(reference, labels[engine]))
            print(f"| {name} | {engine} | {differing} | {int((reference > 0).sum())} | "
                  f"{mean:.5f} |", flush=True)


if __name__ == "__main__":
    main()
