"""Benchmark: MeshNet port speed on CPU, float32 vs bfloat16 autocast, and accuracy.

Runs one brainchop model on the real fsaverage T1 (256³ conformed, cropped to the head
plus the receptive-field halo) with float32 and with bf16 autocast + channels_last_3d.
Reports the seconds of the whole ``segment()`` call (conform, network, mid-sagittal
plane, split), the fraction of voxels whose label differs between the two, and the
mean Dice of each against fsaverage's aseg (17 structures).

Usage::

    python benchmarks/bench_meshnet.py [--model meshnet-18]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from subct.io import load_volume
from subct.labels import CANONICAL_LABELS, convert_to_canonical
from subct.meshnet import MeshNetRunConfig
from subct.paths import shared_data_dir
from subct.segmenters import MeshNetSegmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="meshnet-18")
    args = parser.parse_args()
    folder = shared_data_dir() / "mri" / "fsaverage"
    t1 = load_volume(folder / "T1.mgz")
    reference = convert_to_canonical(load_volume(folder / "aseg.mgz").array.astype(np.int32),
                                     "aseg")
    outputs = {}
    for bfloat16 in (False, True):
        config = MeshNetRunConfig(bfloat16=bfloat16)
        started = time.perf_counter()
        labels = MeshNetSegmenter(name=args.model, run=config).segment(t1).array
        seconds = time.perf_counter() - started
        outputs[bfloat16] = labels
        dice = [2 * ((labels == c) & (reference == c)).sum()
                / ((labels == c).sum() + (reference == c).sum()) for c in CANONICAL_LABELS]
        print(json.dumps({"model": args.model, "bfloat16": bfloat16,
                          "segment_s": round(seconds, 1),
                          "mean_dice_17": round(float(np.mean(dice)), 4),
                          "load_average_1min": round(os.getloadavg()[0], 1)}), flush=True)
    differ = float((outputs[False] != outputs[True]).mean())
    print(json.dumps({"voxels_differing_fp32_vs_bf16": f"{differ:.4%}"}))

if __name__ == "__main__":
    main()
